import { codedErrorGuard } from '@sluice/kit';

/**
 * The HTTP status that goes with each stable error code of `@sluice/gateway` (`undefined` when
 * the error never reaches a client). The README's Errors table says when each is raised.
 */
export const gatewayErrorStatus = {
  E_CONFIG_INVALID: undefined, // bad configuration fields (see `issues`)
  E_UPSTREAM_UNAVAILABLE: 502, // the upstream refused or dropped the connection
  E_UPSTREAM_TIMEOUT: 504, // no response headers within `upstreamHeadersTimeoutMs`
  E_UPSTREAM_PROTOCOL: 502, // the upstream's answer was not valid HTTP
  E_SHUTTING_DOWN: 503, // draining: no new requests
  E_DATABASE_UNAVAILABLE: 503, // the upstream's database does not answer and the request needs it
  E_BAD_REQUEST: 400, // cannot be forwarded as sent (a target that is not a path, an ambiguous path or Host)
  E_CLIENT_TIMEOUT: 408, // the client's body stalled or trickled (`clientBodyTimeoutMs`, `clientMinRate`)
  E_BODY_TOO_LARGE: 413, // the request body is larger than `maxBodySize`
  E_METHOD_NOT_ALLOWED: 405, // `CONNECT`: the gateway is not a forward proxy
  E_INTERNAL: 500, // a bug in the gateway
  E_CLOSED: undefined, // `listen()` after `close()`
} as const satisfies Record<string, number | undefined>;

/** Stable codes of the errors `@sluice/gateway` raises or answers with. */
export type GatewayErrorCode = keyof typeof gatewayErrorStatus;

/**
 * The error `@sluice/gateway` raises: a stable `code`, the HTTP `status` it answers with when
 * one applies, and the underlying `cause`.
 *
 * @example
 * ```ts
 * try {
 *   await gateway.listen();
 * } catch (e) {
 *   if (isGatewayError(e, 'E_CLOSED')) console.error('already closed');
 * }
 * ```
 */
export class GatewayError extends Error {
  override readonly name: string = 'GatewayError';
  /** Stable machine-readable code. */
  readonly code: GatewayErrorCode;
  /** HTTP status the gateway answers with for this error, if it reaches a client. */
  readonly status: number | undefined;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = gatewayErrorStatus[code];
  }
}

/** One bad configuration field: which field, where the value came from, and why it is refused. */
export interface ConfigIssue {
  /** The field name as in {@link GatewayConfig} (e.g. `queueTimeoutMs`). */
  readonly field: string;
  /** The flag or environment variable the value came from, or `'options'` when passed in code. */
  readonly source: string;
  /** The refused value as given (secrets are never echoed: `'<redacted>'`). */
  readonly value: string;
  /** Human-readable reason. */
  readonly reason: string;
}

/**
 * Thrown by `createGateway()` / `resolveConfig()` when options are invalid; lists every bad
 * field at once.
 */
export class GatewayConfigError extends GatewayError {
  override readonly name: string = 'GatewayConfigError';
  /** Every bad field with its reason. */
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(
      'E_CONFIG_INVALID',
      `invalid gateway configuration:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`,
    );
    this.issues = issues;
  }
}

/** `field (source) = value: reason`, as the CLI prints it. */
export function formatIssue(issue: ConfigIssue): string {
  return `${issue.field} (${issue.source}) = ${JSON.stringify(issue.value)}: ${issue.reason}`;
}

/**
 * True when `e` is a {@link GatewayError}, optionally with the given code.
 *
 * @example
 * ```ts
 * if (isGatewayError(e, 'E_CONFIG_INVALID')) process.exit(2);
 * ```
 */
export const isGatewayError = codedErrorGuard(GatewayError);

/** True when `e` is a {@link GatewayConfigError}. */
export function isGatewayConfigError(e: unknown): e is GatewayConfigError {
  return e instanceof GatewayConfigError;
}
