import { createHmac, randomBytes } from 'node:crypto';
import {
  checkBoolean,
  checkFunction,
  checkInteger,
  checkObject,
  checkString,
  optional,
  show,
} from '@sluice/kit';
import { validatorFromEnvironment } from './environment.js';
import { ConfigurationError } from './errors.js';
import { isValidator, type Validator } from './identity.js';
import { checkRedisSource, type RedisClient, type RedisClusterConfig } from './redis-client.js';

/** L1 (in-process LRU of valid entries) settings. */
export interface L1Options {
  /** Most valid entries kept. @default 10000 */
  readonly max?: number | undefined;
  /**
   * Longest an entry lives in L1, ms: bounds staleness on this instance even if an invalidation
   * message is lost.
   * @default 5000
   */
  readonly ttlMs?: number | undefined;
}

/** Refused credentials: kept apart from valid ones, so a flood of them cannot evict a valid one. */
export interface NegativeOptions {
  /** Most refused credentials kept in L1 (beyond it they push out each other only). @default 1000 */
  readonly max?: number | undefined;
  /** Lifetime of a refused entry (L1 and L2), ms. @default 5000 */
  readonly ttlMs?: number | undefined;
}

/** Cross-instance single-flight lock settings (a short Redis `SET NX PX`). */
export interface LockOptions {
  /** Lock lifetime, ms (also bounds how long a crashed holder blocks others). @default 2000 */
  readonly ttlMs?: number | undefined;
  /** How long an instance that did not get the lock polls L2 before validating itself, ms. @default 1000 */
  readonly waitMs?: number | undefined;
  /** Interval between L2 polls while waiting, ms. @default 20 */
  readonly pollMs?: number | undefined;
}

/** L2 (Redis) settings. */
export interface L2Options {
  /**
   * A `redis://` / `rediss://` URL (the cache builds and owns the client), an ioredis `Redis` or
   * `Cluster` you own (the cache never quits it; give it `enableOfflineQueue: false`), or a cluster
   * description.
   * @default process.env.REDIS_URL
   */
  readonly redis?: string | RedisClient | RedisClusterConfig | undefined;
  /** Prefix of every key and of the invalidation channel. @default 'sluice:session:' */
  readonly prefix?: string | undefined;
  /** Per-command timeout, ms. @default 100 */
  readonly timeoutMs?: number | undefined;
  /** Consecutive failed commands that mark L2 down (skipped until a probe answers). @default 3 */
  readonly failureThreshold?: number | undefined;
  /** While L2 is down, time between PING probes, ms; also how long a first connection may take. @default 2000 */
  readonly cooldownMs?: number | undefined;
  /** Cross-instance single-flight: `true` for the defaults, or settings; `false` for none. @default false */
  readonly lock?: boolean | LockOptions | undefined;
  /** Invalidation bus over pub/sub (a second connection). @default true */
  readonly invalidation?: boolean | undefined;
}

/** Options of `createSessionCache`. */
export interface SessionCacheOptions {
  /**
   * Decides whether a credential is valid. Default: built from the environment (see
   * {@link validatorFromEnvironment}), owned and closed by the cache.
   */
  readonly validator?: Validator | undefined;
  /**
   * Server-side secret for the HMAC cache keys (>= 16 bytes). Instances sharing Redis must share it.
   * @default process.env.SLUICE_CACHE_PEPPER, else derived from DJANGO_SECRET_KEY, else random per process (only allowed without L2)
   */
  readonly pepper?: string | Uint8Array | undefined;
  /** L1 settings, or `false` for no L1 (every lookup goes to L2). @default { max: 10000, ttlMs: 5000 } */
  readonly l1?: L1Options | false | undefined;
  /** Refused credentials (negative entries). @default { max: 1000, ttlMs: 5000 } */
  readonly negative?: NegativeOptions | undefined;
  /** L2 settings, or `false` for no Redis. @default { redis: process.env.REDIS_URL } when set, else false */
  readonly l2?: L2Options | false | undefined;
  /** Lifetime of a valid entry, ms (never beyond the session's `expire_date`). @default 60000 */
  readonly ttlMs?: number | undefined;
  /** Longest a validation may take before it counts as an error (503, not cached), ms. @default 5000 */
  readonly validatorTimeoutMs?: number | undefined;
  /** Most distinct credentials validated at once; beyond it lookups fail with `E_VALIDATOR_BUSY`. @default 1000 */
  readonly maxPendingValidations?: number | undefined;
  /** Clock for entry expiry and L2's health, epoch ms. @default Date.now */
  readonly now?: (() => number) | undefined;
  /** The environment defaults are read from. @default process.env */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

/** The options with every default resolved and every value checked. @internal */
export type ResolvedOptions = ReturnType<typeof resolveOptions>;

const MAX_MS = 2 ** 31 - 1;
const ms =
  (name: string, fallback: number, max = MAX_MS) =>
  (v: unknown) =>
    optional(v, fallback, (x) => checkInteger(name, x, 1, max));

/**
 * Checks `options` and fills in the defaults (from `options.env` where the docs say so). The
 * validator comes last: built from the environment, it owns a pool, and nothing may throw after.
 *
 * @throws {TypeError | RangeError} an option has the wrong type or range
 * @throws {ConfigurationError} no validator source, or L2 without a pepper
 */
export function resolveOptions(options: SessionCacheOptions) {
  checkObject('options', options);
  const env = options.env ?? process.env;
  checkObject('options.env', env);
  const now = optional(options.now, Date.now, (v) => checkFunction<() => number>('options.now', v));
  const negative = options.negative ?? {};
  checkObject('options.negative', negative);
  const negativeMax = optional(negative.max, 1_000, (v) => checkInteger('options.negative.max', v, 1));
  const l1 = options.l1 === false ? undefined : (options.l1 ?? {});
  if (l1 !== undefined) checkObject('options.l1', l1);
  const resolved = {
    now,
    l1: l1 && {
      max: optional(l1.max, 10_000, (v) => checkInteger('options.l1.max', v, 1)),
      ttlMs: ms('options.l1.ttlMs', 5_000)(l1.ttlMs),
      negativeMax,
    },
    ttlMs: ms('options.ttlMs', 60_000)(options.ttlMs),
    negativeTtlMs: ms('options.negative.ttlMs', 5_000)(negative.ttlMs),
    validatorTimeoutMs: ms('options.validatorTimeoutMs', 5_000)(options.validatorTimeoutMs),
    maxPendingValidations: optional(options.maxPendingValidations, 1_000, (v) =>
      checkInteger('options.maxPendingValidations', v, 1),
    ),
    l2: resolveL2(options.l2, env),
  };
  const pepper = resolvePepper(options.pepper, env, resolved.l2 !== undefined);
  if (options.validator !== undefined) {
    if (!isValidator(options.validator)) {
      throw new TypeError(
        `options.validator should be a validator ({ kinds, validate(credential, { signal }) }), got ${show(options.validator)}`,
      );
    }
    return { ...resolved, pepper, validator: options.validator, ownsValidator: false };
  }
  const validator = validatorFromEnvironment(env);
  if (!validator) {
    throw new ConfigurationError(
      'the session cache has no validator: pass options.validator, or set DATABASE_URL (validate against ' +
        "Django's database) or SLUICE_INTROSPECTION_URL (validate through an endpoint such as /api/users/self)",
    );
  }
  return { ...resolved, pepper, validator, ownsValidator: true };
}

function resolveL2(option: L2Options | false | undefined, env: Readonly<Record<string, string | undefined>>) {
  if (option === false || (option === undefined && !env.REDIS_URL)) return undefined;
  const o = option ?? {};
  checkObject('options.l2', o);
  const prefix = optional(o.prefix, 'sluice:session:', (v) => checkString('options.l2.prefix', v, true));
  if (prefix.length > 128)
    throw new RangeError(`options.l2.prefix should be at most 128 characters, got ${show(prefix)}`);
  const l = o.lock === undefined || o.lock === false ? undefined : o.lock === true ? {} : o.lock;
  if (l !== undefined) checkObject('options.l2.lock', l);
  return {
    source: checkRedisSource(o.redis ?? env.REDIS_URL),
    prefix,
    timeoutMs: ms('options.l2.timeoutMs', 100, 60_000)(o.timeoutMs),
    failureThreshold: optional(o.failureThreshold, 3, (v) =>
      checkInteger('options.l2.failureThreshold', v, 1),
    ),
    cooldownMs: ms('options.l2.cooldownMs', 2_000)(o.cooldownMs),
    invalidation: optional(o.invalidation, true, (v) => checkBoolean('options.l2.invalidation', v)),
    lock: l && {
      ttlMs: ms('options.l2.lock.ttlMs', 2_000)(l.ttlMs),
      waitMs: ms('options.l2.lock.waitMs', 1_000)(l.waitMs),
      pollMs: ms('options.l2.lock.pollMs', 20)(l.pollMs),
    },
  };
}

function resolvePepper(
  pepper: unknown,
  env: Readonly<Record<string, string | undefined>>,
  shared: boolean,
): Buffer {
  if (pepper !== undefined) {
    if (typeof pepper !== 'string' && !(pepper instanceof Uint8Array)) {
      throw new TypeError(`options.pepper should be a string or bytes, got ${show(pepper)}`);
    }
    const bytes = Buffer.from(pepper);
    if (bytes.length < 16)
      throw new RangeError(`options.pepper should be at least 16 bytes, got ${bytes.length}`);
    return bytes;
  }
  const fromEnv = env.SLUICE_CACHE_PEPPER;
  if (fromEnv) {
    const bytes = Buffer.from(fromEnv);
    if (bytes.length < 16) {
      throw new ConfigurationError(`SLUICE_CACHE_PEPPER should be at least 16 bytes, got ${bytes.length}`);
    }
    return bytes;
  }
  // A separate derivation, so the pepper is never the Django secret itself.
  if (env.DJANGO_SECRET_KEY)
    return createHmac('sha256', env.DJANGO_SECRET_KEY).update('sluice.session-cache.pepper').digest();
  if (shared) {
    throw new ConfigurationError(
      'the session cache shares Redis between instances and needs a pepper for its HMAC keys: pass options.pepper ' +
        'or set SLUICE_CACHE_PEPPER (at least 16 bytes, the same on every instance)',
    );
  }
  return randomBytes(32);
}
