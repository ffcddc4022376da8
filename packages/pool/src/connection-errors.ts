import pg from 'pg';

/**
 * Messages `pg` uses for a connection that is gone (it gives them no code), or busy with a
 * statement it stopped waiting for (`query_timeout`).
 */
const GONE = /Connection terminated|not queryable|connection error|Connection closed|Query read timeout/i;

/**
 * True when `error` means the connection it came from can no longer be trusted: a server error
 * of severity FATAL/PANIC or class 08 (the server ended the session, e.g. `pg_terminate_backend`),
 * a socket error, `pg`'s "Connection terminated", or its client-side `query_timeout` (the server
 * may still be running the statement). An ordinary SQL error (syntax, constraint,
 * serialization, statement timeout) and an application's own error leave the connection usable.
 */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) {
    return error.severity === 'FATAL' || error.severity === 'PANIC' || error.code?.startsWith('08') === true;
  }
  if (!(error instanceof Error)) return false;
  if (typeof (error as { syscall?: unknown }).syscall === 'string') return true;
  return GONE.test(error.message);
}
