import type { RedisClient } from './redis-tier.js';
import { quitClient } from './redis-tier.js';

/** Options of {@link InvalidationBus}. */
export interface InvalidationBusOptions {
  /** A dedicated connection (subscriber mode takes a connection over); the bus owns and quits it. */
  readonly subscriber: RedisClient;
  readonly channel: string;
  /** This instance's id: its own messages are ignored on receipt. */
  readonly instanceId: string;
  /** Called with a cache key another instance invalidated. */
  readonly onInvalidate: (key: string) => void;
  /**
   * Called when the subscriber is subscribed again after a disconnect: messages sent meanwhile
   * may be lost, so the cache drops its L1.
   */
  readonly onResubscribed: () => void;
  readonly onError: (error: unknown) => void;
  readonly timeoutMs: number;
}

/**
 * Invalidation over Redis pub/sub. Messages carry the HMAC cache key only, never a credential.
 * The subscriber resubscribes on every `ready` (after each reconnect), whatever the client's
 * `autoResubscribe` says.
 */
export class InvalidationBus {
  readonly #o: InvalidationBusOptions;
  #everSubscribed = false;
  #subscribed = false;
  #closed = false;
  readonly #onReady = (): void => {
    void this.#subscribe();
  };
  readonly #onMessage = (channel: string, message: string): void => {
    if (channel !== this.#o.channel) return;
    const space = message.indexOf(' ');
    if (space <= 0) return;
    if (message.slice(0, space) === this.#o.instanceId) return;
    const key = message.slice(space + 1);
    if (key.length > 0 && key.length <= 128) this.#o.onInvalidate(key);
  };
  readonly #onClose = (): void => {
    this.#subscribed = false;
  };
  readonly #onError = (error: unknown): void => this.#o.onError(error);

  constructor(options: InvalidationBusOptions) {
    this.#o = options;
    const s = options.subscriber;
    s.on('ready', this.#onReady);
    s.on('message', this.#onMessage);
    s.on('close', this.#onClose);
    s.on('error', this.#onError);
    if (s.status === 'ready') void this.#subscribe();
    else if (s.status === 'wait') s.connect().catch(() => undefined);
  }

  /** True while the subscriber is connected and subscribed. */
  get subscribed(): boolean {
    return this.#subscribed;
  }

  /** The message `publish` should send for `key`. */
  message(key: string): string {
    return `${this.#o.instanceId} ${key}`;
  }

  async #subscribe(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#o.subscriber.subscribe(this.#o.channel);
    } catch (error) {
      this.#o.onError(error);
      return;
    }
    if (this.#closed) return;
    this.#subscribed = true;
    if (this.#everSubscribed) this.#o.onResubscribed();
    this.#everSubscribed = true;
  }

  /** Unsubscribes and quits the subscriber connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#o.subscriber;
    s.off('ready', this.#onReady);
    s.off('message', this.#onMessage);
    s.off('close', this.#onClose);
    await quitClient(s, this.#o.timeoutMs);
    s.off('error', this.#onError);
  }
}
