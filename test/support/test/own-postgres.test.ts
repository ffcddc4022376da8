import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type OwnPostgres, postgresBinDir, startOwnPostgres, waitFor } from '../src/index.ts';

let server: OwnPostgres;

beforeAll(async () => {
  server = await startOwnPostgres({ maxConnections: 20 });
});
afterAll(async () => {
  await server.stop();
});

test('finds the server binaries at run time', () => {
  expect(existsSync(`${postgresBinDir()}/initdb`)).toBe(true);
});

test('a private cluster answers on its own port with trust auth and its own settings', async () => {
  expect(server.port).not.toBe(5432);
  const { rows } = await server.query<{ max: string; port: string; dir: string }>(
    "SELECT current_setting('max_connections') AS max, current_setting('port') AS port, current_setting('unix_socket_directories') AS dir",
  );
  expect(rows[0]).toEqual({ max: '20', port: String(server.port), dir: server.socketDir });
  expect(existsSync(`${server.socketDir}/.s.PGSQL.${server.port}`)).toBe(true);
});

test('a restart keeps the data; a client sees the outage and reconnects after', async () => {
  await server.query('CREATE TABLE IF NOT EXISTS kept (v int)');
  await server.query('INSERT INTO kept VALUES (42)');
  const client = new pg.Client({ connectionString: server.url() });
  const errors: Error[] = [];
  client.on('error', (e) => errors.push(e));
  await client.connect();
  const pidBefore = server.pid;
  await server.restart();
  expect(server.pid).not.toBe(pidBefore);
  await expect(client.query('SELECT 1')).rejects.toThrow();
  await client.end().catch(() => {});
  const { rows } = await server.query<{ v: number }>('SELECT v FROM kept');
  expect(rows).toEqual([{ v: 42 }]);
});

test('kill() is a crash of every process; start() recovers on the same port', async () => {
  await server.query('CREATE TABLE IF NOT EXISTS crashed (v int)');
  await server.query('INSERT INTO crashed VALUES (7)');
  const held = new pg.Client({ connectionString: server.url() });
  held.on('error', () => {});
  await held.connect();
  await server.kill();
  expect(server.running).toBe(false);
  await expect(server.query('SELECT 1')).rejects.toThrow(/ECONNREFUSED|connect/);
  const recovered: string[] = [];
  const off = server.onLog((line) => {
    if (/database system was (interrupted|not properly shut down)/.test(line)) recovered.push(line);
  });
  await server.start();
  // The log arrives on its own pipe: it may trail the connection that found the server ready.
  await waitFor(() => recovered.length > 0, { timeoutMs: 10_000, what: 'the recovery in the log' }).catch(
    () => {},
  );
  off();
  expect(recovered.length).toBeGreaterThan(0);
  const { rows } = await server.query<{ v: number }>('SELECT v FROM crashed');
  expect(rows).toEqual([{ v: 7 }]);
  await held.end().catch(() => {});
});

test('a second cluster is independent and stop() removes its folder', async () => {
  // what a killed run left behind (its pid is gone) is swept when the next cluster starts
  const stale = join(tmpdir(), 'sluice-pg-2147483646-leftover');
  mkdirSync(join(stale, 'data'), { recursive: true });
  const other = await startOwnPostgres({ logStatements: true });
  expect(existsSync(stale)).toBe(false);
  expect(other.port).not.toBe(server.port);
  const seen: string[] = [];
  other.onLog((line) => {
    if (line.includes('statement: SELECT 12345')) seen.push(line);
  });
  await other.query('SELECT 12345');
  // The log arrives on its own pipe: it may trail the query's answer.
  await waitFor(() => seen.length > 0, { timeoutMs: 10_000, what: 'the statement in the log' }).catch(
    () => {},
  );
  const dir = other.socketDir;
  await other.stop();
  await other.stop();
  expect(seen).toHaveLength(1);
  expect(existsSync(dir)).toBe(false);
  await expect(other.start()).rejects.toThrow(/stopped/);
});

test('bad options are refused', async () => {
  await expect(startOwnPostgres({ maxConnections: 1 })).rejects.toThrow(RangeError);
});
