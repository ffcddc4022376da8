import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { djangoPython } from './django.js';

const script = fileURLToPath(new URL('../../django/vectors.py', import.meta.url));

/** What test/django/vectors.py reads on stdin (every field optional). */
export interface DjangoVectorSpec {
  /** SECRET_KEY of the vectors. */
  readonly secretKey?: string;
  /** A key that is not SECRET_KEY (the "another secret" vector). */
  readonly otherKey?: string;
  /** A rotated-out key (the fallback-key vectors). */
  readonly oldKey?: string;
  /** The frozen clock of every signature, epoch seconds. */
  readonly timestamp?: number;
  /** Password of the auth vector's user. */
  readonly password?: string;
  /** Inputs (base64) to compress with Python's `zlib.compress`. */
  readonly zlib?: readonly string[];
  /** Sessions (JSON text, read with Python's json) to encode with `SessionStore().encode()`. */
  readonly encode?: readonly string[];
  /** Cookie headers to parse with Django's `parse_cookie` and its WSGI request. */
  readonly cookies?: readonly string[];
  /** Authorization headers to run through DRF's Token, Bearer and Basic authentication. */
  readonly authorization?: readonly string[];
}

/** JSON as plain JSON carries it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A session encoded by Django's `SessionStore().encode()` (or the legacy encoder). */
export interface SessionVector {
  readonly name: string;
  /** What Django stores in `django_session.session_data`. */
  readonly sessionData: string;
  /** Whether Django compressed it (leading '.'). */
  readonly compressed: boolean;
  /** The session dictionary; null when plain JSON cannot carry it (NaN, Infinity). */
  readonly session: { [key: string]: Json } | null;
  /** The dictionary as Django's serializer writes it (Python's json, compact). */
  readonly sessionJson: string;
  /** Top-level items in Python's order (values null where plain JSON cannot carry them). */
  readonly entries: readonly (readonly [string, Json])[];
  /** What `SessionStore().decode()` returns in this Django (an empty dict when it refuses). */
  readonly decodedByDjango: { [key: string]: Json } | null;
}

export interface TamperedVector {
  readonly name: string;
  readonly sessionData: string;
  /** The SessionDataError code Sluice must answer. */
  readonly code: 'E_SESSION_BAD_SIGNATURE' | 'E_SESSION_MALFORMED';
  readonly decodedByDjango: { [key: string]: Json } | null;
}

/** DRF's verdict on one Authorization header, for one authentication class. */
export type DrfOutcome =
  | { readonly result: 'none' }
  | { readonly result: 'failed'; readonly detail: string }
  | { readonly result: 'lookup'; readonly args: readonly string[] };

export interface DjangoVectors {
  /** Django's version, e.g. '3.2.25'. */
  readonly django: string;
  /** Epoch seconds of every signature. */
  readonly timestamp: number;
  readonly secretKey: string;
  readonly sessions: readonly SessionVector[];
  readonly auth: {
    readonly passwordHash: string;
    readonly otherPasswordHash: string;
    /** `user.get_session_auth_hash()` under SECRET_KEY. */
    readonly hash: string;
    /** The same under the old key (for fallback keys). */
    readonly hashUnderOldKey: string;
    /** The pre-3.1 sha1 hash. */
    readonly legacySha1Hash: string;
    readonly vector: SessionVector;
  };
  /** Pre-3.1 format; `secretKey` set when not SECRET_KEY. */
  readonly legacy: readonly (SessionVector & { readonly secretKey?: string })[];
  /** The >= 3.1 format signed with HMAC-SHA1 (Django 3.1/3.2 read it). */
  readonly sha1Signed: SessionVector;
  readonly tampered: { readonly original: string; readonly cases: readonly TamperedVector[] };
  readonly otherSecret: SessionVector & { readonly secretKey: string };
  readonly fallback: SessionVector & { readonly oldKey: string; readonly djangoHasFallbacks: boolean };
  /** `signing.dumps(value, salt=..., compress=...)` at the frozen timestamp. */
  readonly signing: readonly {
    readonly value: Json;
    readonly salt: string;
    readonly compress: boolean;
    readonly signed: string;
  }[];
  /** Hex of `zlib.compress(input)` per spec.zlib input. */
  readonly zlib: readonly string[];
  /** `SessionStore().encode(json.loads(text))` per spec.encode entry, at the frozen timestamp. */
  readonly encoded: readonly string[];
  readonly cookies: readonly {
    readonly header: string;
    /** `parse_cookie(header)` items in Python's order. */
    readonly parsed: readonly (readonly [string, string])[];
    /** The header as a WSGI server (and Node) presents its UTF-8 bytes: one char per byte. */
    readonly latin1Header: string;
    /** The session key Django's SessionStore accepts from the request's cookie, or null. */
    readonly djangoSessionKey: string | null;
  }[];
  readonly authorization: readonly {
    readonly header: string;
    readonly latin1Header: string;
    readonly token: DrfOutcome;
    readonly bearer: DrfOutcome;
    readonly basic: DrfOutcome;
  }[];
}

/**
 * Asks real Django (test/django/vectors.py under the system Python) for session, signing, cookie
 * and Authorization vectors. No database is used.
 *
 * @example
 * const vectors = await djangoVectors({ cookies: ['sessionid=a; sessionid=b'] });
 */
export async function djangoVectors(
  spec: DjangoVectorSpec = {},
  { timeoutMs = 60_000 } = {},
): Promise<DjangoVectors> {
  return new Promise((resolve, reject) => {
    const child = spawn(djangoPython, ['-B', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vectors.py did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`vectors.py exited with ${code}: ${Buffer.concat(err).toString('utf8')}`));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(out).toString('utf8')) as DjangoVectors);
      } catch (error) {
        reject(error);
      }
    });
    child.stdin.end(JSON.stringify(spec));
  });
}
