// The gateway's admission figures over a run, read from its admin listener's
// `/sluice/status.json`: the limit, its ceiling, why load control last moved it, requests in
// flight and queued. Plain JSON points, for the report and for diagnosis.

/** One reading of the gateway's status. */
export interface GatewayPoint {
  /** Milliseconds since the sampler started. */
  t: number;
  limit: number;
  ceiling: number;
  /** Load control's last reason (`headroom`, `waiting`, `latency`, `steady`, `no-demand`, `off`). */
  control: string;
  inFlight: number;
  queued: number;
  /** Where the limit comes from: `database` (PostgreSQL), `pgbouncer` (detected), `configured`, `default`. */
  source: string;
  /** Client backends the gateway's monitor last saw (null before a sample). */
  dbConnections: number | null;
}

/** A running status sampler; `stop()` returns what it read. */
export interface GatewayStatusSampler {
  stop(): Promise<GatewayPoint[]>;
}

interface Snapshot {
  admission: {
    limit: number;
    ceiling: number;
    control: string;
    inFlight: number;
    queued: number;
    limitSource: string;
  };
  database: { connections: number | null } | null;
}

/** Reads `${adminUrl}/sluice/status.json` every `intervalMs` (bounded by `maxPoints`); failed reads are skipped. */
export function sampleGatewayStatus(o: {
  adminUrl: string;
  intervalMs: number;
  maxPoints: number;
}): GatewayStatusSampler {
  const points: GatewayPoint[] = [];
  const started = performance.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped && points.length < o.maxPoints) {
      const next = performance.now() + o.intervalMs;
      try {
        const res = await fetch(`${o.adminUrl}/sluice/status.json`, {
          signal: AbortSignal.timeout(Math.max(1000, o.intervalMs)),
        });
        const s = (await res.json()) as Snapshot;
        const a = s.admission;
        points.push({
          t: performance.now() - started,
          limit: a.limit,
          ceiling: a.ceiling,
          control: a.control,
          inFlight: a.inFlight,
          queued: a.queued,
          source: a.limitSource,
          dbConnections: s.database?.connections ?? null,
        });
      } catch {
        // a busy gateway answers late: the next reading counts
      }
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return points;
    },
  };
}
