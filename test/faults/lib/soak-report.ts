// Judges and reports a soak run: trend lines on RSS and on the heap floor after warm-up, a table
// of the run in sixths, the verdict, and the SVG plot. Used by soak.ts at the end of a run and by
// `pnpm soak --report <json>` to re-read a saved run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessSample } from './gateway-process.ts';
import { artifactsDir } from './report.ts';
import { renderChart, trend } from './svg-plot.ts';

/** Everything a soak run leaves behind (written as soak-<start>.json). */
export interface SoakRun {
  readonly started: number;
  readonly durationMs: number;
  readonly rate: number;
  readonly totals: {
    sent: number;
    ok: number;
    unauthorized: number;
    shed: number;
    other: number;
    errors: number;
    lost: number;
  };
  readonly exit: { code: number | null; signal: string | null } | undefined;
  readonly samples: readonly ProcessSample[];
}

export interface SoakVerdict {
  readonly grew: boolean;
  /** The markdown summary. */
  readonly text: string;
  readonly svgPath: string;
}

/** A trend that would add more than this share of the level over the settled part is growth. */
const GROWTH_LIMIT = 0.1;

type Points = readonly (readonly [number, number])[];

const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const pct = (share: number): string => `${share >= 0 ? '+' : ''}${(share * 100).toFixed(1)}%`;
const mb = (v: number): string => v.toFixed(1);

/**
 * The lowest value of each minute: heap used is a sawtooth, its floor is what survives a
 * collection. A minute with under half the samples it should have (the run's first or last,
 * cut short) is left out: its floor would be too high.
 */
function floorPerMinute(points: Points, sampleMs: number): Points {
  const floors = new Map<number, { v: number; n: number }>();
  for (const [x, v] of points) {
    const minute = Math.floor(x / 60);
    const f = floors.get(minute);
    floors.set(minute, { v: Math.min(v, f?.v ?? v), n: (f?.n ?? 0) + 1 });
  }
  const wanted = 60_000 / sampleMs / 2;
  return [...floors].filter(([, f]) => f.n >= wanted).map(([minute, f]) => [minute * 60 + 30, f.v] as const);
}

const signed = (v: number, digits: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

/** Writes the plot and the samples, and returns the verdict with its summary. */
export function reportSoak(run: SoakRun, writeJson = true): SoakVerdict {
  const { started, durationMs, rate, totals, exit } = run;
  const samples = run.samples.filter((s) => s.at >= started && s.at <= started + durationMs);
  const t = (at: number): number => (at - started) / 1000;
  const rss: Points = samples.map((s) => [t(s.at), s.rss / 2 ** 20] as const);
  const heap: Points = samples.map((s) => [t(s.at), s.heapUsed / 2 ** 20] as const);
  const eld: Points = samples.map((s) => [t(s.at), s.eldP99Ms] as const);
  const intervals = samples.slice(1).map((s, i) => s.at - (samples[i]?.at ?? s.at));
  const sampleMs = median(intervals) || 5_000;
  const heapFloor = floorPerMinute(heap, sampleMs);

  // The first quarter is warm-up (JIT, caches and pools filling); the trend is judged on the rest.
  const warmUpS = durationMs / 4000;
  const settledS = durationMs / 1000 - warmUpS;
  const growth = (points: Points) => {
    const settled = points.filter(([x]) => x >= warmUpS);
    const { slope } = trend(settled);
    const level = median(settled.map(([, v]) => v));
    return {
      perMin: slope * 60,
      share: level > 0 ? (slope * settledS) / level : 0,
      level,
      // a line through fewer than 3 points says nothing
      judged: settled.length >= 3,
    };
  };
  const rssGrowth = growth(rss);
  const heapGrowth = growth(heapFloor);
  const judged = rssGrowth.judged && heapGrowth.judged;
  const grew = exit !== undefined || rssGrowth.share > GROWTH_LIMIT || heapGrowth.share > GROWTH_LIMIT;

  const sixth = durationMs / 6000;
  // whole minutes when the windows are, else one decimal (a short run)
  const minutesAt = (seconds: number): string => (seconds / 60).toFixed(sixth % 60 === 0 ? 0 : 1);
  const rows = Array.from({ length: 6 }, (_, i) => {
    const inside = ([x]: readonly [number, number]): boolean => x >= i * sixth && x < (i + 1) * sixth;
    const r = rss.filter(inside).map(([, v]) => v);
    const h = heap.filter(inside).map(([, v]) => v);
    const e = eld.filter(inside).map(([, v]) => v);
    const cell = (xs: number[], f: (xs: number[]) => number): string => (xs.length ? mb(f(xs)) : '-');
    return `| ${minutesAt(i * sixth)}-${minutesAt((i + 1) * sixth)} min | ${cell(r, median)} | ${cell(h, (xs) => Math.min(...xs))} | ${cell(h, (xs) => Math.max(...xs))} | ${cell(e, median)} |`;
  });

  mkdirSync(artifactsDir, { recursive: true });
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
  const svgPath = join(artifactsDir, `soak-${stamp}.svg`);
  const minutes = durationMs / 60_000;
  writeFileSync(
    svgPath,
    renderChart(
      `Sluice gateway soak: ${minutes.toFixed(minutes < 10 ? 1 : 0)} min at ${rate} req/s (${totals.sent.toLocaleString('en-US')} requests)`,
      [
        {
          title: 'Gateway memory',
          unit: 'MB',
          series: [
            { name: 'RSS', points: rss, color: '#1f77b4' },
            { name: 'heap used', points: heap, color: '#2ca02c', trend: false },
            { name: 'heap floor (per-minute minimum)', points: heapFloor, color: '#ff7f0e' },
          ],
        },
        {
          title: 'Event-loop delay p99',
          unit: 'ms',
          series: [{ name: 'p99 per sample', points: eld, color: '#d62728' }],
        },
      ],
    ),
  );
  if (writeJson) writeFileSync(join(artifactsDir, `soak-${stamp}.json`), JSON.stringify(run, null, 1));

  const text = `
| soak | value |
| --- | --- |
| duration | ${minutes.toFixed(1)} min at ${rate} req/s |
| requests | ${totals.sent.toLocaleString('en-US')} (2xx ${totals.ok}, 401 ${totals.unauthorized}, 503 ${totals.shed}, other ${totals.other}, no answer ${totals.errors}, lost ${totals.lost}) |
| RSS after warm-up | median ${mb(rssGrowth.level)} MB, trend ${signed(rssGrowth.perMin, 3)} MB/min (${pct(rssGrowth.share)} over ${(settledS / 60).toFixed(1)} min) |
| heap floor after warm-up | ${heapGrowth.judged ? `median ${mb(heapGrowth.level)} MB, trend ${signed(heapGrowth.perMin, 3)} MB/min (${pct(heapGrowth.share)})` : '- (fewer than 3 whole minutes after warm-up)'} |
| event-loop delay p99 | median ${median(eld.map(([, v]) => v)).toFixed(1)} ms, worst ${Math.max(0, ...eld.map(([, v]) => v)).toFixed(1)} ms |
| gateway exit | ${exit ? `${exit.code ?? exit.signal} (it died)` : 'none (closed at the end)'} |
| verdict | ${grew ? 'GROWTH TREND' : judged ? 'no growth trend' : 'not judged: too short for a trend (run 5 minutes or more)'} (growth: a trend adding over ${(GROWTH_LIMIT * 100).toFixed(0)}% of the level) |
| plot | ${svgPath} |

| window | RSS median (MB) | heap low (MB) | heap high (MB) | event-loop p99 median (ms) |
| --- | ---: | ---: | ---: | ---: |
${rows.join('\n')}
`;
  return { grew, text, svgPath };
}
