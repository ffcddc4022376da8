// `pnpm bench`: runs every package's benchmark (packages/*/bench/index.ts) one after another,
// each in its own process so they do not disturb each other, and prints their tables.
// `pnpm bench <package>` runs only the named packages (e.g. `pnpm bench django pool`).
// `pnpm bench incident [flags]` runs the incident benchmark (examples/bulk-export/incident), with
// the flags after it (e.g. `pnpm bench incident --quick`); it takes minutes, so it runs only when
// named.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const NAMED_ONLY: Record<string, string> = { incident: 'examples/bulk-export/incident/index.ts' };

// Runs one benchmark in its own process. Ctrl-C reaches it (same process group) and a SIGTERM sent
// here is passed on: it cleans up what it started, this waits for it, and runs no other.
let interrupted = false;
const run = (label: string, script: string, args: readonly string[] = []): Promise<boolean> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], {
      cwd: root,
      stdio: 'inherit',
    });
    const forward = (signal: NodeJS.Signals): void => {
      interrupted = true;
      if (signal === 'SIGTERM') child.kill(signal);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      if (code !== 0) console.error(`bench ${label} failed (exit ${code ?? signal})`);
      resolve(code === 0);
    });
  });

const argv = process.argv.slice(2);
const named = argv[0] !== undefined ? NAMED_ONLY[argv[0]] : undefined;
if (named !== undefined) {
  process.exit((await run(argv[0] ?? '', named, argv.slice(1))) ? 0 : 1);
}

const wanted = new Set(argv);
const order = ['django', 'pool', 'session-cache', 'admission', 'gateway'];
const packages = readdirSync(join(root, 'packages'))
  .filter((name) => existsSync(join(root, 'packages', name, 'bench', 'index.ts')))
  .filter((name) => wanted.size === 0 || wanted.has(name))
  .sort((a, b) => order.indexOf(a) - order.indexOf(b));

let failed = 0;
for (const name of packages) {
  if (interrupted) break;
  console.log(`\n## @sluice/${name}\n`);
  if (!(await run(`for @sluice/${name}`, join('packages', name, 'bench', 'index.ts')))) failed += 1;
}
process.exit(interrupted ? 130 : failed === 0 ? 0 : 1);
