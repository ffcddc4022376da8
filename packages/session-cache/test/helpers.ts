import type { Credential } from '@sluice/django';
import type { CredentialKind, Identity, Queryable, Validation, Validator } from '../src/index.ts';

/** A deferred promise: tests hold validations open and release them when they choose. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export function identityFor(
  userId: number,
  kind: CredentialKind = 'session',
  expiresAt: number | null = null,
): Identity {
  return {
    userId,
    username: `user${userId}`,
    isActive: true,
    isStaff: false,
    isSuperuser: false,
    credentialKind: kind,
    expiresAt,
  };
}

/** The secret part of a credential, to look for in places it must never appear. */
export function secretOf(c: Credential): string {
  switch (c.kind) {
    case 'session':
      return c.sessionKey;
    case 'token':
    case 'bearer':
      return c.token;
    case 'basic':
      return c.password;
  }
}

/**
 * A validator backed by a table in memory (the pure-cache tests exercise the cache, not Django;
 * the database and introspection validators have their own suites against real services).
 * Counts calls; `gate` holds every call until released; `fail` makes calls throw.
 */
export class TableValidator implements Validator {
  readonly kinds: readonly CredentialKind[] = ['session', 'token', 'bearer', 'basic'];
  readonly valid = new Map<string, Identity>();
  calls = 0;
  gate: Promise<unknown> | undefined;
  fail: Error | undefined;
  readonly seen: string[] = [];

  add(secret: string, identity: Identity): this {
    this.valid.set(secret, identity);
    return this;
  }

  async validate(credential: Credential, { signal }: { signal: AbortSignal }): Promise<Validation> {
    this.calls += 1;
    this.seen.push(credential.kind);
    if (this.gate) {
      await Promise.race([
        this.gate,
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
        ),
      ]);
    }
    if (this.fail) throw this.fail;
    const identity = this.valid.get(secretOf(credential));
    return identity ? { valid: true, identity } : { valid: false, reason: 'not-found' };
  }
}

/** A 40-character lowercase session key of the kind Django generates. */
export function sessionKey(seed: number): string {
  return `k${seed.toString(36)}`.padEnd(32, 'x').concat('abcdefgh').slice(0, 32);
}

/** A 40-hex DRF token. */
export function drfToken(seed: number): string {
  return seed.toString(16).padStart(40, 'a');
}

/**
 * A {@link Queryable} over `pool` that counts the queries it passes on (`count`) and, of those,
 * the ones the pool ran (`ran`: answered with rows, not refused before reaching the server).
 */
export function countingQueryable(
  pool: Queryable,
): Queryable & { readonly count: number; readonly ran: number } {
  let count = 0;
  let ran = 0;
  return {
    get count() {
      return count;
    },
    get ran() {
      return ran;
    },
    query: async (text, values, options) => {
      count += 1;
      const result = await pool.query(text, values, options);
      ran += 1;
      return result;
    },
  };
}
