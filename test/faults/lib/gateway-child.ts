// Runs one gateway in its own process for the fault suite (forked by gateway-process.ts with
// the `source` condition and tsx). The configuration comes as JSON in SLUICE_FAULTS_GATEWAY;
// the process reports `listening`, then RSS, heap and event-loop delay every `sampleMs`, over
// IPC. A `close` message closes the gateway and exits 0.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type AccessLogEntry, createGateway } from '../../../packages/gateway/src/index.ts';

interface ChildConfig {
  readonly gateway: Record<string, unknown>;
  readonly sampleMs: number;
  readonly accessLogMax: number;
}

const raw = process.env.SLUICE_FAULTS_GATEWAY;
if (!raw || !process.send) {
  console.error('gateway-child: run me through gateway-process.ts');
  process.exit(2);
}
const config = JSON.parse(raw) as ChildConfig;
const send = (message: unknown): void => {
  if (process.connected) process.send?.(message);
};

const gateway = createGateway(config.gateway);

// The gateway's own view of every request (status, time spent inside the gateway, error code),
// kept for the parent to query: at most `accessLogMax` entries, trimmed a tenth at a time so a
// full ring costs no copy per request. It lives in the gateway's heap (the soak turns it off).
const accessLog: [at: number, status: number, durationMs: number, error: string, route: string][] = [];
if (config.accessLogMax > 0) {
  const trimTo = Math.floor(config.accessLogMax * 0.9);
  gateway.on('request', (entry: AccessLogEntry) => {
    accessLog.push([Date.now(), entry.status, entry.durationMs, entry.error ?? '', entry.route]);
    if (accessLog.length > config.accessLogMax) accessLog.splice(0, accessLog.length - trimTo);
  });
}
const address = await gateway.listen();
send({ type: 'listening', port: address.port, adminPort: gateway.adminAddress()?.port ?? 0 });

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();
setInterval(() => {
  const mem = process.memoryUsage();
  send({
    type: 'sample',
    at: Date.now(),
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    eldP50Ms: delay.percentile(50) / 1e6,
    eldP99Ms: delay.percentile(99) / 1e6,
    eldMaxMs: delay.max / 1e6,
  });
  delay.reset();
}, config.sampleMs).unref();

let closing = false;
const close = async (): Promise<void> => {
  if (closing) return;
  closing = true;
  await gateway.close();
  process.exit(0);
};
process.on('message', (m: { type?: string; id?: number; since?: number }) => {
  if (m?.type === 'close') void close();
  if (m?.type === 'access-log') {
    const since = m.since ?? 0;
    send({ type: 'access-log', id: m.id, entries: accessLog.filter(([at]) => at >= since) });
  }
});
process.on('disconnect', () => void close());
