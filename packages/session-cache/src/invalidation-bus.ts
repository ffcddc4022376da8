import { quitClient, type RedisClient } from './redis-client.js';

/** Options of {@link InvalidationBus}. */
export interface InvalidationBusOptions {
  /** A dedicated connection (subscriber mode takes a connection over); the bus owns and quits it. */
  readonly subscriber: RedisClient;
  readonly channel: string;
  /** This instance's id: its own messages are ignored on receipt. */
  readonly instanceId: string;
  /** Called with what another instance published (see {@link InvalidationBus.message}). */
  readonly onMessage: (body: string) => void;
  /**
   * Called when the subscriber is subscribed again after a disconnect: messages sent meanwhile
   * may be lost, so the cache drops its L1.
   */
  readonly onResubscribed: () => void;
  readonly onError: (error: unknown) => void;
  readonly timeoutMs: number;
}

/**
 * Invalidation over Redis pub/sub: `<instanceId> <body>`, where the body names what to drop (an
 * HMAC cache key, or a user id), never a credential. An instance ignores its own messages. The
 * subscriber resubscribes on every `ready` (after each reconnect), whatever the client's
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
    if (space <= 0 || message.slice(0, space) === this.#o.instanceId) return;
    const body = message.slice(space + 1);
    if (body.length > 0 && body.length <= 256) this.#o.onMessage(body);
  };
  readonly #onClose = (): void => {
    this.#subscribed = false;
  };

  constructor(options: InvalidationBusOptions) {
    this.#o = options;
    const s = options.subscriber;
    s.on('ready', this.#onReady);
    s.on('message', this.#onMessage);
    s.on('close', this.#onClose);
    s.on('error', options.onError);
    if (s.status === 'ready') void this.#subscribe();
    else if (s.status === 'wait') s.connect().catch(() => undefined);
  }

  /** True while the subscriber is connected and subscribed. */
  get subscribed(): boolean {
    return this.#subscribed;
  }

  /** The message `publish` should send for `body`. */
  message(body: string): string {
    return `${this.#o.instanceId} ${body}`;
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
    s.off('error', this.#o.onError);
  }
}
