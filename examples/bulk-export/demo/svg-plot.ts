/** One line of the plot: points of (seconds, value). */
export interface Series {
  label: string;
  color: string;
  points: readonly { x: number; y: number }[];
}

/** A horizontal reference line (a limit, a budget). */
export interface Threshold {
  label: string;
  color: string;
  y: number;
}

/**
 * A self-contained SVG line chart (no dependency): axes with ticks, one polyline per series as
 * steps, dashed threshold lines, a legend.
 */
export function lineChartSvg(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  thresholds?: readonly Threshold[];
  width?: number;
  height?: number;
}): string {
  const width = o.width ?? 900;
  const height = o.height ?? 420;
  const m = { left: 64, right: 24, top: 48, bottom: 84 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const xs = o.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = [...o.series.flatMap((s) => s.points.map((p) => p.y)), ...(o.thresholds ?? []).map((t) => t.y)];
  const xMax = niceCeil(Math.max(1, ...xs));
  const yMax = niceCeil(Math.max(1, ...ys) * 1.1);
  const sx = (x: number): number => m.left + (x / xMax) * plotW;
  const sy = (y: number): number => m.top + plotH - (y / yMax) * plotH;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  );
  for (const v of ticks(yMax)) {
    parts.push(
      `<line x1="${m.left}" x2="${m.left + plotW}" y1="${f(sy(v))}" y2="${f(sy(v))}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 8}" y="${f(sy(v) + 4)}" text-anchor="end">${v}</text>`,
    );
  }
  for (const v of ticks(xMax)) {
    parts.push(
      `<line x1="${f(sx(v))}" x2="${f(sx(v))}" y1="${m.top + plotH}" y2="${m.top + plotH + 5}" stroke="#333"/>`,
      `<text x="${f(sx(v))}" y="${m.top + plotH + 18}" text-anchor="middle">${v}</text>`,
    );
  }
  parts.push(
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + plotH}" stroke="#333"/>`,
    `<line x1="${m.left}" x2="${m.left + plotW}" y1="${m.top + plotH}" y2="${m.top + plotH}" stroke="#333"/>`,
    `<text x="${m.left + plotW / 2}" y="${m.top + plotH + 38}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  for (const t of o.thresholds ?? []) {
    parts.push(
      `<line x1="${m.left}" x2="${m.left + plotW}" y1="${f(sy(t.y))}" y2="${f(sy(t.y))}" stroke="${t.color}" stroke-dasharray="6 4"/>`,
      `<text x="${m.left + plotW - 4}" y="${f(sy(t.y) - 5)}" text-anchor="end" fill="${t.color}">${esc(t.label)} (${t.y})</text>`,
    );
  }
  for (const s of o.series) {
    if (s.points.length === 0) continue;
    const d: string[] = [];
    let prevY: number | undefined;
    for (const p of s.points) {
      if (prevY === undefined) d.push(`M${f(sx(p.x))},${f(sy(p.y))}`);
      else d.push(`L${f(sx(p.x))},${f(sy(prevY))}`, `L${f(sx(p.x))},${f(sy(p.y))}`);
      prevY = p.y;
    }
    parts.push(`<path d="${d.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
  }
  let lx = m.left;
  const ly = height - 18;
  for (const s of o.series) {
    parts.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${lx + 30}" y="${ly}">${esc(s.label)}</text>`,
    );
    lx += 40 + s.label.length * 7;
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

function ticks(max: number): number[] {
  const step = niceCeil(max / 6);
  const out: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v * 100) / 100);
  return out;
}

function f(v: number): string {
  return v.toFixed(1);
}

function esc(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
