/** Something that knows its server process ids (every live pool in this process). */
export interface PidSource {
  backendPids(): number[];
}

const live = new Set<PidSource>();

/** Registers a live pool (its backends are never reaped by Sluice in this process). */
export function registerPool(pool: PidSource): void {
  live.add(pool);
}

/** Forgets a closed pool. */
export function unregisterPool(pool: PidSource): void {
  live.delete(pool);
}

/** Server process ids of every live Sluice pool in this process. */
export function processBackendPids(): number[] {
  const out: number[] = [];
  for (const pool of live) out.push(...pool.backendPids());
  return out;
}
