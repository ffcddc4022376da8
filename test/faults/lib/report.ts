// Each fault scenario records what it did (load held, the fault, bad inputs tried, the
// accounting of every request) as one JSON line; the global teardown prints them as the
// report table and writes it to .artifacts/faults/report.md.
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadReport } from '../../support/src/index.ts';

export const artifactsDir = fileURLToPath(new URL('../../../.artifacts/faults/', import.meta.url));
const resultsDir = join(artifactsDir, 'results');

export interface ScenarioResult {
  /** Group: fault, abuse, scale. */
  readonly group: 'fault' | 'abuse' | 'scale';
  readonly scenario: string;
  /** What was done to the system (e.g. "Redis SIGKILLed for 2 s, restarted"). */
  readonly fault: string;
  readonly survived: boolean;
  /** The load that ran through it (absent for scenarios without steady load). */
  readonly load?: LoadReport;
  /** Malformed inputs sent (abuse scenarios). */
  readonly badInputs?: number;
  /** Short facts worth a column: "peak upstream 6 / budget 6", "p99 rejection 1.2 ms". */
  readonly notes?: string;
  /** Which attempt of a scenario that may be retried (1 for the first); shown from the second on. */
  readonly attempt?: number;
}

export function recordScenario(result: ScenarioResult): void {
  mkdirSync(resultsDir, { recursive: true });
  appendFileSync(join(resultsDir, `${process.pid}.jsonl`), `${JSON.stringify(result)}\n`);
}

/** Writes a scenario's details (JSON) next to the report, for whoever digs into a failure. */
export function writeArtifact(name: string, data: unknown): void {
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(join(artifactsDir, name), `${JSON.stringify(data, null, 2)}\n`);
}

export function clearResults(): void {
  rmSync(resultsDir, { recursive: true, force: true });
}

export function readResults(): ScenarioResult[] {
  let files: string[] = [];
  try {
    files = readdirSync(resultsDir).filter((f) => f.endsWith('.jsonl'));
  } catch {
    return [];
  }
  const results: ScenarioResult[] = [];
  for (const f of files) {
    for (const line of readFileSync(join(resultsDir, f), 'utf8').split('\n')) {
      if (line.trim()) results.push(JSON.parse(line) as ScenarioResult);
    }
  }
  const order = { fault: 0, abuse: 1, scale: 2 };
  return results.sort((a, b) => order[a.group] - order[b.group] || a.scenario.localeCompare(b.scenario));
}

const n = (v: number): string => v.toLocaleString('en-US');

function loadCell(load: LoadReport | undefined): string {
  if (!load) return '-';
  return `${n(load.sent)} req, ${n(Math.round(load.ratePerSecond))}/s, ${(load.durationMs / 1000).toFixed(1)} s, p99 ${Math.round(load.latencyMs.p99)} ms`;
}

/** The report table (markdown). */
export function formatReport(results: readonly ScenarioResult[]): string {
  const rows: string[] = [
    '| group | scenario | fault | load held | bad inputs | 2xx | 401 | 503 clean | other | no answer | lost | result | notes |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  ];
  const total = {
    sent: 0,
    ok: 0,
    unauthorized: 0,
    shed: 0,
    other: 0,
    errors: 0,
    lost: 0,
    bad: 0,
    survived: 0,
  };
  // A retried scenario keeps a row per recorded attempt; the scenario counts and the survived
  // tally use its last attempt, the request columns add up every attempt's requests.
  const last = new Map<string, ScenarioResult>();
  for (const r of results) last.set(r.scenario, r);
  let retried = 0;
  for (const r of results) {
    const attempt = r.attempt ?? 1;
    if (attempt > 1) retried += 1;
    const scenario = attempt > 1 ? `${r.scenario} (attempt ${attempt})` : r.scenario;
    const l = r.load;
    total.sent += l?.sent ?? 0;
    total.ok += l?.ok ?? 0;
    total.unauthorized += l?.unauthorized ?? 0;
    total.shed += l?.shed ?? 0;
    total.other += l?.other ?? 0;
    total.errors += l?.errors ?? 0;
    total.lost += l?.lost ?? 0;
    total.bad += r.badInputs ?? 0;
    const c = (v: number | undefined): string => (v === undefined ? '-' : n(v));
    rows.push(
      `| ${r.group} | ${scenario} | ${r.fault} | ${loadCell(l)} | ${c(r.badInputs)} | ${c(l?.ok)} | ${c(l?.unauthorized)} | ${c(l?.shed)} | ${c(l?.other)} | ${c(l?.errors)} | ${c(l?.lost)} | ${r.survived ? 'survived' : '**FAILED**'} | ${r.notes ?? ''} |`,
    );
  }
  for (const r of last.values()) if (r.survived) total.survived += 1;
  const scenarios = `${last.size} scenarios${retried > 0 ? ` (${retried} retried)` : ''}`;
  rows.push(
    `| **total** | ${scenarios} | ${total.survived}/${last.size} survived | ${n(total.sent)} req | ${n(total.bad)} | ${n(total.ok)} | ${n(total.unauthorized)} | ${n(total.shed)} | ${n(total.other)} | ${n(total.errors)} | ${n(total.lost)} | | |`,
  );
  return rows.join('\n');
}

export function writeReport(results: readonly ScenarioResult[]): string {
  const table = formatReport(results);
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(
    join(artifactsDir, 'report.md'),
    `# Sluice fault, abuse and scale report\n\n${new Date().toISOString()}\n\n${table}\n`,
  );
  return table;
}
