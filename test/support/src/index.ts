export {
  CVAT_SERVER_APPLICATION_NAME,
  DEFAULT_DJANGO_USERS,
  type DjangoAccessToken,
  type DjangoConcurrency,
  type DjangoFixture,
  DjangoFixtureError,
  type DjangoFixtureErrorCode,
  type DjangoLeaks,
  type DjangoLogin,
  type DjangoUser,
  type DjangoUserSpec,
  djangoPasswordHash,
  djangoProjectDir,
  djangoPython,
  djangoTemplateName,
  dropStaleDjangoFixtures,
  ensureDjangoTemplate,
  isDjangoFixtureError,
  type StartDjangoOptions,
  startDjango,
} from './django.js';
export {
  type DjangoOnOwnPostgres,
  type DjangoOnOwnPostgresOptions,
  startDjangoOnOwnPostgres,
} from './django-own-postgres.js';
export {
  type DjangoVectorSpec,
  type DjangoVectors,
  type DrfOutcome,
  djangoVectors,
  type Json,
  type SessionVector,
  type TamperedVector,
} from './django-vectors.js';
export { type FakeCvat, type FakeCvatOptions, type FakeCvatStats, startFakeCvat } from './fake-cvat.js';
export {
  account,
  classifyResponse,
  type LatencySummary,
  type LoadOptions,
  type LoadReport,
  type LoadRequest,
  type LoadRun,
  mergeReports,
  type OutcomeKind,
  type RequestRecord,
  runLoad,
  startLoad,
  wellFormed503,
} from './load-driver.js';
export {
  type OwnPostgres,
  type OwnPostgresOptions,
  postgresBinDir,
  startOwnPostgres,
} from './own-postgres.js';
export { type OwnPgBouncer, type PgBouncerOptions, startPgBouncer } from './pgbouncer.js';
export { freePort, uniqueSuffix, waitFor } from './ports.js';
export {
  adminQuery,
  createTestDatabase,
  dropStaleTestDatabases,
  pgHost,
  pgPort,
  pgUrl,
  pgUser,
  type TestDatabase,
} from './postgres.js';
export { deleteKeys, type OwnRedis, sharedRedisUrl, startOwnRedis, uniquePrefix } from './redis.js';
export {
  type OwnRedisCluster,
  type RedisClusterNode,
  type RedisClusterOptions,
  startRedisCluster,
} from './redis-cluster.js';
