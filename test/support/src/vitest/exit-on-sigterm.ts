// Setup file of every project. Vitest stops a worker with SIGTERM, and Node ends on SIGTERM
// without emitting 'exit': the helpers that stop their servers and remove their folders in an
// 'exit' hook (private PostgreSQL, PgBouncer, Redis Cluster, Django) would never run. Exiting
// on SIGTERM runs them.
const installed = Symbol.for('sluice.test.exitOnSigterm');
const flags = globalThis as { [installed]?: boolean };
if (!flags[installed]) {
  flags[installed] = true;
  process.once('SIGTERM', () => process.exit(143));
}
