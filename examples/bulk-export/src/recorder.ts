/** Latency summary in milliseconds (nearest-rank percentiles). */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Counts every request's answer (or error) and keeps its latency. Bounded by the run's size. */
export class Recorder {
  readonly statusCounts = new Map<number, number>();
  readonly connectionErrors = new Map<string, number>();
  readonly requestLatencies: number[] = [];
  readonly taskLatencies: number[] = [];
  readonly resultUrlOrigins = new Map<string, number>();
  readonly firstErrors: string[] = [];
  timeouts = 0;
  /** Requests stopped by the run's deadline or signal before an answer. */
  interrupted = 0;
  requests = 0;
  bytes = 0;

  answered(status: number, ms: number): void {
    this.requests += 1;
    bump(this.statusCounts, status);
    this.requestLatencies.push(ms);
  }

  failed(kind: 'connection' | 'timeout' | 'deadline', code: string, ms: number, message: string): void {
    this.requests += 1;
    if (kind === 'timeout') this.timeouts += 1;
    if (kind === 'deadline') this.interrupted += 1;
    if (kind === 'connection') bump(this.connectionErrors, code);
    if (kind !== 'deadline') this.requestLatencies.push(ms);
    this.noteError(`${code}: ${message}`);
  }

  noteError(message: string): void {
    if (this.firstErrors.length < 5 && !this.firstErrors.includes(message)) this.firstErrors.push(message);
  }

  resultOrigin(origin: string): void {
    bump(this.resultUrlOrigins, origin);
  }
}

export function bump<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Nearest-rank percentiles of `values` (milliseconds, rounded to 0.1). */
export function summarize(values: readonly number[]): LatencySummary {
  if (values.length === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number): number =>
    sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1] ?? 0),
    mean: round(sum / sorted.length),
  };
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
