import pino from 'pino';
import type { LogLevel } from './config/settings.js';

/** The logger the gateway writes to: a pino logger (or anything with the same methods). */
export type GatewayLogger = pino.Logger;

/**
 * The gateway's default logger: pino JSON lines on stdout (asynchronous, flushed on close), with
 * `service: 'sluice-gateway'`. Authorization, cookie and secret fields are redacted should any
 * caller ever log them; the gateway itself never does.
 */
export function createLogger(level: LogLevel): GatewayLogger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'sluice-gateway', pid: process.pid },
    redact: {
      paths: [
        'authorization',
        'cookie',
        'headers.authorization',
        'headers.cookie',
        'req.headers.authorization',
        'req.headers.cookie',
        'secretKey',
        'password',
        'token',
      ],
      censor: '<redacted>',
    },
  };
  return pino(options, pino.destination({ dest: 1, sync: false, minLength: 4096 }));
}
