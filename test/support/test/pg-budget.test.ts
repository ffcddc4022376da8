import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { connectionsHeld, descendants, socketsTo } from '../src/connections.ts';
import { acquirePgBudget, type PgBudget, startPgBudget } from '../src/pg-budget.ts';
import { pgPort, pgUrl } from '../src/postgres.ts';
import { sweepStaleTmp } from '../src/tmp.ts';

let budget: PgBudget;
beforeAll(async () => {
  budget = await startPgBudget({ capacity: 3, sampleMs: 20, starvationMs: 200 });
});
afterAll(async () => {
  await budget?.close();
});

const settled = <T>(p: Promise<T>): { done: () => boolean; value: Promise<T> } => {
  let done = false;
  void p.then(() => {
    done = true;
  });
  return { done: () => done, value: p };
};
const tick = (ms = 100): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('grants budgets while they fit, the next one when one is given back, and 0 at once', async () => {
  const releaseA = await acquirePgBudget(budget.port, { file: 'a', budget: 2 });
  const b = settled(acquirePgBudget(budget.port, { file: 'b', budget: 2 }));
  const none = await acquirePgBudget(budget.port, { file: 'none', budget: 0 });
  const small = await acquirePgBudget(budget.port, { file: 'small', budget: 1 }); // first fit: passes b
  await tick();
  expect(b.done()).toBe(false); // 2 + 1 + 2 > 3
  releaseA();
  const releaseB = await b.value; // 1 + 2
  for (const release of [small, releaseB, none]) release();
  await tick();
  expect(
    budget
      .uses()
      .map((u) => u.file)
      .sort(),
  ).toEqual(['a', 'b', 'none', 'small']);
});

test('a worker that dies gives its budget back with its socket', async () => {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').connect(${budget.port}, '127.0.0.1');
       s.write(JSON.stringify({ file: 'crashed', budget: 3, pid: process.pid }) + '\\n');
       s.on('data', () => process.kill(process.pid, 'SIGKILL'));`,
    ],
    { stdio: 'ignore' },
  );
  await new Promise((r) => child.once('exit', r));
  const release = await acquirePgBudget(budget.port, { file: 'after', budget: 3 });
  release();
});

test('a budget over the capacity runs alone with what there is', async () => {
  const release = await acquirePgBudget(budget.port, { file: 'big', budget: 50 });
  const other = settled(acquirePgBudget(budget.port, { file: 'other', budget: 1 }));
  await tick();
  expect(other.done()).toBe(false);
  release();
  (await other.value)();
});

test('counts the connections a process tree holds to the server, and the coordinator samples them', async () => {
  const count = (): number => connectionsHeld(descendants(process.pid), socketsTo(pgPort));
  const before = count();
  const release = await acquirePgBudget(budget.port, { file: 'sampled', budget: 2 });
  const clients = [0, 1].map(() => new pg.Client({ connectionString: pgUrl('postgres') }));
  await Promise.all(clients.map((c) => c.connect()));
  expect(count()).toBe(before + 2);
  await tick(150);
  await Promise.all(clients.map((c) => c.end()));
  expect(count()).toBe(before);
  release();
  await tick();
  const use = budget.uses().find((u) => u.file === 'sampled');
  expect(use?.peak).toBeGreaterThanOrEqual(2);
});

test('sweeps temporary folders of processes that are gone, with what still runs from them', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sweep-'));
  try {
    const stale = join(root, 'sluice-pg-2147483646-leftover');
    const live = join(root, `sluice-pg-${process.pid}-mine`);
    const foreign = join(root, 'sluice-chromium-nopid');
    for (const dir of [stale, live, foreign]) mkdirSync(dir);
    const sleeper = spawn('sleep', ['60'], { cwd: stale, stdio: 'ignore' });
    const exited = new Promise((r) => sleeper.once('exit', (_code, signal) => r(signal)));
    expect(sweepStaleTmp(root)).toEqual(['sluice-pg-2147483646-leftover']);
    expect(await exited).toBe('SIGKILL');
    expect(existsSync(stale)).toBe(false);
    expect(readdirSync(root).sort()).toEqual([foreign, live].map((d) => d.slice(root.length + 1)).sort());
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
