import pg from 'pg';

/** One sample of a role's connections, from `pg_stat_activity`. */
export interface ConnectionPoint {
  /** Milliseconds since the sampler started. */
  t: number;
  /** Connections of the role now. */
  total: number;
  /** By state (`active`, `idle`, `idle in transaction`, ...). */
  byState: Record<string, number>;
  /** By `application_name` (`''` for Django, which sets none, like CVAT). */
  byApplication: Record<string, number>;
}

/** A running sampler; `stop()` returns what it saw. */
export interface ConnectionSampler {
  readonly points: readonly ConnectionPoint[];
  /** The highest `total` seen. */
  readonly peak: number;
  stop(): Promise<ConnectionPoint[]>;
}

/**
 * Samples the connections of `role` every `intervalMs` through one superuser connection (which
 * does not count against the role's CONNECTION LIMIT). Bounded by `maxPoints`.
 */
export async function sampleConnections(o: {
  adminUrl: string;
  role: string;
  intervalMs: number;
  maxPoints?: number;
}): Promise<ConnectionSampler> {
  const client = new pg.Client({ connectionString: o.adminUrl, application_name: 'sluice-demo-sampler' });
  await client.connect();
  const maxPoints = o.maxPoints ?? 10_000;
  const points: ConnectionPoint[] = [];
  const started = performance.now();
  let peak = 0;
  let stopped = false;
  const sampleOnce = async (): Promise<void> => {
    const { rows } = await client.query<{ state: string | null; app: string; n: number }>(
      `SELECT state, application_name AS app, count(*)::int AS n
         FROM pg_stat_activity WHERE usename = $1 GROUP BY 1, 2`,
      [o.role],
    );
    const point: ConnectionPoint = {
      t: performance.now() - started,
      total: 0,
      byState: {},
      byApplication: {},
    };
    for (const r of rows) {
      const state = r.state ?? 'unknown';
      point.total += r.n;
      point.byState[state] = (point.byState[state] ?? 0) + r.n;
      point.byApplication[r.app] = (point.byApplication[r.app] ?? 0) + r.n;
    }
    peak = Math.max(peak, point.total);
    if (points.length < maxPoints) points.push(point);
  };
  const loop = (async () => {
    while (!stopped) {
      const next = performance.now() + o.intervalMs;
      await sampleOnce().catch(() => undefined);
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  })();
  return {
    points,
    get peak() {
      return peak;
    },
    async stop() {
      stopped = true;
      await loop;
      await client.end().catch(() => undefined);
      return points;
    },
  };
}

/** Waits (bounded) until the role has at most `atMost` connections; returns how many it has. */
export async function waitForConnections(
  adminUrl: string,
  role: string,
  atMost: number,
  timeoutMs: number,
): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl, application_name: 'sluice-demo-sampler' });
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1',
        [role],
      );
      const n = rows[0]?.n ?? 0;
      if (n <= atMost || Date.now() > deadline) return n;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
