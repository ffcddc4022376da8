// Runs the example service: DATABASE_URL=postgres://... PORT=3000 pnpm --filter @sluice-example/express-service start
import type { AddressInfo } from 'node:net';
import { createService } from './service.js';

const service = createService();
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const server = service.app.listen(port, host, () => {
  const address = server.address() as AddressInfo;
  console.log(`express-service listening on http://${address.address}:${address.port}`);
});

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  server.close(() => {
    service.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  server.closeIdleConnections();
  setTimeout(() => process.exit(1), 10_000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
