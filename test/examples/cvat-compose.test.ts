import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { envOf, SETTING_KEYS } from '../../packages/gateway/src/config/settings.ts';
import { loadConfig } from '../../packages/gateway/src/index.ts';

// Docker is not available here: this checks the override's YAML and its settings instead of
// starting CVAT. PyYAML (Debian's python3-yaml, a dependency of the Django fixture's packages)
// parses it exactly as YAML; the gateway's own loadConfig validates every environment value.
const root = fileURLToPath(new URL('../../', import.meta.url));
const file = `${root}examples/cvat-compose/docker-compose.sluice.yml`;

interface ComposeService {
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  labels?: string[];
  depends_on?: string[];
  networks?: string[];
  healthcheck?: { test: string[] };
}

function parseCompose(): { services: Record<string, ComposeService> } {
  const r = spawnSync(
    '/usr/bin/python3',
    ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`PyYAML could not parse ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { services: Record<string, ComposeService> };
}

/** Compose's interpolation of `${NAME}`, `${NAME:-default}` and `${NAME:?message}` from `given`. */
function interpolate(value: string, given: Readonly<Record<string, string>> = {}): string {
  return value.replace(
    /\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g,
    (_m, name: string, op?: string, arg?: string) => {
      const set = given[name];
      if (set !== undefined && set !== '') return set;
      if (op === '?') throw new Error(`required variable: ${arg}`);
      return op === '-' ? (arg ?? '') : '';
    },
  );
}

const labels = (s: ComposeService): Map<string, string> =>
  new Map((s.labels ?? []).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

describe('examples/cvat-compose/docker-compose.sluice.yml', () => {
  const compose = parseCompose();
  const gateway = compose.services.sluice_gateway as ComposeService;

  it('adds sluice_gateway on CVAT network, after cvat_server, cvat_db and cvat_redis_inmem', () => {
    expect(gateway).toBeDefined();
    expect(gateway.networks).toEqual(['cvat']);
    expect(gateway.depends_on).toEqual(
      expect.arrayContaining(['cvat_server', 'cvat_db', 'cvat_redis_inmem']),
    );
    expect(gateway.build?.dockerfile).toBe('examples/cvat-compose/Dockerfile');
    expect(existsSync(`${root}${gateway.build?.dockerfile}`)).toBe(true);
    expect(() => interpolate(gateway.build?.context ?? '')).toThrow(/SLUICE_DIR/);
  });

  it('sets only variables the gateway reads, and they form a valid configuration', () => {
    const environment = Object.entries(gateway.environment ?? {});
    // The one variable the operator must set: Compose refuses to start without it.
    expect(() => Object.fromEntries(environment.map(([k, v]) => [k, interpolate(String(v))]))).toThrow(
      /SLUICE_CACHE_PEPPER/,
    );
    const given = { SLUICE_CACHE_PEPPER: 'a'.repeat(64) };
    const env = Object.fromEntries(environment.map(([k, v]) => [k, interpolate(String(v), given)]));
    const known = new Set(SETTING_KEYS.flatMap((k) => envOf(k)));
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    const result = loadConfig([], env);
    expect(result.ok ? [] : result.issues).toEqual([]);
    if (!result.ok) return;
    // CVAT's alias: Django refuses a Host with an underscore.
    expect(result.config.upstream).toBe('http://cvat-server:8080');
    expect(result.config.databaseUrl).toBe('postgres://root@cvat_db:5432/cvat');
    expect(result.config.redisUrl).toMatch(/^redis:\/\/cvat_redis_inmem:6379\//);
    expect(result.config.listen).toEqual({ host: '0.0.0.0', port: 8090 });
    expect(result.config.trustProxy).toEqual({ hops: 1 });
    expect(result.config.dbBudget).toBeUndefined();
    // CVAT's profile is the default: its application names, the reaper on.
    expect(result.config.reaper).toBe(true);
    expect(result.config.upstreamApplicationName).toBe('cvat:server');
    expect(result.config.workerApplicationNames).toEqual(['cvat:worker:*']);
  });

  it('routes the API paths to the gateway through traefik, on the port it listens on', () => {
    const l = labels(gateway);
    expect(l.get('traefik.enable')).toBe('true');
    expect(l.get('traefik.http.services.sluice.loadbalancer.server.port')).toBe('8090');
    expect(l.get('traefik.http.routers.sluice.entrypoints')).toBe('web');
    const rule = l.get('traefik.http.routers.sluice.rule') ?? '';
    // Compose interpolates CVAT_HOST here, as in CVAT's own router.
    expect(rule).toContain(`Host(\`${'$'}{CVAT_HOST:-localhost}\`)`);
    for (const path of ['/api/', '/static/', '/admin', '/documentation/', '/django-rq']) {
      expect(rule).toContain(`PathPrefix(\`${path}\`)`);
    }
    expect(gateway.healthcheck?.test.join(' ')).toContain('http://127.0.0.1:8090/healthz');
  });

  it("turns off traefik's route to cvat_server and tells it about the one more proxy, nothing else", () => {
    const server = compose.services.cvat_server as ComposeService;
    expect(Object.keys(server).sort()).toEqual(['environment', 'labels']);
    expect(server.labels).toEqual(['traefik.enable=false']);
    expect(server.environment).toEqual({ CVAT_NUM_PROXIES: '1' });
  });
});
