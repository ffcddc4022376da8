// Clears the scenario results before the run and prints the report table after it.
import { clearResults, readResults, writeReport } from './lib/report.ts';

export function setup(): void {
  clearResults();
}

export function teardown(): void {
  const results = readResults();
  if (results.length === 0) return;
  const table = writeReport(results);
  console.log(`\nSluice fault, abuse and scale report (also in .artifacts/faults/report.md)\n\n${table}\n`);
}
