import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Integration files: they use the shared PostgreSQL or Redis, or start servers and child
 * processes (Django, PgBouncer, private PostgreSQL or Redis clusters, gateways, Python, Chromium).
 * Each maps to the PostgreSQL connections of the shared server it may hold at once (its own
 * pools, Django's, PgBouncer's, admin queries), measured with `SLUICE_TEST_PG_REPORT` plus room.
 * Every other test file is a unit file: no services, no child processes (the unit project
 * points the shared servers at a closed port, so a new file that needs them fails until it is
 * listed here).
 */
const pgBudgets: Record<string, number> = {
  'packages/admission/test/distributed.test.ts': 0,
  'packages/admission/test/limits.test.ts': 8,
  'packages/admission/test/redis-cluster.test.ts': 0,
  'packages/admission/test/redis-semaphore.test.ts': 0,
  'packages/django/test/credential-vectors.test.ts': 0,
  'packages/django/test/session-vectors.test.ts': 0,
  'packages/gateway/test/buffering.e2e.test.ts': 0,
  'packages/gateway/test/cli.e2e.test.ts': 12,
  'packages/gateway/test/cvat.e2e.test.ts': 16,
  'packages/gateway/test/database-mode.e2e.test.ts': 12,
  'packages/gateway/test/database-outage.e2e.test.ts': 0,
  'packages/gateway/test/gateway.e2e.test.ts': 12,
  'packages/gateway/test/hardening.e2e.test.ts': 0,
  'packages/gateway/test/redis-cluster.e2e.test.ts': 0,
  'packages/gateway/test/status-page.e2e.test.ts': 12,
  'packages/pool/test/leak.test.ts': 5,
  'packages/pool/test/monitor.test.ts': 12,
  'packages/pool/test/pgbouncer.test.ts': 6,
  'packages/pool/test/pool.test.ts': 10,
  'packages/pool/test/purge.test.ts': 4,
  'packages/pool/test/reaper.test.ts': 12,
  'packages/pool/test/resilience.test.ts': 6,
  'packages/session-cache/test/cache-outcome.test.ts': 0,
  'packages/session-cache/test/cluster.test.ts': 0,
  'packages/session-cache/test/django-http.test.ts': 10,
  'packages/session-cache/test/django-validators.test.ts': 10,
  'packages/session-cache/test/redis-failures.test.ts': 0,
  'packages/session-cache/test/redis-outage.test.ts': 10,
  'packages/session-cache/test/tiered-cache.test.ts': 0,
  'test/examples/bulk-export.test.ts': 0,
  'test/examples/cvat-compose.test.ts': 0,
  'test/examples/demo-parts.test.ts': 8,
  'test/examples/express-service.test.ts': 8,
  'test/examples/incident-bench.test.ts': 16,
  'test/examples/newcomer.test.ts': 0,
  'test/support/test/django-cvat.test.ts': 12,
  'test/support/test/django.test.ts': 12,
  'test/support/test/own-postgres.test.ts': 0,
  'test/support/test/pg-budget.test.ts': 4,
  'test/support/test/redis-cluster.test.ts': 0,
  'test/support/test/support.test.ts': 4,
};
const integration = Object.keys(pgBudgets);
const allTests = ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'];

// Tests import workspace packages through their "source" export condition, so they run
// against src/ without a build step.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
  test: {
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: allTests,
          exclude: [...configDefaults.exclude, ...integration],
          // Nothing here may reach the shared servers: a test that does fails at once.
          env: { SLUICE_TEST_PG_PORT: '1', SLUICE_TEST_REDIS_URL: 'redis://127.0.0.1:1' },
          globalSetup: ['test/support/src/vitest/run-tmp.ts'],
          setupFiles: ['test/support/src/vitest/exit-on-sigterm.ts'],
          maxWorkers: '100%',
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: integration,
          globalSetup: ['test/support/src/vitest/run-tmp.ts', 'test/support/src/vitest/pg-budget.ts'],
          setupFiles: [
            'test/support/src/vitest/exit-on-sigterm.ts',
            'test/support/src/vitest/pg-budget-file.ts',
          ],
          provide: { pgBudgets, pgDefaultBudget: 10 },
          // Integration files start servers and child processes of their own: two at a time keep a
          // loaded 2-core machine responsive enough for their start timeouts (three starved them
          // at load 14). SLUICE_TEST_INTEGRATION_WORKERS sets another number.
          maxWorkers: Number(process.env.SLUICE_TEST_INTEGRATION_WORKERS ?? 2),
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
