import { withTimeout } from '@sluice/kit';
import type { Dispatcher } from 'undici';

/** One dependency's readiness. */
export interface CheckResult {
  readonly ok: boolean;
  /** Whether `/readyz` fails when this check fails (Redis is an accelerator: it only degrades). */
  readonly required: boolean;
  readonly latencyMs: number;
  /** Why it failed (never a credential or URL with a password). */
  readonly error?: string;
  /** Extra facts (upstream status, database connections, ...). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** What `/readyz` answers. */
export interface ReadinessReport {
  /** `ready`, `degraded` (an optional dependency is down) or `unready`. */
  readonly status: 'ready' | 'degraded' | 'unready';
  readonly checks: Readonly<Record<string, CheckResult>>;
}

/** A named readiness probe. It should honour `signal`; the runner also times it out. */
export interface ReadinessCheck {
  readonly name: string;
  readonly required: boolean;
  run(signal: AbortSignal): Promise<Readonly<Record<string, unknown>> | undefined>;
}

/** An error as one line: `code: message` when it has a code. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/**
 * Runs every check at once, each bounded by `timeoutMs`, and folds them into a report.
 */
export async function checkReadiness(
  checks: readonly ReadinessCheck[],
  timeoutMs: number,
): Promise<ReadinessReport> {
  const results = await Promise.all(
    checks.map(async (check): Promise<[string, CheckResult]> => {
      const started = performance.now();
      const took = (): number => Math.round(performance.now() - started);
      const { name, required } = check;
      try {
        const message = `no answer within ${timeoutMs} ms`;
        const detail = await withTimeout((signal) => check.run(signal), timeoutMs, { message });
        return [name, { ok: true, required, latencyMs: took(), ...(detail ? { detail } : {}) }];
      } catch (error) {
        return [name, { ok: false, required, latencyMs: took(), error: describeError(error) }];
      }
    }),
  );
  const map = Object.fromEntries(results);
  const failedRequired = results.some(([, r]) => !r.ok && r.required);
  const failedOptional = results.some(([, r]) => !r.ok && !r.required);
  return { status: failedRequired ? 'unready' : failedOptional ? 'degraded' : 'ready', checks: map };
}

/**
 * Probes the upstream with a GET of `path` through the proxy's own connection pool; any status
 * below 500 counts as reachable.
 */
export function upstreamCheck(dispatcher: Dispatcher, origin: string, path: string): ReadinessCheck {
  return {
    name: 'upstream',
    required: true,
    async run(signal) {
      const response = await dispatcher.request({
        origin,
        path,
        method: 'GET',
        signal,
        headers: { accept: 'application/json', 'user-agent': 'sluice-gateway-readyz' },
      });
      await response.body.dump();
      if (response.statusCode >= 500) throw new Error(`upstream answered ${response.statusCode}`);
      return { status: response.statusCode };
    },
  };
}
