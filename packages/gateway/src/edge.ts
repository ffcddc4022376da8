// What the gateway decides on, read once from the request and then used for everything: the
// canonical path (public or not, class, database guard, logs), the Host, the client's address,
// and the X-Forwarded-* chain the upstream receives. A request whose decision inputs are
// ambiguous is refused here, before any credential, slot or upstream is involved.
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, type Socket } from 'node:net';
import type { TrustProxySetting } from './config/kinds.js';

/** The request as the gateway decided it. */
export interface EdgeView {
  /** The percent-decoded path the upstream routes on (no query). */
  readonly path: string;
  /** The raw query string, without `?`. */
  readonly search: string;
  /** The validated `Host` (`host[:port]`), if the request had one. */
  readonly host: string | undefined;
  /** `http` or `https` as the client used it (a trusted proxy's `X-Forwarded-Proto`). */
  readonly proto: string;
  /** The client's address: the socket peer, or the right-most untrusted `X-Forwarded-For` entry. */
  readonly client: string;
  /** `X-Forwarded-For` for the upstream: the client, then the trusted hops, then the peer. */
  readonly forwardedFor: string;
  /** `X-Forwarded-Host` for the upstream: a trusted proxy's, else the Host. */
  readonly forwardedHost: string | undefined;
}

/** Headers `Connection` may never name: the gateway decided on them, so the upstream must get them. */
const PROTECTED = new Set(['authorization', 'cookie', 'host', 'content-length', 'transfer-encoding']);

const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const TARGET_BYTES = /^[\u0021-\u00ff]*$/;
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** True when `method` is a valid HTTP method token. */
export function isMethodToken(method: string | undefined): boolean {
  return typeof method === 'string' && METHOD_TOKEN.test(method);
}

/** The peer of `socket` without the IPv4-mapped IPv6 prefix. */
export function peerAddress(socket: Socket | null | undefined): string {
  const address = socket?.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * The path as the upstream routes it: percent-decoded (gunicorn and uvicorn decode `PATH_INFO`).
 * `undefined` when it does not decode, or when decoding would change its segments: an encoded
 * slash or backslash, a NUL, or a `.`/`..` segment. Such a path is treated as protected.
 */
export function canonicalPath(pathname: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  if (/%2f|%5c/i.test(pathname) || decoded.includes('\\') || decoded.includes('\0')) return undefined;
  if (/\/\.\.?(\/|$)/.test(decoded)) return undefined;
  return decoded;
}

/** True when `target` is an origin-form request target (`/path?query`), the only form forwarded. */
export function isOriginFormTarget(target: string | undefined): boolean {
  return typeof target === 'string' && target.startsWith('/') && TARGET_BYTES.test(target);
}

/** The non-empty, trimmed entries of a comma-separated list (a header's values joined). */
export function splitList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * The peers that are trusted proxies, from `--trust-proxy`: every peer when trusting a number of
 * hops, else those its addresses and CIDRs (v4 and v6) cover. The edge skips them in
 * `X-Forwarded-For`; the per-address connection cap exempts them (one proxy carries many clients,
 * whose own caps are its business).
 */
export function proxyAddresses(trust: TrustProxySetting): ((address: string) => boolean) | undefined {
  if (trust === false) return undefined;
  if ('hops' in trust) return () => true;
  const list = new BlockList();
  for (const entry of trust.addresses) {
    const [ip, bits] = entry.split('/');
    const family = isIP(ip ?? '') === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip ?? '', family);
    else list.addSubnet(ip ?? '', Number(bits), family);
  }
  return (address) => list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** Reads the decision inputs of `req`, or says why it cannot be forwarded (then answered 400). */
export function inspectRequest(
  req: IncomingMessage,
  trust: TrustProxySetting,
  trusted: ((address: string) => boolean) | undefined,
): EdgeView | { readonly refused: string } {
  const url = req.url ?? '/';
  if (!isOriginFormTarget(url)) return { refused: 'The request target must be a path.' };
  const q = url.indexOf('?');
  const raw = q === -1 ? url : url.slice(0, q);
  const search = q === -1 ? '' : url.slice(q + 1);
  // Upstream servers decode the path before routing: the gateway decides on that decoded form,
  // and refuses what would decode into something else (an encoded slash, a dot segment).
  const path = canonicalPath(raw);
  if (path === undefined) {
    return { refused: 'The request path must decode cleanly, without encoded slashes or dot segments.' };
  }
  const named = splitList(req.headers.connection).find((token) => PROTECTED.has(token.toLowerCase()));
  if (named) return { refused: `Connection must not name the ${named.toLowerCase()} header.` };
  const host = req.headers.host;
  if ((req.headersDistinct.host?.length ?? 0) > 1 || (host !== undefined && !HOST.test(host))) {
    return { refused: 'The Host header must be one host[:port].' };
  }
  const peer = peerAddress(req.socket as Socket | null);
  const socket = req.socket as IncomingMessage['socket'] | null;
  const ownProto = socket && 'encrypted' in socket && socket.encrypted ? 'https' : 'http';
  if (trust === false) {
    return { path, search, host, proto: ownProto, client: peer, forwardedFor: peer, forwardedHost: host };
  }
  const chain = [...splitList(req.headers['x-forwarded-for']), peer];
  let index: number;
  if ('hops' in trust) {
    index = Math.max(0, chain.length - 1 - trust.hops);
  } else {
    index = chain.length - 1;
    while (index > 0 && trusted?.(chain[index] ?? '')) index -= 1;
  }
  const client = chain[index] ?? peer;
  if (isIP(client) === 0) return { refused: 'X-Forwarded-For must hold IP addresses.' };
  const proto = splitList(req.headers['x-forwarded-proto']).at(-1)?.toLowerCase();
  const forwardedHost = splitList(req.headers['x-forwarded-host']).at(-1);
  if (forwardedHost !== undefined && !HOST.test(forwardedHost)) {
    return { refused: 'X-Forwarded-Host must be one host[:port].' };
  }
  return {
    path,
    search,
    host,
    proto: proto === 'https' || proto === 'http' ? proto : ownProto,
    client,
    forwardedFor: chain.slice(index).join(', '),
    forwardedHost: forwardedHost ?? host,
  };
}
