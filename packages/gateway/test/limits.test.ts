import type { ConnectionSample } from '@sluice/pool';
import { describe, expect, it } from 'vitest';
import { admissionLimit, postgresCeiling } from '../src/limits.ts';

const activity = (total: number, busy = 0) => ({
  total,
  active: busy,
  idle: total - busy,
  idleInTransaction: 0,
  waiting: 0,
  busy,
});

/** A pg_stat_activity sample: max_connections 100, 3 reserved. */
function sample(apps: Record<string, { total: number; busy?: number }>): ConnectionSample {
  const activityByApplication = Object.fromEntries(
    Object.entries(apps).map(([name, a]) => [name, activity(a.total, a.busy ?? 0)]),
  );
  const total = Object.values(apps).reduce((n, a) => n + a.total, 0);
  return {
    at: 0,
    maxConnections: 100,
    reservedConnections: 3,
    total,
    byState: {},
    byApplication: Object.fromEntries(Object.entries(apps).map(([n, a]) => [n, a.total])),
    activityByApplication,
    byDatabase: {},
    oldestIdleMsByApplication: {},
  };
}

const config = { upstreamApplicationName: 'cvat:server', dbReserve: 10, poolMax: 4 };

describe('the PostgreSQL ceiling', () => {
  it("does not shrink for the upstream's connections that serve requests in flight", () => {
    const calm = postgresCeiling(sample({ 'sluice-gateway': { total: 2 } }), config, 'sluice-gateway', 0);
    const busy = postgresCeiling(
      sample({ 'sluice-gateway': { total: 2 }, 'cvat:server': { total: 30, busy: 30 } }),
      config,
      'sluice-gateway',
      30,
    );
    expect(calm).toBe(100 - 3 - 10 - 4);
    expect(busy).toBe(calm);
  });

  it('counts workers and other clients once, against the reserve, not twice', () => {
    const workers = postgresCeiling(
      sample({ 'cvat:worker:export': { total: 6 }, 'cvat:worker:import': { total: 2 } }),
      config,
      'sluice-gateway',
      0,
    );
    expect(workers).toBe(100 - 3 - 10 - 4);
    const many = postgresCeiling(
      sample({ 'cvat:worker:export': { total: 25 } }),
      config,
      'sluice-gateway',
      0,
    );
    expect(many).toBe(100 - 3 - 25 - 4);
  });

  it("subtracts the upstream's connections left idle beyond the requests in flight: leaks", () => {
    const leaky = postgresCeiling(sample({ 'cvat:server': { total: 40 } }), config, 'sluice-gateway', 10);
    expect(leaky).toBe(100 - 3 - 10 - 4 - 30);
  });
});

describe('the admission limit', () => {
  it('is the configured budget without a database, and never above it with one', () => {
    const fixed = admissionLimit(
      { ...config, dbBudget: 7, upstreamConnections: 128, loadControl: true },
      false,
      'g',
    );
    expect(fixed.source.current).toBe(7);
    expect(fixed.load).toBeUndefined();
    const followed = admissionLimit(
      { ...config, dbBudget: 12, upstreamConnections: 128, loadControl: false },
      true,
      'g',
    );
    followed.onPostgresSample(sample({}), 0, false);
    expect(followed.source.current).toBe(12);
    followed.onPostgresSample(sample({ 'cvat:server': { total: 90 } }), 0, false);
    expect(followed.source.current).toBe(1);
  });
});
