// Reading the configuration: from flags and the environment (the CLI), or from an object (code).
import { parseArgs } from 'node:util';
import { formatDuration } from '../duration.js';
import { type ConfigIssue, GatewayConfigError } from '../errors.js';
import { parseRedisUrl, redactRedisUrl } from '../redis-client.js';
import {
  DEFAULT_CONFIG,
  envOf,
  flagOf,
  type GatewayConfig,
  type GatewayConfigInput,
  SETTING_KEYS,
  SETTINGS,
  type SettingKey,
  spec,
} from './settings.js';

/** The result of {@link loadConfig}: the configuration, or every bad field with its reason. */
export type LoadConfigResult =
  | { readonly ok: true; readonly config: GatewayConfig }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

/** A value as an issue may show it: secrets never, and no URL's password. */
const shown = (key: SettingKey, raw: string): string =>
  spec(key).secret ? '<redacted>' : raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:)[^@/]*@/i, '$1redacted@');
const byFlag = new Map(SETTING_KEYS.map((k) => [flagOf(k).slice(2), k]));

/** One bad field: {@link ConfigIssue} in argument order. */
function issue(field: string, source: string, value: string, reason: string): ConfigIssue {
  return { field, source, value, reason };
}

/** The closest known flag to a misspelt one, if it is close enough to be what was meant. */
function didYouMean(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const flag of [...byFlag.keys(), 'help', 'version', 'print-config']) {
    const d = distance(name, flag);
    if (d < bestDistance) {
      best = flag;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        (row[j] ?? 0) + 1,
        (next[j - 1] ?? 0) + 1,
        (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

/** Reads the flags into raw strings per setting (lists keep every value), collecting bad flags. */
function scanFlags(argv: readonly string[], issues: ConfigIssue[], into: Map<SettingKey, string[]>): void {
  const options = Object.fromEntries(
    SETTING_KEYS.map((k) => [
      flagOf(k).slice(2),
      { type: spec(k).kind.boolean ? 'boolean' : 'string' } as const,
    ]),
  );
  const { tokens } = parseArgs({
    args: [...argv],
    options,
    strict: false,
    allowPositionals: true,
    allowNegative: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      issues.push(issue('(argument)', 'argv', token.value, 'unexpected positional argument'));
      continue;
    }
    const key = byFlag.get(token.name);
    const negated = token.rawName.startsWith('--no-');
    if (key === undefined || (negated && !spec(key).kind.boolean)) {
      const hint = didYouMean(token.name);
      const reason = `unknown flag${hint ? ` (did you mean --${hint}?)` : ''}; see --help`;
      issues.push(issue('(flag)', token.rawName, token.rawName, reason));
      continue;
    }
    const boolean = spec(key).kind.boolean;
    const raw = boolean ? (negated ? 'false' : (token.value ?? 'true')) : token.value;
    if (raw === undefined || (!boolean && !token.inlineValue && raw.startsWith('--'))) {
      issues.push(issue(key, token.rawName, '', 'needs a value'));
      // The flag took the next argument as its value: read that argument again as a flag.
      if (raw !== undefined) scanFlags(argv.slice(token.index + 1), issues, into);
      return;
    }
    into.set(key, [...(into.get(key) ?? []), raw]);
  }
}

/**
 * Reads the configuration from command-line flags and the environment (flags win, then the
 * environment, then the defaults), validating every field. Never throws: returns every bad field
 * at once. Flags take `--name value` or `--name=value`; booleans `--name`, `--name=false` or
 * `--no-name`; list flags repeat and their environment variables are comma-separated; a leading
 * `--` is ignored. Empty environment variables count as unset.
 *
 * @example
 * ```ts
 * const result = loadConfig(process.argv.slice(2), process.env);
 * if (!result.ok) for (const i of result.issues) console.error(formatIssue(i));
 * ```
 */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): LoadConfigResult {
  const issues: ConfigIssue[] = [];
  const fromFlags = new Map<SettingKey, string[]>();
  // `pnpm start -- --flag` passes the `--` on: it ends nothing here.
  scanFlags(argv[0] === '--' ? argv.slice(1) : argv, issues, fromFlags);
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  const sources = new Map<SettingKey, string>();
  for (const key of SETTING_KEYS) {
    const s = spec(key);
    let raw: string | undefined;
    let source: string | undefined;
    const flagged = fromFlags.get(key);
    if (flagged !== undefined) {
      source = flagOf(key);
      if (!s.kind.list && flagged.length > 1) {
        issues.push(issue(key, source, flagged.map((r) => shown(key, r)).join(' '), 'given more than once'));
        continue;
      }
      raw = flagged.join(',');
    } else {
      source = envOf(key).find((name) => env[name] !== undefined && env[name] !== '');
      raw = source === undefined ? undefined : env[source];
    }
    if (raw === undefined || source === undefined) continue;
    sources.set(key, source);
    const parsed = s.kind.parse(raw);
    if ('reason' in parsed) {
      issues.push(issue(key, source, shown(key, raw), parsed.reason));
      continue;
    }
    config[key] = s.extendsDefault
      ? Object.freeze([...(s.default as readonly unknown[]), ...(parsed.value as readonly unknown[])])
      : parsed.value;
  }
  if (issues.length === 0) crossCheck(config as GatewayConfig, issues, (k) => sources.get(k) ?? 'default');
  return issues.length === 0
    ? { ok: true, config: Object.freeze(config) as GatewayConfig }
    : { ok: false, issues };
}

/**
 * Completes and validates a configuration given in code (every field optional; a list given in
 * code replaces the default).
 *
 * @throws {GatewayConfigError} listing every bad field
 * @example
 * ```ts
 * const config = resolveConfig({ upstream: 'http://127.0.0.1:8080', listen: '127.0.0.1:0' });
 * ```
 */
export function resolveConfig(input: GatewayConfigInput = {}): GatewayConfig {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`gateway options should be an object, got ${input === null ? 'null' : typeof input}`);
  }
  const issues: ConfigIssue[] = [];
  for (const key of Object.keys(input)) {
    if (!Object.hasOwn(SETTINGS, key)) issues.push(issue(key, 'options', '', 'unknown option'));
  }
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const key of SETTING_KEYS) {
    const value = (input as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const checked = spec(key).kind.check(value);
    if ('reason' in checked) {
      issues.push(issue(key, 'options', shown(key, safeString(value)), checked.reason));
      continue;
    }
    config[key] = checked.value;
  }
  if (issues.length === 0) crossCheck(config as GatewayConfig, issues, () => 'options');
  if (issues.length > 0) throw new GatewayConfigError(issues);
  return Object.freeze(config) as GatewayConfig;
}

function safeString(value: unknown): string {
  try {
    return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

/** The rules between fields. Each issue names the field the user set. */
function crossCheck(c: GatewayConfig, issues: ConfigIssue[], sourceOf: (key: SettingKey) => string): void {
  const add = (field: SettingKey, value: string, reason: string): void => {
    issues.push(issue(field, sourceOf(field), value, reason));
  };
  // A lease is renewed every third of its length: a renewal that may take longer could let it lapse.
  if (c.redisUrl !== undefined && c.admissionRedisTimeoutMs * 3 > c.permitLeaseMs) {
    if (sourceOf('admissionRedisTimeoutMs') !== 'default' && sourceOf('permitLeaseMs') === 'default') {
      add(
        'admissionRedisTimeoutMs',
        formatDuration(c.admissionRedisTimeoutMs),
        `must be at most a third of permitLeaseMs (${formatDuration(c.permitLeaseMs)}): leases are renewed every third of their length, and a renewal may take this long`,
      );
    } else {
      add(
        'permitLeaseMs',
        formatDuration(c.permitLeaseMs),
        `must be at least 3 x admissionRedisTimeoutMs (${formatDuration(c.admissionRedisTimeoutMs)}): leases are renewed every third of their length, and a renewal may take that long`,
      );
    }
  }
  if (c.dbBudget !== undefined && c.upstreamConnections < c.dbBudget) {
    add(
      'upstreamConnections',
      String(c.upstreamConnections),
      `must be at least dbBudget (${c.dbBudget}), or admitted requests would queue inside the proxy`,
    );
  }
  if (c.redisUrl !== undefined && c.cachePepper === undefined && c.secretKey === undefined) {
    add(
      'cachePepper',
      '',
      'with Redis, every gateway must derive the same cache keys: give --cache-pepper or --secret-key',
    );
  }
  if (c.redisUrl === undefined && c.redisCluster) {
    add(
      'redisCluster',
      'true',
      'needs the seed nodes in --redis-url / REDIS_URL (redis://h1:port,h2:port,...)',
    );
  }
  if (c.redisUrl !== undefined) {
    const parsed = parseRedisUrl(c.redisUrl);
    const target = 'value' in parsed ? parsed.value : undefined;
    const problem = !target
      ? undefined
      : c.redisCluster
        ? target.db !== 0
          ? 'Redis Cluster has only database 0: drop the /db path'
          : target.hasQuery
            ? 'query parameters are not supported with --redis-cluster'
            : undefined
        : target.nodes.length > 1
          ? 'lists several hosts: they are Redis Cluster seed nodes, add --redis-cluster (SLUICE_REDIS_CLUSTER=true)'
          : undefined;
    if (problem !== undefined) add('redisUrl', redactRedisUrl(c.redisUrl), problem);
  }
  // The reaper is on by default and simply idle without a database; the purge is asked for.
  if (c.sessionPurge && c.databaseUrl === undefined) {
    add('sessionPurge', 'true', 'needs a database URL (--database-url / DATABASE_URL)');
  }
  if (c.shedStatus !== 429 && c.shedStatus !== 503)
    add('shedStatus', String(c.shedStatus), 'must be 429 or 503');
}

/** A URL without its password (`redacted` in its place). */
export function redactUrl(value: string): string {
  if (!URL.canParse(value)) return '<redacted>';
  const u = new URL(value);
  if (u.password) u.password = 'redacted';
  return u.toString();
}

/** The configuration with secrets replaced by `'<redacted>'` and URLs stripped of passwords. */
export function redactConfig(config: GatewayConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  for (const key of SETTING_KEYS) {
    const value = out[key];
    if (!spec(key).secret || value === undefined) continue;
    out[key] =
      key === 'redisUrl'
        ? redactRedisUrl(String(value))
        : key === 'databaseUrl' || key === 'pgbouncerAdminUrl'
          ? redactUrl(String(value))
          : '<redacted>';
  }
  return out;
}
