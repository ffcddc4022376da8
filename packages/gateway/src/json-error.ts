import type { ServerResponse } from 'node:http';

/** The header of an answer after which the connection is closed. */
export const CLOSE = { connection: 'close' } as const;

/** Sends `body` as JSON, never cached. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/**
 * Answers with a small JSON error: `{ detail, code, message }` (plus `extra` fields). `detail`
 * is what Django REST framework clients (CVAT's UI, cvat_sdk) read; `code` is Sluice's stable
 * code. Does nothing when headers were already sent or the client is gone.
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
  sendJson(res, status, { detail: message, ...extra, code, message }, headers);
}
