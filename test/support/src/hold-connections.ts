// Holds idle connections to the shared PostgreSQL server, as another client on the machine
// would: `node --import tsx test/support/src/hold-connections.ts 70` holds 70 until it is
// stopped (Ctrl-C or SIGTERM). Used to check that the suite passes with most of the server taken.
import pg from 'pg';
import { pgUrl } from './postgres.js';

/** Opens `count` connections (application_name `sluice-test-holder`); resolves with a closer. */
export async function holdConnections(count: number): Promise<() => Promise<void>> {
  const clients: pg.Client[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  };
  try {
    for (let i = 0; i < count; i += 1) {
      const client = new pg.Client({
        connectionString: pgUrl('postgres'),
        application_name: 'sluice-test-holder',
      });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return close;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = Number(process.argv[2] ?? 70);
  const close = await holdConnections(count);
  console.log(`holding ${count} connections to PostgreSQL (pid ${process.pid}); stop with SIGTERM or Ctrl-C`);
  const stop = (): void => {
    void close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  setInterval(() => {}, 1 << 30);
}
