import type { BulkExportReport } from './run.js';

/** A markdown table of one report: outcomes, status codes, failures, latency, throughput. */
export function formatReport(r: BulkExportReport): string {
  const rows: [string, string][] = [
    ['server', r.baseUrl],
    ['tasks (concurrency)', `${r.tasks} (${r.concurrency})`],
    ['succeeded / failed', `${r.succeeded} / ${r.failed}`],
    ['requests', String(r.requests)],
    ['status codes', entries(r.statusCounts)],
    ['connection errors', entries(r.connectionErrors)],
    ['timeouts', String(r.timeouts)],
    ['interrupted by the deadline', String(r.interrupted)],
    ['failures by kind', entries(r.failuresByKind)],
    ['failures by stage', entries(r.failuresByStage)],
    ['request latency p50 / p99 (ms)', `${r.latencyMs.request.p50} / ${r.latencyMs.request.p99}`],
    ['task latency p50 / p99 (ms)', `${r.latencyMs.task.p50} / ${r.latencyMs.task.p99}`],
    ['throughput', `${r.throughput.requestsPerSecond} req/s, ${r.throughput.tasksPerSecond} tasks/s`],
    ['downloaded', `${(r.bytesDownloaded / 1024).toFixed(1)} KiB`],
    ['duration', `${(r.durationMs / 1000).toFixed(1)} s`],
  ];
  return markdownTable(['bulk-export', 'result'], rows);
}

/** Several reports side by side, one column each. */
export function compareReports(columns: readonly { label: string; report: BulkExportReport }[]): string {
  const line = (name: string, f: (r: BulkExportReport) => string): string[] => [
    name,
    ...columns.map((c) => f(c.report)),
  ];
  return markdownTable(
    ['bulk-export', ...columns.map((c) => c.label)],
    [
      line('tasks (concurrency)', (r) => `${r.tasks} (${r.concurrency})`),
      line('succeeded / failed', (r) => `${r.succeeded} / ${r.failed}`),
      line('requests', (r) => String(r.requests)),
      line('status codes', (r) => entries(r.statusCounts)),
      line('connection errors', (r) => entries(r.connectionErrors)),
      line('failures by stage', (r) => entries(r.failuresByStage)),
      line('request p50 / p99 (ms)', (r) => `${r.latencyMs.request.p50} / ${r.latencyMs.request.p99}`),
      line('task p50 / p99 (ms)', (r) => `${r.latencyMs.task.p50} / ${r.latencyMs.task.p99}`),
      line('throughput (req/s)', (r) => String(r.throughput.requestsPerSecond)),
      line('throughput (tasks/s)', (r) => String(r.throughput.tasksPerSecond)),
      line('duration (s)', (r) => (r.durationMs / 1000).toFixed(1)),
    ],
  );
}

/** A markdown table with columns padded to line up in a terminal. */
export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  if (head.every((h) => h.trim() === '')) throw new RangeError('markdownTable: the header row is empty');
  const widths = head.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: readonly string[]): string =>
    `| ${widths.map((w, i) => (cells[i] ?? '').padEnd(w)).join(' | ')} |`;
  return [fmt(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(fmt)].join('\n');
}

function entries(o: Readonly<Record<string, number | undefined>>): string {
  const list = Object.entries(o).filter(([, v]) => v !== undefined && v > 0);
  return list.length === 0 ? '-' : list.map(([k, v]) => `${k}: ${v}`).join(', ');
}
