// One HTTP server for the admission bench, in its own process: `bare` (Express only),
// `noop` (Express + an empty middleware, the cost of any middleware layer), `admission`
// (Express + admission() with an ample limit) or `admission+breaker`.
// Prints its port on stdout, serves until killed. GET /__cpu answers the CPU time it used.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { admission } from '../src/index.ts';

const mode = process.argv[2] ?? 'bare';
const app = express();
app.set('etag', false);
app.set('x-powered-by', false);
// CPU time this process has used, for a noise-resistant cost per request (before the gate).
app.get('/__cpu', (_req, res) => {
  const { user, system } = process.cpuUsage();
  res.json({ cpuMicros: user + system });
});
if (mode === 'noop') {
  app.use(function noop(_req, _res, next) {
    next();
  });
} else if (mode === 'admission') {
  app.use(admission({ limit: 10_000, maxQueue: 10_000 }));
} else if (mode === 'admission+breaker') {
  app.use(admission({ limit: 10_000, maxQueue: 10_000, breaker: { volumeThreshold: 1000 } }));
} else if (mode !== 'bare') {
  throw new Error(`unknown mode ${mode}`);
}
app.get('/', (_req, res) => {
  res.json({ ok: true });
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
