// Global setup of the integration project: the coordinator of PostgreSQL connection budgets
// (see ../pg-budget.ts). `SLUICE_TEST_PG_CAPACITY` fixes the capacity instead of reading what
// the server can give; `SLUICE_TEST_PG_REPORT=<file>` writes every file's budget and sampled peak
// (`SLUICE_TEST_PG_SAMPLE_MS`, default 250, samples more often).
import { writeFileSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { startPgBudget } from '../pg-budget.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The coordinator's port on 127.0.0.1. */
    pgBudgetPort: number;
    /** PostgreSQL connections each integration file may hold at once, by path from the repository root. */
    pgBudgets: Record<string, number>;
    /** The budget of an integration file missing from `pgBudgets`. */
    pgDefaultBudget: number;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const fixed = process.env.SLUICE_TEST_PG_CAPACITY;
  const sample = process.env.SLUICE_TEST_PG_SAMPLE_MS;
  const budget = await startPgBudget({
    capacity: fixed ? Number(fixed) : undefined,
    sampleMs: sample ? Number(sample) : undefined,
  });
  project.provide('pgBudgetPort', budget.port);
  console.log(
    `PostgreSQL connection budget: ${budget.capacity} for this run (other clients held ${budget.othersAtStart} at start)`,
  );
  return async () => {
    const uses = budget.uses();
    const over = uses.filter((u) => u.peak > u.budget);
    for (const u of over) {
      console.warn(
        `${u.file} held ${u.peak} PostgreSQL connections at once, over its budget of ${u.budget}: raise it in vitest.config.ts`,
      );
    }
    const waited = uses.reduce((sum, u) => sum + u.waitedMs, 0);
    console.log(
      `PostgreSQL connections: this run held at most ${budget.peak()} at once; files waited ${(waited / 1000).toFixed(1)} s in total for budget`,
    );
    if (process.env.SLUICE_TEST_PG_REPORT) {
      writeFileSync(
        process.env.SLUICE_TEST_PG_REPORT,
        `${JSON.stringify({ capacity: budget.capacity, peak: budget.peak(), uses }, null, 2)}\n`,
      );
    }
    await budget.close();
  };
}
