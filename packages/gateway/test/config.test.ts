import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configTable } from '../src/config/docs.ts';
import { envOf, flagOf, SETTING_KEYS } from '../src/config/settings.ts';
import {
  CVAT_PUBLIC_PATHS,
  configHelp,
  DEFAULT_CONFIG,
  formatIssue,
  isGatewayConfigError,
  loadConfig,
  redactConfig,
  resolveConfig,
} from '../src/index.ts';

describe('loadConfig', () => {
  it('gives the documented defaults with no flags and no environment', () => {
    const result = loadConfig([], {});
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.upstream).toBe('http://127.0.0.1:8080');
    expect(result.config.listen).toEqual({ host: '127.0.0.1', port: 8090 });
    expect(result.config.databaseUrl).toBeUndefined();
    expect(result.config.redisUrl).toBeUndefined();
    expect(result.config.dbBudget).toBeUndefined();
    expect(result.config.publicPaths).toEqual(CVAT_PUBLIC_PATHS);
    expect(result.config).toEqual(DEFAULT_CONFIG);
  });

  it('reads flags in both spellings, the environment, and lets flags win', () => {
    const result = loadConfig(
      ['--upstream', 'http://10.0.0.5:8080/', '--listen=0.0.0.0:9000', '--queue-timeout', '5s', '--reaper'],
      {
        SLUICE_UPSTREAM: 'http://ignored:1',
        DATABASE_URL: 'postgres://cvat@db:5432/cvat',
        REDIS_URL: 'redis://redis:6379',
        DJANGO_SECRET_KEY: 'not-a-real-secret-key-for-tests',
        SLUICE_DB_BUDGET: '40',
        SLUICE_PUBLIC_PATHS: '/api/lambda/functions, /healthcheck',
        SLUICE_QUEUE_MAX: '',
      },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const c = result.config;
    expect(c.upstream).toBe('http://10.0.0.5:8080');
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(c.queueTimeoutMs).toBe(5_000);
    expect(c.reaper).toBe(true);
    expect(c.databaseUrl).toBe('postgres://cvat@db:5432/cvat');
    expect(c.redisUrl).toBe('redis://redis:6379');
    expect(c.secretKey).toBe('not-a-real-secret-key-for-tests');
    expect(c.dbBudget).toBe(40);
    expect(c.queueMax).toBe(DEFAULT_CONFIG.queueMax);
    expect(c.publicPaths).toEqual([...CVAT_PUBLIC_PATHS, '/api/lambda/functions', '/healthcheck']);
  });

  it('repeats list flags and negates booleans with --no-', () => {
    const result = loadConfig(
      ['--public-path', '/a', '--public-path=/b', '--bulk-path', '/api/lambda/', '--no-preserve-host'],
      {},
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.publicPaths.slice(-2)).toEqual(['/a', '/b']);
    expect(result.config.bulkPaths).toEqual(['/api/lambda/']);
    expect(result.config.preserveHost).toBe(false);
  });

  it('lists every bad field at once with its source and reason, never echoing secrets', () => {
    const result = loadConfig(
      [
        '--upstream',
        'ftp://x',
        '--listen',
        'nonsense',
        '--queue-timeout',
        'soon',
        '--db-budget',
        '0',
        '--frobnicate',
        'stray',
        '--public-path',
        'relative/path',
        '--log-level',
      ],
      { DATABASE_URL: 'mysql://root:hunter2@db/x', SLUICE_TRUST_PROXY: 'maybe', DJANGO_SECRET_KEY: 'short' },
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const byField = new Map(result.issues.map((i) => [i.field, i]));
    expect(byField.get('upstream')?.reason).toMatch(/protocol ftp:/);
    expect(byField.get('upstream')?.source).toBe('--upstream');
    expect(byField.get('listen')?.reason).toMatch(/host:port/);
    expect(byField.get('queueTimeoutMs')?.reason).toMatch(/duration/);
    expect(byField.get('dbBudget')?.reason).toMatch(/between 1 and/);
    expect(byField.get('(flag)')?.source).toBe('--frobnicate');
    expect(byField.get('(argument)')?.value).toBe('stray');
    expect(byField.get('publicPaths')?.reason).toMatch(/start with/);
    expect(byField.get('logLevel')?.reason).toBe('needs a value');
    expect(byField.get('trustProxy')?.source).toBe('SLUICE_TRUST_PROXY');
    const db = byField.get('databaseUrl');
    expect(db?.source).toBe('DATABASE_URL');
    expect(db?.value).toBe('<redacted>');
    expect(result.issues.map(formatIssue).join('\n')).not.toContain('hunter2');
  });

  it('refuses a single-valued flag given twice and a proxy pool smaller than the budget', () => {
    const twice = loadConfig(['--listen', ':1', '--listen', ':2'], {});
    expect(twice.ok).toBe(false);
    if (!twice.ok) expect(twice.issues[0]?.reason).toBe('given more than once');
    const small = loadConfig(['--db-budget', '50', '--upstream-connections', '10'], {});
    expect(small.ok).toBe(false);
    if (!small.ok) expect(small.issues[0]?.field).toBe('upstreamConnections');
  });

  it('reads the Redis timeouts and the permit lease, and keeps the lease renewable', () => {
    const ok = loadConfig(['--cache-redis-timeout', '250ms', '--admission-redis-timeout=2s'], {
      SLUICE_PERMIT_LEASE: '10s',
    });
    expect(ok.ok).toBe(true);
    if (ok.ok) {
      expect(ok.config.cacheRedisTimeoutMs).toBe(250);
      expect(ok.config.admissionRedisTimeoutMs).toBe(2_000);
      expect(ok.config.permitLeaseMs).toBe(10_000);
    }
    const redis = ['--redis-url', 'redis://127.0.0.1:6379', '--cache-pepper', 'p'.repeat(16)];
    const tooSlow = loadConfig([...redis, '--admission-redis-timeout', '15s'], {});
    expect(tooSlow.ok).toBe(false);
    if (!tooSlow.ok) {
      expect(tooSlow.issues).toHaveLength(1);
      expect(tooSlow.issues[0]?.field).toBe('admissionRedisTimeoutMs');
      expect(tooSlow.issues[0]?.reason).toContain('at most a third of permitLeaseMs (30s)');
    }
    // a short lease alone is what the user got wrong, not the default timeout
    const tooShort = loadConfig([...redis, '--permit-lease', '2s'], {});
    expect(tooShort.ok).toBe(false);
    if (!tooShort.ok) {
      expect(tooShort.issues.map((i) => [i.field, i.source])).toEqual([['permitLeaseMs', '--permit-lease']]);
      expect(tooShort.issues[0]?.reason).toContain('at least 3 x admissionRedisTimeoutMs (1s)');
    }
    // without Redis neither is used: nothing to check
    expect(loadConfig(['--permit-lease', '2s'], {}).ok).toBe(true);
    const outOfRange = loadConfig(['--cache-redis-timeout', '5ms', '--permit-lease', '500ms'], {});
    expect(outOfRange.ok).toBe(false);
    if (!outOfRange.ok) {
      expect(outOfRange.issues.map((i) => i.field).sort()).toEqual(['cacheRedisTimeoutMs', 'permitLeaseMs']);
    }
  });

  it('needs a database for the reaper and a pepper or secret key with Redis', () => {
    const result = loadConfig(['--session-purge', '--redis-url', 'redis://127.0.0.1:6379'], {});
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issues.map((i) => i.field).sort()).toEqual(['cachePepper', 'sessionPurge']);
  });

  it('takes Redis Cluster seed nodes from a multi-host URL, redacting its password', () => {
    const pepper = ['--cache-pepper', 'p'.repeat(16)];
    const url = 'redis://user:hunter2@h1:7000,[::1]:7001,h3';
    const ok = loadConfig(['--redis-url', url, '--redis-cluster', ...pepper], {});
    expect(ok.ok).toBe(true);
    if (!ok.ok) return;
    expect(ok.config.redisCluster).toBe(true);
    expect(redactConfig(ok.config).redisUrl).toBe('redis://user:redacted@h1:7000,[::1]:7001,h3');
    const withDb = loadConfig(['--redis-url', 'redis://h1:7000/2', '--redis-cluster', ...pepper], {});
    expect(withDb.ok ? [] : withDb.issues.map((i) => i.reason)).toEqual([
      'Redis Cluster has only database 0: drop the /db path',
    ]);
    const badHost = loadConfig(['--redis-url', 'redis://h1:7000,,h2', '--redis-cluster', ...pepper], {});
    expect(badHost.ok ? [] : badHost.issues.map((i) => i.field)).toEqual(['redisUrl']);
    const plain = loadConfig(['--redis-url', url, ...pepper], {});
    expect(plain.ok ? [] : plain.issues.map((i) => `${i.field} ${i.value}`)).toEqual([
      'redisUrl redis://user:redacted@h1:7000,[::1]:7001,h3',
    ]);
  });

  it('documents every field in --help', () => {
    const help = configHelp();
    for (const key of SETTING_KEYS) {
      expect(help).toContain(flagOf(key));
      for (const env of envOf(key)) expect(help).toContain(env);
    }
  });

  it("keeps the README's settings table identical to the one the settings make", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf('<!-- settings:start -->');
    const end = readme.indexOf('<!-- settings:end -->');
    expect(start, 'README has the settings markers').toBeGreaterThan(-1);
    // Run `pnpm docs:settings` to regenerate the table after changing a setting.
    expect(readme.slice(start + '<!-- settings:start -->'.length, end).trim()).toBe(configTable());
  });

  it('ignores a leading --, as `pnpm start -- --flag` passes it, and suggests the flag meant', () => {
    const passed = loadConfig(['--', '--db-budget', '40'], {});
    expect(passed.ok && passed.config.dbBudget).toBe(40);
    const typo = loadConfig(['--db-budgte', '40'], {});
    expect(typo.ok ? '' : typo.issues[0]?.reason).toContain('did you mean --db-budget?');
  });
});

describe('resolveConfig', () => {
  it('completes a partial configuration and accepts listen as a string', () => {
    const config = resolveConfig({ listen: '127.0.0.1:0', dbBudget: 5 });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(config.dbBudget).toBe(5);
    expect(config.queueTimeoutMs).toBe(DEFAULT_CONFIG.queueTimeoutMs);
  });

  it('throws one GatewayConfigError naming every bad option', () => {
    let caught: unknown;
    try {
      resolveConfig({ queueMax: -1, upstream: 'not a url', bogus: 1 } as never);
    } catch (error) {
      caught = error;
    }
    expect(isGatewayConfigError(caught)).toBe(true);
    if (!isGatewayConfigError(caught)) return;
    expect(caught.code).toBe('E_CONFIG_INVALID');
    expect(caught.issues.map((i) => i.field).sort()).toEqual(['bogus', 'queueMax', 'upstream']);
    expect(caught.message).toContain('queueMax');
  });

  it('redacts secrets and URL passwords', () => {
    const config = resolveConfig({
      databaseUrl: 'postgres://cvat:hunter2@db/cvat',
      secretKey: 'django-insecure-key',
    });
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain('hunter2');
    expect(shown).not.toContain('django-insecure-key');
    expect(shown).toContain('postgres://cvat:redacted@db/cvat');
  });
});

describe('what an issue may show', () => {
  it("never a URL's password, even in a refused non-secret field", () => {
    const result = loadConfig(['--upstream', 'http://admin:hunter2@cvat:8080'], {});
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.issues[0]?.field).toBe('upstream');
    expect(result.issues.map(formatIssue).join('\n')).not.toContain('hunter2');
  });
});
