// Setup file of the integration project: before the file's own hooks, waits for the file's
// PostgreSQL connection budget (`pgBudgets` in vitest.config.ts) and gives it back after the
// file's own afterAll hooks have run (hooks run as a stack).
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { acquirePgBudget } from '../pg-budget.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
let release: (() => void) | undefined;

beforeAll(async () => {
  const file = relative(root, expect.getState().testPath ?? '');
  const budget = inject('pgBudgets')[file] ?? inject('pgDefaultBudget');
  release = await acquirePgBudget(inject('pgBudgetPort'), { file, budget });
}, 30 * 60_000);

afterAll(() => {
  release?.();
  release = undefined;
});
