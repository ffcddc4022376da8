import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { type EdgeView, splitList } from './edge.js';

const words = (text: string): readonly string[] => Object.freeze(text.trim().split(/\s+/));
const wordSet = (text: string): ReadonlySet<string> => new Set(words(text));

/** Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection and are never forwarded. */
const HOP = wordSet(`
  connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer
  transfer-encoding upgrade
`);

/**
 * Headers a client could send to pose as someone: auth-proxy conventions (Apache/nginx
 * REMOTE_USER, oauth2-proxy, Kong, Grafana, AWS ALB, Cloudflare Access, Google IAP, Azure App
 * Service), client-certificate headers, and everything `X-Sluice-*`. The gateway removes them
 * from every request, whatever `trustProxy` says. Compared after lowercasing and turning `_`
 * into `-`, because WSGI maps both to `HTTP_..._...`.
 */
export const IDENTITY_HEADERS: readonly string[] = words(`
  remote-user remote-addr auth-user x-auth-user x-userinfo x-access-token x-id-token x-api-key
  x-remote-user x-remote-email x-remote-group x-remote-groups x-forwarded-user x-forwarded-email
  x-forwarded-preferred-username x-forwarded-groups x-forwarded-access-token x-user x-user-id
  x-userid x-user-name x-username x-user-email x-email x-proxy-user x-authenticated-user
  x-authenticated-userid x-authenticated-groups x-authenticated-scope x-consumer-id
  x-consumer-username x-consumer-custom-id x-credential-identifier x-webauth-user x-webauth-email
  x-webauth-name x-ssl-client-cert x-ssl-client-dn x-ssl-client-s-dn x-ssl-client-verify
  x-client-cert x-client-dn x-client-verify ssl-client-cert ssl-client-verify
  x-forwarded-client-cert x-amzn-oidc-data x-amzn-oidc-identity x-amzn-oidc-accesstoken
  cf-access-authenticated-user-email cf-access-jwt-assertion x-goog-authenticated-user-email
  x-goog-authenticated-user-id x-goog-iap-jwt-assertion x-ms-client-principal
  x-ms-client-principal-id x-ms-client-principal-name x-ms-client-principal-idp
  x-ms-token-aad-id-token x-ms-token-aad-access-token
`);

/** Prefixes of identity headers: every header starting with one of these is removed. */
const IDENTITY_HEADER_PREFIXES = words(`
  x-sluice- x-auth-request- x-remote- x-authenticated- x-webauth- x-amzn-oidc- cf-access-
  x-goog-authenticated- x-ms-client-principal
`);

/**
 * Headers that say where a request came from. Without `trustProxy` the client's values are
 * dropped and the gateway writes its own X-Forwarded-For/-Proto/-Host and X-Real-IP.
 */
const FORWARDING = wordSet(`
  forwarded x-forwarded-for x-forwarded-proto x-forwarded-host x-forwarded-port x-forwarded-prefix
  x-forwarded-server x-forwarded-ssl x-forwarded-scheme x-forwarded-protocol x-url-scheme
  front-end-https x-real-ip x-client-ip true-client-ip cf-connecting-ip x-cluster-client-ip
  x-original-forwarded-for x-original-url x-rewrite-url x-original-host
`);

const IDENTITY = new Set(IDENTITY_HEADERS);
const PREFIX_FIRST_CHARS = new Set(IDENTITY_HEADER_PREFIXES.map((p) => p.charCodeAt(0)));

/** True when a request header names an identity the client could forge. */
export function isIdentityHeader(name: string): boolean {
  const normalized = name.toLowerCase().replaceAll('_', '-');
  if (IDENTITY.has(normalized)) return true;
  if (!PREFIX_FIRST_CHARS.has(normalized.charCodeAt(0))) return false;
  return IDENTITY_HEADER_PREFIXES.some((prefix) => normalized.startsWith(prefix));
}

/** The header names listed in `Connection` (they are hop-by-hop for this message). */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  // The common answers name no header: skip the split and the Set.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') {
    return undefined;
  }
  const tokens = new Set(splitList(value).map((t) => t.toLowerCase()));
  tokens.delete('close');
  tokens.delete('keep-alive');
  return tokens.size === 0 ? undefined : tokens;
}

/**
 * The headers to send upstream: hop-by-hop headers (and those `Connection` names), `Expect`,
 * identity headers, every header name containing `_`, and the client's own forwarding headers
 * removed; `X-Forwarded-For/-Proto/-Host` and `X-Real-IP` set from what the edge decided, so
 * Django sees the client and builds absolute URLs that point at the gateway.
 */
export function upstreamRequestHeaders(
  req: IncomingMessage,
  view: EdgeView,
  preserveHost: boolean,
): Record<string, string | string[]> {
  const source: IncomingHttpHeaders = req.headers;
  const listed = connectionTokens(source.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in source) {
    const value = source[name];
    if (value === undefined) continue;
    if (HOP.has(name) || name === 'expect' || name === 'host' || listed?.has(name)) continue;
    if (name.includes('_') || isIdentityHeader(name) || FORWARDING.has(name)) continue;
    out[name] = value;
  }
  out['x-forwarded-for'] = view.forwardedFor;
  out['x-forwarded-proto'] = view.proto;
  if (view.forwardedHost) out['x-forwarded-host'] = view.forwardedHost;
  out['x-real-ip'] = view.client;
  if (preserveHost && view.host) out.host = view.host;
  return out;
}

/**
 * The upstream's response headers as they go to the client: hop-by-hop headers and those named
 * in `Connection` removed; everything else (Set-Cookie arrays included) kept.
 */
export function clientResponseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}
