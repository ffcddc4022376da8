// Small helpers shared by the scenarios.

import type { Server } from 'node:net';

/**
 * Listens on 127.0.0.1:`port` (0 for a free one) and resolves to the port bound; a listen error
 * (the port taken) rejects instead of being thrown at the server.
 */
export function listenOnLoopback(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(address && typeof address === 'object' ? address.port : port);
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The parts of the gateway's /sluice/status.json the suite reads. */
export interface GatewayStatus {
  readonly state: string;
  readonly admission: {
    readonly limit: number;
    readonly inFlight: number;
    readonly queued: number;
    readonly rejected: number;
  };
  readonly breaker: 'closed' | 'open' | 'half-open';
  /** The last 20 breaker and database state changes, oldest first (epoch ms). */
  readonly changes: readonly { at: number; what: 'breaker' | 'database'; from: string; to: string }[];
  readonly cache: {
    readonly l1Hits: number;
    readonly l2Hits: number;
    readonly misses: number;
    readonly validatorCalls: number;
    readonly validatorErrors: number;
    readonly l2State: string;
  };
  readonly requests: { readonly upstreamErrors: number };
  readonly connections: {
    readonly open: number;
    readonly max: number;
    readonly refused: { readonly total: number; readonly perClient: number };
  } | null;
}

export async function gatewayStatus(baseUrl: string): Promise<GatewayStatus> {
  const res = await fetch(`${baseUrl}/sluice/status.json`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`status.json answered ${res.status}`);
  return (await res.json()) as GatewayStatus;
}

/** One request through undici's fetch; never throws for a status, returns it with the body. */
export async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(15_000) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** Samples `probe` every `everyMs` in the background; `stop()` returns what it saw. */
export function sampler<T>(
  probe: () => Promise<T>,
  everyMs: number,
): { stop(): Promise<{ at: number; value: T }[]> } {
  const seen: { at: number; value: T }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const value = await probe();
        seen.push({ at: Date.now(), value });
      } catch {
        // a failed probe is a gap, not a result
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}
