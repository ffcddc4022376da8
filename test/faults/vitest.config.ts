import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The fault, abuse and scale suite: `pnpm test:faults`. Its files end in `.fault.ts` so the
// root `vitest run` never picks them up. They run one file at a time: each one loads the
// machine on purpose and owns its own PostgreSQL, Redis, upstream and gateways.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: {
    include: ['test/faults/**/*.fault.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 120_000,
    // The run's own TMPDIR, removed at the end (and swept after a killed run); workers exit on
    // SIGTERM so the servers' exit hooks run.
    globalSetup: ['test/support/src/vitest/run-tmp.ts', 'test/faults/global-setup.ts'],
    setupFiles: ['test/support/src/vitest/exit-on-sigterm.ts'],
  },
});
