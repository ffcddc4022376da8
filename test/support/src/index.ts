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
