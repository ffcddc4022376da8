// A reference point for the bench (BENCH_BASELINE=1): the least a Node reverse proxy does —
// node:http in, one undici Pool out, bodies piped, no headers rewritten, no middleware. Its
// figure shows what this machine allows a single Node process, next to nginx and the gateway.
// Usage: bare-proxy.ts <upstream origin> <port>
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [upstream, port] = process.argv.slice(2);
if (!upstream || !port) throw new TypeError('usage: bare-proxy.ts <upstream origin> <port>');
const pool = new Pool(upstream, { connections: 256 });
const server = createServer(async (req, res) => {
  try {
    const answer = await pool.request({
      path: req.url ?? '/',
      method: (req.method ?? 'GET') as 'GET',
      headers: req.headers as Record<string, string>,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    });
    res.writeHead(answer.statusCode, answer.headers as Record<string, string>);
    answer.body.pipe(res);
  } catch {
    res.statusCode = 502;
    res.end();
  }
});
server.listen(Number(port), '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.close();
});
