// `pnpm demo` entry: runs demo/index.ts (TypeScript) through tsx, with the workspace packages'
// "source" export condition, in a child process, and exits with its code.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const tsx = import.meta.resolve('tsx');
const script = fileURLToPath(new URL('./demo/index.ts', import.meta.url));
const child = spawn(
  process.execPath,
  ['--conditions=source', '--import', tsx, script, ...process.argv.slice(2)],
  {
    stdio: 'inherit',
  },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
