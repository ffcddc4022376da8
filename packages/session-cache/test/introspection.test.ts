import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionCache, introspectionValidator, isSessionCacheError } from '../src/index.ts';

// The faults here (a 500, a hanging endpoint, an oversized or shapeless body) cannot be caused on
// the real Django fixture on demand, so a small local HTTP server plays the endpoint. Valid and
// refused credentials against the real fixture are covered in django.test.ts.
let server: Server;
let base: string;
const seen: IncomingMessage['headers'][] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req.headers);
    const auth = req.headers.authorization ?? '';
    const cookie = req.headers.cookie ?? '';
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    switch (req.url) {
      case '/self':
        if (
          auth === 'Token 0123456789abcdef0123456789abcdef01234567' ||
          cookie.split('; ').includes('sid=abcdefgh12345678')
        ) {
          json(200, {
            id: 5,
            username: 'alice',
            is_active: true,
            is_staff: true,
            is_superuser: false,
            email: 'a@x',
          });
        } else if (auth === `Basic ${Buffer.from('bob:pw:with:colons').toString('base64')}`) {
          json(200, { id: 6, username: 'bob' });
        } else if (auth.startsWith('Bearer inactive')) {
          json(200, { id: 7, username: 'carol', is_active: false });
        } else if (auth.startsWith('Bearer forbidden')) {
          json(403, { detail: 'no' });
        } else json(401, { detail: 'Invalid token.' });
        return;
      case '/error':
        json(500, { detail: 'boom' });
        return;
      case '/hang':
        return; // never answers
      case '/huge':
        json(200, { id: 1, username: 'x', padding: 'y'.repeat(100_000) });
        return;
      case '/shapeless':
        json(200, { user: 'x' });
        return;
      case '/redirect':
        res.writeHead(302, { location: '/self' });
        res.end();
        return;
      default:
        json(404, {});
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const signal = () => new AbortController().signal;

describe('introspectionValidator', () => {
  it('200 is valid, with the identity from the body; each credential kind is forwarded as the endpoint expects', async () => {
    const v = introspectionValidator({ url: `${base}/self`, cookieName: 'sid' });
    expect(
      await v.validate(
        { kind: 'token', token: '0123456789abcdef0123456789abcdef01234567' },
        { signal: signal() },
      ),
    ).toEqual({
      valid: true,
      identity: {
        userId: 5,
        username: 'alice',
        isActive: true,
        isStaff: true,
        isSuperuser: false,
        credentialKind: 'token',
        expiresAt: null,
      },
    });
    expect(
      await v.validate({ kind: 'session', sessionKey: 'abcdefgh12345678' }, { signal: signal() }),
    ).toMatchObject({
      valid: true,
      identity: { userId: 5, credentialKind: 'session' },
    });
    expect(
      await v.validate({ kind: 'basic', username: 'bob', password: 'pw:with:colons' }, { signal: signal() }),
    ).toMatchObject({ valid: true, identity: { userId: 6, isStaff: false } });
  });

  it('presents the configured Host, X-Forwarded-Host/-Proto and extra cookies', async () => {
    const v = introspectionValidator({
      url: `${base}/self`,
      cookieName: 'sid',
      host: 'cvat.example.com',
      forwardedProto: 'https',
      cookies: { sessionfresh: '1' },
      headers: { 'X-Extra': 'yes' },
    });
    const before = seen.length;
    expect(
      (await v.validate({ kind: 'session', sessionKey: 'abcdefgh12345678' }, { signal: signal() })).valid,
    ).toBe(true);
    await v.validate({ kind: 'bearer', token: 'nope' }, { signal: signal() });
    const [session, bearer] = seen.slice(before);
    expect(session).toMatchObject({
      host: 'cvat.example.com',
      'x-forwarded-host': 'cvat.example.com',
      'x-forwarded-proto': 'https',
      'x-extra': 'yes',
      cookie: 'sid=abcdefgh12345678; sessionfresh=1',
    });
    expect(bearer).toMatchObject({ cookie: 'sessionfresh=1', authorization: 'Bearer nope' });
  });

  it('401 and 403 are invalid; an inactive user is invalid', async () => {
    const v = introspectionValidator({ url: `${base}/self` });
    expect(await v.validate({ kind: 'bearer', token: 'nope' }, { signal: signal() })).toEqual({
      valid: false,
      reason: 'introspection-401',
    });
    expect(await v.validate({ kind: 'bearer', token: 'forbidden' }, { signal: signal() })).toEqual({
      valid: false,
      reason: 'introspection-403',
    });
    expect(await v.validate({ kind: 'bearer', token: 'inactive' }, { signal: signal() })).toEqual({
      valid: false,
      reason: 'user-inactive',
    });
  });

  it('other statuses, redirects, oversized or shapeless bodies are errors', async () => {
    const c = { kind: 'bearer' as const, token: 't' };
    await expect(
      introspectionValidator({ url: `${base}/error` }).validate(c, { signal: signal() }),
    ).rejects.toThrow(/500/);
    await expect(
      introspectionValidator({ url: `${base}/redirect` }).validate(c, { signal: signal() }),
    ).rejects.toThrow(/302/);
    await expect(
      introspectionValidator({ url: `${base}/huge`, maxBodyBytes: 1_000 }).validate(c, { signal: signal() }),
    ).rejects.toThrow(/exceeds/);
    await expect(
      introspectionValidator({ url: `${base}/shapeless` }).validate(c, { signal: signal() }),
    ).rejects.toThrow(/id/);
  });

  it('is bounded by timeoutMs', async () => {
    const v = introspectionValidator({ url: `${base}/hang`, timeoutMs: 200 });
    const started = performance.now();
    await expect(v.validate({ kind: 'bearer', token: 't' }, { signal: signal() })).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('through the cache: 401 is cached negatively, a 500 is not cached', async () => {
    const good = createSessionCache({
      validator: introspectionValidator({ url: `${base}/self` }),
      l2: false,
      env: {},
    });
    const before = seen.length;
    expect((await good.lookup({ kind: 'bearer', token: 'nope' })).status).toBe('invalid');
    expect((await good.lookup({ kind: 'bearer', token: 'nope' })).tier).toBe('l1');
    expect(seen.length - before).toBe(1);
    await good.close();
    const bad = createSessionCache({
      validator: introspectionValidator({ url: `${base}/error` }),
      l2: false,
      env: {},
    });
    const e1 = await bad.lookup({ kind: 'bearer', token: 'x' }).catch((e: unknown) => e);
    const e2 = await bad.lookup({ kind: 'bearer', token: 'x' }).catch((e: unknown) => e);
    expect(isSessionCacheError(e1, 'E_VALIDATOR_UNAVAILABLE') && isSessionCacheError(e2)).toBe(true);
    expect(bad.stats().validatorCalls).toBe(2);
    await bad.close();
  });

  it('validates its options at construction', () => {
    expect(() => introspectionValidator({ url: 'ftp://x/self' })).toThrow(/options.url/);
    expect(() => introspectionValidator({ url: 'not a url' })).toThrow(TypeError);
    expect(() => introspectionValidator({ url: `${base}/self`, timeoutMs: 0 })).toThrow(RangeError);
    expect(() => introspectionValidator({ url: `${base}/self`, kinds: [] })).toThrow(/options.kinds/);
    expect(() => introspectionValidator({ url: `${base}/self`, headers: { Authorization: 'x' } })).toThrow(
      /Authorization/,
    );
    expect(() => introspectionValidator({ url: `${base}/self`, headers: { host: 'x' } })).toThrow(/Host/);
    // Django refuses a Host with '_' (the compose service name cvat_server): say so at construction
    expect(() => introspectionValidator({ url: 'http://cvat_server:8080/api/users/self' })).toThrow(
      /options.url's host "cvat_server:8080".*options.host/,
    );
    expect(
      introspectionValidator({ url: 'http://cvat_server:8080/x', host: 'cvat.example.com' }).kinds,
    ).toHaveLength(4);
    expect(() => introspectionValidator({ url: `${base}/self`, host: 'a_b.example' })).toThrow(
      /options.host/,
    );
    expect(() => introspectionValidator({ url: `${base}/self`, forwardedProto: 'ftp' as never })).toThrow(
      /options.forwardedProto/,
    );
    expect(() => introspectionValidator({ url: `${base}/self`, cookies: { sessionfresh: 'a;b' } })).toThrow(
      /options.cookies.sessionfresh/,
    );
    expect(() => introspectionValidator({ url: `${base}/self`, cookieName: 'a b' })).toThrow(/cookieName/);
  });
});
