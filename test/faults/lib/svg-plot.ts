// A dependency-free line chart in SVG: stacked panels sharing the time axis, each with its
// series, a least-squares trend line and the trend's slope in the legend.

export interface Series {
  readonly name: string;
  /** [seconds since start, value] */
  readonly points: readonly (readonly [number, number])[];
  readonly color: string;
  /** Draw the least-squares line through the points. @default true */
  readonly trend?: boolean;
}

export interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
}

export interface Trend {
  /** Units per second. */
  readonly slope: number;
  readonly intercept: number;
}

/** Least-squares fit of value over time. */
export function trend(points: readonly (readonly [number, number])[]): Trend {
  const n = points.length;
  if (n < 2) return { slope: 0, intercept: points[0]?.[1] ?? 0 };
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const d = n * sxx - sx * sx;
  if (d === 0) return { slope: 0, intercept: sy / n };
  const slope = (n * sxy - sx * sy) / d;
  return { slope, intercept: (sy - slope * sx) / n };
}

const esc = (s: string): string => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Renders the panels one above the other. */
export function renderChart(title: string, panels: readonly Panel[], width = 900): string {
  const panelHeight = 240;
  const left = 70;
  const right = 20;
  const top = 50;
  const gap = 60;
  const height = top + panels.length * (panelHeight + gap) + 10;
  const tMax = Math.max(1, ...panels.flatMap((p) => p.series.flatMap((s) => s.points.map(([t]) => t))));
  const plotW = width - left - right;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`,
  ];
  panels.forEach((panel, i) => {
    const y0 = top + i * (panelHeight + gap);
    const vMax = niceMax(Math.max(0, ...panel.series.flatMap((s) => s.points.map(([, v]) => v))) * 1.1);
    const x = (t: number): number => left + (t / tMax) * plotW;
    const y = (v: number): number => y0 + panelHeight - (v / vMax) * panelHeight;
    out.push(
      `<text x="${left}" y="${y0 - 8}" font-size="13">${esc(panel.title)} (${esc(panel.unit)})</text>`,
    );
    out.push(
      `<rect x="${left}" y="${y0}" width="${plotW}" height="${panelHeight}" fill="none" stroke="#999"/>`,
    );
    for (let k = 0; k <= 4; k += 1) {
      const v = (vMax * k) / 4;
      const yy = y(v);
      out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
      out.push(`<text x="${left - 6}" y="${yy + 4}" text-anchor="end">${Number(v.toPrecision(3))}</text>`);
    }
    for (let k = 0; k <= 6; k += 1) {
      const t = (tMax * k) / 6;
      out.push(
        `<text x="${x(t)}" y="${y0 + panelHeight + 16}" text-anchor="middle">${(t / 60).toFixed(1)} min</text>`,
      );
    }
    panel.series.forEach((s, j) => {
      if (s.points.length > 0) {
        const d = s.points.map(([t, v], k) => `${k === 0 ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`);
        out.push(`<path d="${d.join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
      }
      let label = s.name;
      if (s.trend !== false && s.points.length >= 2) {
        const { slope, intercept } = trend(s.points);
        const t0 = s.points[0]?.[0] ?? 0;
        const t1 = s.points.at(-1)?.[0] ?? tMax;
        out.push(
          `<line x1="${x(t0)}" y1="${y(intercept + slope * t0)}" x2="${x(t1)}" y2="${y(intercept + slope * t1)}" stroke="${s.color}" stroke-dasharray="6 4" opacity="0.7"/>`,
        );
        label += ` (trend ${(slope * 60).toPrecision(2)} ${panel.unit}/min)`;
      }
      out.push(`<text x="${left + 10}" y="${y0 + 16 + j * 16}" fill="${s.color}">${esc(label)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n');
}
