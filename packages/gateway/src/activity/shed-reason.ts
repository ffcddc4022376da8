/**
 * Why the gateway answered a request itself instead of letting it reach the upstream: the
 * admission queue was full or the wait timed out, the circuit breaker was open, the database was
 * down, no valid credential came, or the gateway was shutting down.
 */
export type ShedReason = (typeof SHED_REASONS)[number];

/** Every {@link ShedReason}, in the order the status page lists them. */
export const SHED_REASONS = Object.freeze([
  'queue_full',
  'queue_timeout',
  'circuit_open',
  'database_down',
  'unauthenticated',
  'shutting_down',
] as const);

const BY_CODE: Readonly<Record<string, ShedReason>> = {
  E_QUEUE_FULL: 'queue_full',
  E_QUEUE_TIMEOUT: 'queue_timeout',
  E_CIRCUIT_OPEN: 'circuit_open',
  E_DATABASE_UNAVAILABLE: 'database_down',
  E_UNAUTHENTICATED: 'unauthenticated',
  E_CLOSED: 'shutting_down',
  E_SHUTTING_DOWN: 'shutting_down',
};

/** The shed reason of a request's error code, or undefined when it was not shed. */
export function shedReason(code: string | undefined): ShedReason | undefined {
  return code === undefined ? undefined : BY_CODE[code];
}
