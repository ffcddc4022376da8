import { createRequire } from 'node:module';

/** The version of `@sluice/gateway` (from its package.json, next to `src/` and `dist/`). */
export const GATEWAY_VERSION: string = (
  createRequire(import.meta.url)('../package.json') as { version: string }
).version;
