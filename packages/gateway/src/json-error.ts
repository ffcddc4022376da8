import type { ServerResponse } from 'node:http';

/**
 * Answers with a small JSON error in the shape every Sluice middleware uses: `{ code, message }` (plus `extra` fields).
 * Does nothing when headers were already sent or the client is gone.
 */
export function sendJsonError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Readonly<Record<string, string>> = {},
  extra: Readonly<Record<string, unknown>> = {},
): void {
  if (res.headersSent || res.destroyed || res.writableEnded) return;
  const body = JSON.stringify({ ...extra, code, message });
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
