// The servers a fault scenario owns: a private PostgreSQL cluster, the Django fixture on it
// (behind a killable TCP relay), optionally a private Redis, and users with tokens and sessions.
import {
  type DjangoFixture,
  type DjangoLogin,
  type DjangoUser,
  type LoadRequest,
  type OwnPostgres,
  type OwnRedis,
  startDjangoOnOwnPostgres,
  startOwnPostgres,
  startOwnRedis,
} from '../../support/src/index.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

export interface World {
  readonly pg: OwnPostgres;
  readonly redis: OwnRedis | undefined;
  readonly django: DjangoFixture;
  /** The relay in front of Django: what the gateway calls its upstream. */
  readonly upstream: TcpProxy;
  readonly databaseUrl: string;
  readonly databaseName: string;
  readonly users: readonly DjangoUser[];
  readonly sessions: readonly DjangoLogin[];
  /** Statements the database ran that touch the authentication tables, counted since start. */
  authQueries(): number;
  /** The last of those statements (log lines, with their parameters), for failure messages. */
  recentAuthStatements(): readonly string[];
  stop(): Promise<void>;
}

export interface WorldOptions {
  /** Start a private Redis. @default false */
  readonly redis?: boolean;
  /** Users to create besides the fixture's two. @default 4 */
  readonly users?: number;
  /** Users to log in (sessions). @default 2 */
  readonly sessions?: number;
  /** gunicorn threads. @default 8 */
  readonly threads?: number;
  /** Time every database-touching Django view holds its connection. @default 0 */
  readonly workMs?: number;
  readonly maxConnections?: number;
}

const AUTH_TABLES = /django_session|authtoken_token|auth_user/;

export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const pg = await startOwnPostgres({ maxConnections: options.maxConnections ?? 80, logStatements: true });
  // A log entry starts with the timestamp of log_line_prefix; a statement's further lines don't.
  let authQueries = 0;
  let inStatement = false;
  let counted = false;
  let lastCounted = false;
  const recent: string[] = [];
  pg.onLog((line) => {
    if (/^\d{4}-\d\d-\d\d /.test(line)) {
      // parameters of the statement just counted
      if (lastCounted && /DETAIL: {2}parameters:/.test(line)) recent.push(`  ${line.slice(0, 300)}`);
      lastCounted = false;
      inStatement = /LOG: {2}(statement|execute)/.test(line);
      counted = false;
    }
    if (inStatement && !counted && AUTH_TABLES.test(line)) {
      counted = true;
      lastCounted = true;
      authQueries += 1;
      recent.push(line.slice(0, 300));
      if (recent.length > 40) recent.splice(0, recent.length - 40);
    }
  });
  const redis = options.redis ? await startOwnRedis() : undefined;
  const { django, databaseUrl, databaseName } = await startDjangoOnOwnPostgres(pg, {
    threads: options.threads ?? 8,
    workMs: options.workMs ?? 0,
  });
  const extra = await Promise.all(
    Array.from({ length: options.users ?? 4 }, (_, i) =>
      django.createUser({ username: `fault${i}`, password: `fault-password-${i}` }),
    ),
  );
  const users = [...django.users.filter((u) => !extra.includes(u)), ...extra];
  const sessions = await Promise.all(
    users.slice(0, options.sessions ?? 2).map((u) => django.login(u.username)),
  );
  const upstream = await startTcpProxy(django.port);
  return {
    pg,
    redis,
    django,
    upstream,
    databaseUrl,
    databaseName,
    users,
    sessions,
    authQueries: () => authQueries,
    recentAuthStatements: () => [...recent],
    async stop() {
      await upstream.close();
      await django.stop().catch(() => {});
      await redis?.stop();
      await pg.stop();
    },
  };
}

/** Requests of signed-in users: tokens and session cookies, round robin, on a light endpoint. */
export function userTraffic(world: World, path = '/api/users/self'): (i: number) => LoadRequest {
  const creds: Record<string, string>[] = [
    ...world.users.map((u) => ({ authorization: `Token ${u.token}` })),
    ...world.sessions.map((s) => ({ cookie: s.cookie })),
  ];
  return (i) => ({ path, headers: creds[i % creds.length] ?? {} });
}
