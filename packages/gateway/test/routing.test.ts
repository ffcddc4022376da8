import { pathMatcher as compilePathPatterns } from '@sluice/kit';
import { describe, expect, it } from 'vitest';
import { routeOf } from '../src/context.ts';
import { isIdentityHeader } from '../src/headers.ts';
import { CVAT_PUBLIC_PATHS, createClassifier, cvatClassifier } from '../src/index.ts';
import { canonicalPath } from '../src/request-target.ts';

const get = (pathname: string, search = '') => ({ method: 'GET', pathname, search });

describe('path patterns', () => {
  it('match on segment boundaries, whole trees with a trailing slash, and * for one segment', () => {
    const m = compilePathPatterns(['/api/auth/login', '/static/', '/api/tasks/*/preview']);
    expect(m.matches('/api/auth/login')).toBe(true);
    expect(m.matches('/api/auth/login/')).toBe(true);
    expect(m.matches('/api/auth/loginx')).toBe(false);
    expect(m.matches('/static/js/app.js')).toBe(true);
    expect(m.matches('/staticx')).toBe(false);
    expect(m.matches('/api/tasks/12/preview')).toBe(true);
    expect(m.matches('/api/tasks/12/data')).toBe(false);
  });

  it('refuse relative patterns and dot segments', () => {
    expect(() => compilePathPatterns(['api'])).toThrow(TypeError);
    expect(() => compilePathPatterns(['/a/../b'])).toThrow(/segments/);
  });

  it('canonicalPath decodes and refuses dot segments, so encoding cannot reach a public prefix', () => {
    expect(canonicalPath('/api/auth/%6Cogin')).toBe('/api/auth/login');
    expect(canonicalPath('/api/auth/login/..%2F..%2Fusers')).toBeUndefined();
    expect(canonicalPath('/api/%zz')).toBeUndefined();
  });

  it('cover CVAT login, about, and the UI files by default', () => {
    const m = compilePathPatterns(CVAT_PUBLIC_PATHS);
    expect(m.matches('/api/server/about')).toBe(true);
    expect(m.matches('/api/auth/login')).toBe(true);
    expect(m.matches('/api/auth/password/reset/confirm')).toBe(true);
    expect(m.matches('/api/users/self')).toBe(false);
    expect(m.matches('/api/auth/logout')).toBe(false);
  });
});

describe('request classes', () => {
  it('call exports, downloads and request polling bulk', () => {
    expect(
      cvatClassifier({ method: 'POST', pathname: '/api/tasks/7/dataset/export', search: 'format=COCO' }),
    ).toBe('bulk');
    expect(cvatClassifier(get('/api/projects/3/dataset/download', 'rq_id=x'))).toBe('bulk');
    expect(cvatClassifier(get('/api/tasks/7/dataset', 'format=CVAT&action=download'))).toBe('bulk');
    expect(cvatClassifier({ method: 'POST', pathname: '/api/tasks/7/backup/export', search: '' })).toBe(
      'bulk',
    );
    expect(cvatClassifier(get('/api/jobs/9/annotations', 'format=COCO'))).toBe('bulk');
    expect(cvatClassifier(get('/api/tasks/9/annotations/download'))).toBe('bulk');
    expect(cvatClassifier(get('/api/requests/action%3Dexport'))).toBe('bulk');
    expect(cvatClassifier(get('/api/requests'))).toBe('bulk');
  });

  it('keep what a person waits on interactive', () => {
    expect(cvatClassifier(get('/api/jobs/9/annotations'))).toBe('interactive');
    expect(cvatClassifier({ method: 'PATCH', pathname: '/api/jobs/9/annotations', search: 'format=x' })).toBe(
      'interactive',
    );
    expect(cvatClassifier(get('/api/tasks'))).toBe('interactive');
    expect(cvatClassifier(get('/api/users/self'))).toBe('interactive');
    expect(cvatClassifier(get('/'))).toBe('interactive');
  });

  it('add configured bulk paths on top of CVAT rules', () => {
    const classify = createClassifier(['/api/lambda/']);
    expect(classify(get('/api/lambda/requests'))).toBe('bulk');
    expect(classify(get('/api/requests/1'))).toBe('bulk');
    expect(classify(get('/api/tasks'))).toBe('interactive');
  });
});

describe('routeOf', () => {
  it('drops the query string and replaces ids, request ids and long tokens', () => {
    expect(routeOf('/api/tasks/42/dataset/export?format=COCO&token=secret')).toBe(
      '/api/tasks/:id/dataset/export',
    );
    expect(routeOf('/api/requests/action%3Dexport%26target%3Dtask')).toBe('/api/requests/:id');
    expect(routeOf('/api/auth/password/reset/confirm/MQ/bqu3x2-5c9e1f3b4d2a7e8f9a0b1c2d')).toBe(
      '/api/auth/password/reset/confirm/MQ/:id',
    );
    expect(routeOf('/api/users/self')).toBe('/api/users/self');
    expect(routeOf('/api/jobs/7b0c9f4e-3f7a-4d55-9a8e-1f2d3c4b5a69')).toBe('/api/jobs/:id');
  });
});

describe('isIdentityHeader', () => {
  it('knows every spelling of the identity headers and nothing else', () => {
    expect(isIdentityHeader('X-Remote-User')).toBe(true);
    expect(isIdentityHeader('x_remote_user')).toBe(true);
    expect(isIdentityHeader('x-sluice-anything')).toBe(true);
    expect(isIdentityHeader('X-Auth-Request-Email')).toBe(true);
    expect(isIdentityHeader('cf-access-jwt-assertion')).toBe(true);
    expect(isIdentityHeader('authorization')).toBe(false);
    expect(isIdentityHeader('cookie')).toBe(false);
    expect(isIdentityHeader('x-csrftoken')).toBe(false);
    expect(isIdentityHeader('x-request-id')).toBe(false);
  });
});
