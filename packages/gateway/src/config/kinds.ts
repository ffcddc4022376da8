// The value kinds of the gateway's settings: how a flag or environment string is parsed, how a
// value given in code is checked, and how a value is shown in --help and the README.

import { isIP } from 'node:net';
import { checkPathPattern } from '@sluice/kit';
import { formatDuration, parseDuration } from '../duration.js';
import { splitList } from '../edge.js';
import { parseRedisUrl } from '../redis-client.js';

/** A parsed value, or why it is refused. */
export type Parsed<T> = { readonly value: T } | { readonly reason: string };

/** How one kind of value is read, checked and shown. */
export interface Kind<T> {
  /** The placeholder in --help and the README (`<duration>`); booleans have none. */
  readonly label: string;
  readonly boolean?: true;
  /** Repeatable flag, comma-separated environment variable. */
  readonly list?: true;
  /** Parses one flag or environment string. */
  parse(raw: string): Parsed<T>;
  /** Checks a value given in code. */
  check(value: unknown): Parsed<T>;
  /** The value as a user would type it. */
  show(value: T): string;
}

const ok = <T>(value: T): Parsed<T> => ({ value });
const refuse = (reason: string): Parsed<never> => ({ reason });

/** A kind whose values given in code are checked by `check`, and whose strings are `check`ed as parsed by `read`. */
function kind<T>(
  label: string,
  read: (raw: string) => Parsed<unknown>,
  check: (value: unknown) => Parsed<T>,
  show: (value: T) => string = String,
): Kind<T> {
  return {
    label,
    parse: (raw) => {
      const r = read(raw);
      return 'reason' in r ? r : check(r.value);
    },
    check,
    show,
  };
}

/** Checks a number `valid` accepts (else it "must be `what`") in `[min, max]`, shown by `show`. */
const ranged =
  (what: string, min: number, max: number, show: (n: number) => string = String, valid = Number.isInteger) =>
  (v: unknown): Parsed<number> =>
    typeof v !== 'number' || !valid(v)
      ? refuse(`must be ${what}`)
      : v < min || v > max
        ? refuse(`must be between ${show(min)} and ${show(max)}`)
        : ok(v);

/** An integer in `[min, max]`. */
export function int(min: number, max: number): Kind<number> {
  return kind(
    '<int>',
    (raw) => (/^-?\d+$/.test(raw.trim()) ? ok(Number(raw)) : refuse('must be an integer')),
    ranged('an integer', min, max),
  );
}

/** A number in `[min, max)`: a share. */
export function share(min: number, maxExclusive: number): Kind<number> {
  return kind(
    `<${min}..${maxExclusive}>`,
    (raw) => (/^\d*\.?\d+$/.test(raw.trim()) ? ok(Number(raw)) : refuse('must be a number')),
    (v) =>
      typeof v !== 'number' || !Number.isFinite(v)
        ? refuse('must be a number')
        : v < min || v >= maxExclusive
          ? refuse(`must be >= ${min} and < ${maxExclusive}`)
          : ok(v),
  );
}

/** Milliseconds in `[minMs, maxMs]`; strings like `500ms`, `30s`, `5m`, `1h` or a number of ms. */
export function duration(minMs: number, maxMs: number): Kind<number> {
  return kind(
    '<duration>',
    (raw) => {
      const ms = parseDuration(raw);
      return ms === undefined ? refuse('expected a duration like 500ms, 30s, 5m or a number of ms') : ok(ms);
    },
    ranged('an integer of milliseconds', minMs, maxMs, formatDuration),
    formatDuration,
  );
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** Bytes in `[min, max]`; strings like `64k`, `10m`, `1g` (binary units) or a number of bytes. */
export function bytes(min: number, max: number): Kind<number> {
  return kind(
    '<size>',
    (raw) => {
      const m = /^(\d+)\s*([kmg]?)i?b?$/i.exec(raw.trim());
      return m
        ? ok(Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toLowerCase()] ?? 1))
        : refuse('expected a size like 64k, 10m, 1g or a number of bytes');
    },
    ranged('an integer number of bytes', min, max, showBytes, Number.isSafeInteger),
    showBytes,
  );
}

/** `n` in the largest binary unit that divides it (`64k`, `1g`). */
function showBytes(n: number): string {
  const [unit, size] = Object.entries(SIZE_UNITS).findLast(([, s]) => n >= s && n % s === 0) ?? ['', 1];
  return `${n / size}${unit}`;
}

/** A boolean: `true/false`, `yes/no`, `on/off`, `1/0`; a flag alone means true, `--no-x` false. */
export const bool: Kind<boolean> = {
  label: '',
  boolean: true,
  parse(raw) {
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return ok(true);
    if (['0', 'false', 'no', 'off'].includes(v)) return ok(false);
    return refuse('expected true/false, yes/no, on/off or 1/0');
  },
  check: (v) => (typeof v === 'boolean' ? ok(v) : refuse('must be a boolean')),
  show: String,
};

/** A string accepted by `test` (which returns why not, or undefined). */
export function text(
  label: string,
  test: (value: string) => string | undefined = () => undefined,
): Kind<string> {
  return kind(
    label,
    ok,
    (v) => {
      if (typeof v !== 'string') return refuse('must be a string');
      const reason = test(v);
      return reason === undefined ? ok(v) : refuse(reason);
    },
    (v) => (v === '' ? "''" : v),
  );
}

/** One of `choices`. */
export function choice<T extends string>(choices: readonly T[]): Kind<T> {
  return kind(
    `<${choices.join('|')}>`,
    (raw) => ok(raw.trim().toLowerCase()),
    (v) =>
      typeof v === 'string' && (choices as readonly string[]).includes(v)
        ? ok(v as T)
        : refuse(`must be one of ${choices.join(', ')}`),
  );
}

/** `kind`, or nothing. */
export function maybe<T>(inner: Kind<T>): Kind<T | undefined> {
  return {
    ...inner,
    check: (v) => (v === undefined ? ok(undefined) : inner.check(v)),
    show: (v) => (v === undefined ? '(none)' : inner.show(v)),
  };
}

/** A list of `item`s: a repeatable flag, a comma-separated environment variable, an array in code. */
export function list<T>(label: string, item: Kind<T>): Kind<readonly T[]> {
  const check = (v: unknown): Parsed<readonly T[]> => {
    if (!Array.isArray(v)) return refuse('must be an array');
    const out: T[] = [];
    for (const entry of v) {
      const r = item.check(entry);
      if ('reason' in r) return refuse(`${JSON.stringify(entry)} ${r.reason}`);
      out.push(r.value);
    }
    return ok(Object.freeze(out));
  };
  const show = (v: readonly T[]): string =>
    v.length === 0 ? '(none)' : v.map((x) => item.show(x)).join(', ');
  return { ...kind(label, (raw) => ok(splitList(raw)), check, show), list: true };
}

/** A URL with one of `protocols`; with `originOnly`, no path, query or credentials (normalised to the origin). */
export function url(protocols: readonly string[], originOnly: boolean): Kind<string> {
  return text('<url>', (raw) => {
    if (!URL.canParse(raw))
      return `is not a URL (expected ${protocols.map((p) => `${p}//...`).join(' or ')})`;
    const u = new URL(raw);
    if (!protocols.includes(u.protocol))
      return `protocol ${u.protocol} is not one of ${protocols.join(', ')}`;
    if (originOnly && (u.pathname !== '/' || u.search || u.hash)) return 'must be an origin, without a path';
    if (originOnly && (u.username || u.password)) return 'must not carry credentials';
    return undefined;
  });
}

/** An origin URL, normalised (`http://h:8080/` -> `http://h:8080`). */
export function origin(protocols: readonly string[]): Kind<string> {
  const inner = url(protocols, true);
  const normalise = (r: Parsed<string>): Parsed<string> => ('reason' in r ? r : ok(new URL(r.value).origin));
  return { ...inner, parse: (raw) => normalise(inner.parse(raw)), check: (v) => normalise(inner.check(v)) };
}

/** A Redis URL (several comma-separated hosts are Redis Cluster seed nodes). */
export const redisUrl: Kind<string> = text('<url>', (raw) => {
  const parsed = parseRedisUrl(raw);
  return 'reason' in parsed ? parsed.reason : undefined;
});

/** An absolute path pattern (see the kit's `pathMatcher`). */
export const pathPattern: Kind<string> = text('<path>', checkPathPattern);

/** Where to listen: `host:port`, `[ipv6]:port` or `port`; `{ host, port }` in code. */
export interface ListenAddress {
  readonly host: string;
  /** 0 picks a free port (read it back from `gateway.address()`). */
  readonly port: number;
}

function parseListen(raw: string): Parsed<ListenAddress> {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(raw) ?? /^()()(\d+)$/.exec(raw);
  if (!match) return refuse('expected host:port, [ipv6]:port or port');
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return refuse('port must be 0..65535');
  const host = match[1] ?? match[2] ?? '';
  return ok({ host: host === '' ? '127.0.0.1' : host, port });
}

/** A listen address. */
export const listen: Kind<ListenAddress> = {
  label: '<host:port>',
  parse: parseListen,
  check(v) {
    if (typeof v === 'string') return parseListen(v);
    if (typeof v !== 'object' || v === null) return refuse('expected "host:port" or { host, port }');
    const { host, port } = v as { host?: unknown; port?: unknown };
    if (typeof host !== 'string' || host === '') return refuse('host must be a non-empty string');
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      return refuse('port must be an integer 0..65535');
    }
    return ok({ host, port });
  },
  show: (v) => `${v.host.includes(':') ? `[${v.host}]` : v.host}:${v.port}`,
};

/** `--trust-proxy`: `false`, a number of trusted hops (`true` is one), or trusted addresses and CIDRs. */
export type TrustProxySetting = false | { readonly hops: number } | { readonly addresses: readonly string[] };

function parseTrust(value: unknown): Parsed<TrustProxySetting> {
  if (value === false || value === 'false' || value === '0' || value === 'off' || value === 'no')
    return ok(false);
  if (value === true || value === 'true' || value === 'on' || value === 'yes') return ok({ hops: 1 });
  if (typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value.trim()))) {
    const hops = Number(value);
    return Number.isInteger(hops) && hops >= 0 && hops <= 32
      ? ok(hops === 0 ? false : { hops })
      : refuse('hops must be an integer 0..32');
  }
  const entries = Array.isArray(value) ? value : typeof value === 'string' ? splitList(value) : undefined;
  if (!entries || entries.length === 0) return refuse('expected false, a number of hops, or addresses/CIDRs');
  for (const entry of entries) {
    if (
      typeof entry !== 'string' ||
      !/^(?:[0-9.]+|[0-9a-fA-F:]+)(?:\/\d{1,3})?$/.test(entry) ||
      isIP(entry.split('/')[0] ?? '') === 0
    ) {
      return refuse(`${JSON.stringify(entry)} is not an IP address or CIDR`);
    }
    const bits = Number(entry.split('/')[1] ?? 0);
    if (bits > (isIP(entry.split('/')[0] ?? '') === 6 ? 128 : 32))
      return refuse(`${JSON.stringify(entry)} has too many prefix bits`);
  }
  return ok({ addresses: Object.freeze([...(entries as string[])]) });
}

/** The trusted proxies in front of the gateway. */
export const trustProxy: Kind<TrustProxySetting> = kind('<hops|cidrs>', ok, parseTrust, (v) =>
  v === false ? 'false' : 'hops' in v ? String(v.hops) : v.addresses.join(', '),
);

/** A listen address, or `off`. */
export const listenOrOff: Kind<ListenAddress | false | undefined> = {
  label: '<host:port|off>',
  parse: (raw) => (raw.trim() === 'off' ? ok(false) : listen.parse(raw)),
  check: (v) => (v === false || v === 'off' ? ok(false) : v === undefined ? ok(undefined) : listen.check(v)),
  show: (v) => (v === false ? 'off' : v === undefined ? '(derived)' : listen.show(v)),
};
