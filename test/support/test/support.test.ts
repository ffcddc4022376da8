import { Redis } from 'ioredis';
import pg from 'pg';
import { expect, test } from 'vitest';
import { createTestDatabase, deleteKeys, sharedRedisUrl, startOwnRedis, uniquePrefix } from '../src/index.ts';

test('a test database is created fresh and dropped', async () => {
  const db = await createTestDatabase('support');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
  expect(rows[0]?.db).toBe(db.name);
  await client.end();
  await db.drop();
  await db.drop();
  const again = new pg.Client({ connectionString: db.url });
  await expect(again.connect()).rejects.toThrow(/does not exist/);
});

test('an own Redis can be killed and started again on the same port', async () => {
  await using redis = await startOwnRedis();
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  // Refused while the server is down: the reconnects wait that out; the commands report failures.
  client.on('error', () => {});
  try {
    await client.set('k', 'v');
    await redis.kill();
    await redis.start();
    expect(await client.get('k')).toBeNull();
  } finally {
    client.disconnect();
  }
});

test('deleteKeys removes exactly one prefix', async () => {
  const mine = uniquePrefix('support');
  const other = uniquePrefix('support');
  const client = new Redis(sharedRedisUrl);
  client.on('error', () => {}); // failures surface through the commands
  await client.set(`${mine}a`, '1');
  await client.set(`${mine}b`, '1');
  await client.set(`${other}a`, '1');
  expect(await deleteKeys(sharedRedisUrl, mine)).toBe(2);
  expect(await client.get(`${other}a`)).toBe('1');
  await client.del(`${other}a`);
  client.disconnect();
});
