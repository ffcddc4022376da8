// bulk-export: cvat_sdk's export pattern for N tasks at a chosen concurrency.
//   node --conditions=source --import tsx examples/bulk-export/src/cli.ts \
//     --base-url http://127.0.0.1:8090 --token "$CVAT_TOKEN" --tasks 500 --concurrency 200
// Prints a table (stderr) and the JSON report (stdout, or --json FILE).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BulkExportCredential, BulkExportOptions } from './options.js';
import { formatReport } from './report.js';
import { runBulkExport } from './run.js';

const usage = `usage: bulk-export --base-url URL (--token KEY | --bearer TOKEN | --session ID [--csrf T] | --username U --password P [--use token|session])
  [--tasks N | --task-ids 1,2,3] [--first-task-id N] [--concurrency C] [--format NAME]
  [--poll-interval MS] [--max-polls N] [--timeout MS] [--deadline MS] [--retries N] [--no-download] [--json FILE]
environment: CVAT_URL, CVAT_TOKEN, CVAT_USERNAME, CVAT_PASSWORD`;

function credentialFrom(v: Record<string, string | boolean | undefined>): BulkExportCredential {
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const token = s('token') ?? process.env.CVAT_TOKEN;
  const bearer = s('bearer');
  const session = s('session');
  const username = s('username') ?? process.env.CVAT_USERNAME;
  const password = s('password') ?? process.env.CVAT_PASSWORD;
  if (bearer) return { kind: 'bearer', token: bearer };
  if (token) return { kind: 'token', token };
  if (session) {
    const csrf = s('csrf');
    return csrf
      ? { kind: 'session', sessionId: session, csrfToken: csrf }
      : { kind: 'session', sessionId: session };
  }
  const use = s('use');
  if (use !== undefined && use !== 'token' && use !== 'session') {
    throw new TypeError(`--use must be token or session, got ${JSON.stringify(use)}`);
  }
  if (username && password)
    return use ? { kind: 'login', username, password, use } : { kind: 'login', username, password };
  throw new TypeError('a credential is required: --token, --bearer, --session or --username/--password');
}

function int(name: string, v: string | boolean | undefined): number | undefined {
  if (typeof v !== 'string') return undefined;
  if (!/^\d+$/.test(v)) throw new TypeError(`--${name} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'base-url': { type: 'string' },
      token: { type: 'string' },
      bearer: { type: 'string' },
      session: { type: 'string' },
      csrf: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      use: { type: 'string' },
      tasks: { type: 'string' },
      'task-ids': { type: 'string' },
      'first-task-id': { type: 'string' },
      concurrency: { type: 'string' },
      format: { type: 'string' },
      'poll-interval': { type: 'string' },
      'max-polls': { type: 'string' },
      timeout: { type: 'string' },
      deadline: { type: 'string' },
      retries: { type: 'string' },
      'no-download': { type: 'boolean' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const options: BulkExportOptions = {
    baseUrl: values['base-url'] ?? process.env.CVAT_URL ?? 'http://127.0.0.1:8090',
    credential: credentialFrom(values),
    download: !values['no-download'],
  };
  const taskIds = values['task-ids'];
  if (taskIds !== undefined) {
    options.taskIds = taskIds.split(',').map((x, i) => int(`task-ids[${i}]`, x.trim()) ?? 0);
  }
  const set = <K extends keyof BulkExportOptions>(key: K, flag: string): void => {
    const n = int(flag, values[flag as keyof typeof values]);
    if (n !== undefined) (options as Record<K, unknown>)[key] = n;
  };
  set('tasks', 'tasks');
  set('firstTaskId', 'first-task-id');
  set('concurrency', 'concurrency');
  set('pollIntervalMs', 'poll-interval');
  set('maxPolls', 'max-polls');
  set('requestTimeoutMs', 'timeout');
  set('deadlineMs', 'deadline');
  set('retries', 'retries');
  if (values.format !== undefined) options.format = values.format;

  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  options.signal = stop.signal;
  const report = await runBulkExport(options);
  console.error(formatReport(report));
  const json = JSON.stringify(report, null, 2);
  if (values.json) writeFileSync(values.json, `${json}\n`);
  else console.log(json);
  return report.failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    console.error(usage);
    process.exitCode = 2;
  },
);
