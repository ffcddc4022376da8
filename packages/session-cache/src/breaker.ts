/** The L2 breaker's state, switched on exhaustively. */
export type BreakerState =
  | { readonly kind: 'closed'; readonly failures: number }
  | { readonly kind: 'open'; readonly downSince: number; readonly openedAt: number; readonly error: unknown }
  | { readonly kind: 'half-open'; readonly downSince: number };

/** Options of {@link Breaker}. */
export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  readonly failureThreshold: number;
  /** How long it stays open before a probe may close it, ms. */
  readonly cooldownMs: number;
  readonly now: () => number;
  readonly onOpen: (error: unknown) => void;
  readonly onClose: (downForMs: number) => void;
}

/**
 * A consecutive-failure breaker for the Redis tier: while open, L2 is skipped entirely; after
 * `cooldownMs` one probe (the owner's PING) decides whether it closes again or waits another cooldown.
 */
export class Breaker {
  #state: BreakerState = { kind: 'closed', failures: 0 };
  readonly #o: BreakerOptions;

  constructor(options: BreakerOptions) {
    this.#o = options;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** `'closed' | 'open' | 'half-open'`. */
  get name(): BreakerState['kind'] {
    return this.#state.kind;
  }

  /** True when requests may use L2 (closed only; a half-open breaker lets the probe alone through). */
  get allowsRequests(): boolean {
    return this.#state.kind === 'closed';
  }

  /** Milliseconds until a probe is due (0 when due now or not open). */
  msUntilProbe(): number {
    const s = this.#state;
    switch (s.kind) {
      case 'closed':
      case 'half-open':
        return 0;
      case 'open':
        return Math.max(0, s.openedAt + this.#o.cooldownMs - this.#o.now());
      default:
        return unreachable(s);
    }
  }

  /** Enters half-open for the probe; false when not open or the cooldown has not passed. */
  startProbe(): boolean {
    const s = this.#state;
    if (s.kind !== 'open' || this.msUntilProbe() > 0) return false;
    this.#state = { kind: 'half-open', downSince: s.downSince };
    return true;
  }

  success(): void {
    const s = this.#state;
    switch (s.kind) {
      case 'closed':
        if (s.failures !== 0) this.#state = { kind: 'closed', failures: 0 };
        return;
      case 'open':
        // A command that started before the breaker opened: not evidence enough; the probe decides.
        return;
      case 'half-open':
        this.#state = { kind: 'closed', failures: 0 };
        this.#o.onClose(this.#o.now() - s.downSince);
        return;
      default:
        unreachable(s);
    }
  }

  /** Opens the breaker now, whatever the failure count (e.g. Redis never became ready at startup). */
  forceOpen(error: unknown): void {
    if (this.#state.kind !== 'closed') return;
    const now = this.#o.now();
    this.#state = { kind: 'open', downSince: now, openedAt: now, error };
    this.#o.onOpen(error);
  }

  failure(error: unknown): void {
    const s = this.#state;
    switch (s.kind) {
      case 'closed': {
        const failures = s.failures + 1;
        if (failures >= this.#o.failureThreshold) {
          const now = this.#o.now();
          this.#state = { kind: 'open', downSince: now, openedAt: now, error };
          this.#o.onOpen(error);
        } else {
          this.#state = { kind: 'closed', failures };
        }
        return;
      }
      case 'half-open':
        this.#state = { kind: 'open', downSince: s.downSince, openedAt: this.#o.now(), error };
        return;
      case 'open':
        return;
      default:
        unreachable(s);
    }
  }
}

function unreachable(x: never): never {
  throw new TypeError(`unknown breaker state ${JSON.stringify(x)}`);
}
