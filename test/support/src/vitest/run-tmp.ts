// Global setup: the run gets its own temporary folder (TMPDIR), removed at the end with
// whatever a test left in it; folders of runs that were killed are swept at the start. Every
// project lists it; they share one folder (the first makes it, the last one out removes it).
import { createRunTmp, type RunTmp } from '../tmp.js';

const key = Symbol.for('sluice.test.runTmp');
const shared = globalThis as { [key]?: { tmp: RunTmp; users: number } | undefined };

export default function setup(): () => void {
  shared[key] ??= { tmp: createRunTmp(), users: 0 };
  const run = shared[key];
  run.users += 1;
  return () => {
    run.users -= 1;
    if (run.users > 0) return;
    shared[key] = undefined;
    // tsx's compile cache is a cache, not a leftover.
    const left = run.tmp.contents().filter((name) => !name.startsWith('tsx-'));
    if (left.length > 0)
      console.warn(`\nleft behind in the run's temporary folder (now removed): ${left.join(', ')}`);
    run.tmp.remove();
  };
}
