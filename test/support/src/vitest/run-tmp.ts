// Global setup: the run gets its own temporary folder (TMPDIR), removed at the end with
// whatever a test left in it; folders of runs that were killed are swept at the start. Every
// project lists it; they share one folder (the first makes it, the last one out removes it).
import { mkdirSync, symlinkSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRunTmp, type RunTmp } from '../tmp.js';

const key = Symbol.for('sluice.test.runTmp');
const shared = globalThis as { [key]?: { tmp: RunTmp; users: number } | undefined };
const tsxCache = fileURLToPath(new URL('../../../../node_modules/.cache/tsx', import.meta.url));

export default function setup(): () => void {
  if (!shared[key]) {
    const tmp = createRunTmp();
    // tsx keeps its compile cache in `<tmpdir>/tsx-<uid>`: point that at node_modules/.cache, so
    // the gateways and workers the tests start from TypeScript compile once, not once per run.
    mkdirSync(tsxCache, { recursive: true });
    symlinkSync(tsxCache, join(tmp.dir, `tsx-${process.geteuid?.() ?? userInfo().username}`));
    shared[key] = { tmp, users: 0 };
  }
  const run = shared[key];
  run.users += 1;
  return () => {
    run.users -= 1;
    if (run.users > 0) return;
    shared[key] = undefined;
    const left = run.tmp.contents().filter((name) => !name.startsWith('tsx-'));
    if (left.length > 0)
      console.warn(`\nleft behind in the run's temporary folder (now removed): ${left.join(', ')}`);
    run.tmp.remove();
  };
}
