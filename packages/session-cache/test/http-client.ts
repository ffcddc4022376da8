import http from 'node:http';

/** Minimal HTTP GET for tests that need many concurrent requests (own agent, no pool limit). */
export function get(
  agent: http.Agent,
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers, timeout: 20_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

/** Runs `count` requests with at most `concurrency` in flight; resolves every answer in order. */
export async function many<T>(
  count: number,
  concurrency: number,
  one: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, count) }, async () => {
    for (;;) {
      const i = next;
      next += 1;
      if (i >= count) return;
      out[i] = await one(i);
    }
  });
  await Promise.all(workers);
  return out;
}
