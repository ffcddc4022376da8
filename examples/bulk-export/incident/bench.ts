// The incident benchmark as a function: every variant, every setup, one after another (each on a
// fresh fixture of the same configuration), summarized. The command line is index.ts.

import { type RunSummary, summarize } from './report.js';
import { type RunResult, runSetup } from './run-setup.js';
import { checkSettings, type IncidentSettings } from './scenario.js';

/** What a benchmark run produced. Plain JSON. */
export interface IncidentReport {
  settings: IncidentSettings;
  startedAt: string;
  durationMs: number;
  /** False when `signal` stopped it before every run was done. */
  complete: boolean;
  summaries: RunSummary[];
  runs: RunResult[];
}

/**
 * Runs the incident side by side: for each variant, each setup. Bounded: each run stops at
 * `runDeadlineMs`; `signal` stops the current run and skips the rest (what was started is
 * stopped and dropped either way).
 * @throws {TypeError | RangeError} for bad settings
 */
export async function runIncidentBench(
  settings: IncidentSettings,
  o: { signal?: AbortSignal; log?: (line: string) => void } = {},
): Promise<IncidentReport> {
  const s = checkSettings(settings);
  const log = o.log ?? (() => undefined);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const runs: RunResult[] = [];
  let complete = true;
  outer: for (const variant of s.variants) {
    for (const setup of s.setups) {
      if (o.signal?.aborted) {
        complete = false;
        break outer;
      }
      log(`  ${variant} / ${setup}: ${s.tasks} tasks, ${s.workers} workers over ${s.logins} logins`);
      const run = await runSetup(s, setup, variant, o);
      runs.push(run);
      const sum = summarize(run);
      log(
        run.error !== undefined
          ? `    did not run: ${run.error}`
          : `    ${sum.tasksOk}/${s.tasks} tasks in ${sum.bulkSeconds.toFixed(1)} s; interactive p99 ${sum.interactive.p99Ms} ms; ` +
              `peak ${sum.peakConnections} connections (servers started in ${run.overheadSeconds.start.toFixed(1)} s, ` +
              `stopped in ${run.overheadSeconds.stop.toFixed(1)} s)`,
      );
    }
  }
  if (o.signal?.aborted) complete = false;
  return {
    settings: s,
    startedAt,
    durationMs: Math.round(performance.now() - started),
    complete,
    summaries: runs.map(summarize),
    runs,
  };
}
