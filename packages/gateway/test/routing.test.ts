import { pathMatcher as compilePathPatterns } from '@sluice/kit';
import { describe, expect, it } from 'vitest';
import { routeOf } from '../src/context.ts';
import { canonicalPath } from '../src/edge.ts';
import { isIdentityHeader } from '../src/headers.ts';
import { CVAT_PUBLIC_PATHS, createClassifier, cvatClassifier } from '../src/index.ts';

const get = (pathname: string, search = '') => ({ method: 'GET', pathname, search, headers: {} });

describe('CVAT paths', () => {
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
    expect(m.matches('/api/auth/logout')).toBe(true);
    expect(m.matches('/api/webhooks/events')).toBe(true);
    expect(m.matches('/api/webhooks/1')).toBe(false);
  });
});

describe('request classes (CVAT 2.73 routes)', () => {
  const tus = { 'tus-resumable': '1.0.0', 'upload-length': '1048576' };
  const chunk = {
    'tus-resumable': '1.0.0',
    'upload-offset': '0',
    'content-type': 'application/offset+octet-stream',
  };
  // [method, path, query, headers, class]: every heavy route of ../shared/CVAT.md, and what a person waits on.
  const routes: [string, string, string, Record<string, string>, 'bulk' | 'interactive'][] = [
    ['POST', '/api/tasks/7/dataset/export', 'format=COCO 1.0', {}, 'bulk'],
    ['POST', '/api/projects/3/dataset/export', 'format=CVAT for images 1.1', {}, 'bulk'],
    ['POST', '/api/jobs/9/dataset/export', 'format=YOLO 1.1', {}, 'bulk'],
    ['POST', '/api/tasks/7/backup/export', '', {}, 'bulk'],
    ['POST', '/api/projects/3/backup/export', '', {}, 'bulk'],
    ['GET', '/api/tasks/7/dataset/download', 'rq_id=x', {}, 'bulk'],
    ['GET', '/api/projects/3/backup/download', 'rq_id=x', {}, 'bulk'],
    ['POST', '/api/events/export', 'from=2026-01-01', {}, 'bulk'],
    ['GET', '/api/events/download', 'rq_id=x', {}, 'bulk'],
    ['GET', '/api/quality/reports/5/data', '', {}, 'bulk'],
    ['GET', '/api/tasks/7/annotations', '', {}, 'bulk'],
    ['POST', '/api/tasks/7/data/', '', tus, 'bulk'],
    ['HEAD', '/api/tasks/7/data/0f9c7a2e-1c0b-4f4e-9d2a-6b1f7c0e5d3a', '', chunk, 'bulk'],
    ['PATCH', '/api/tasks/7/data/0f9c7a2e-1c0b-4f4e-9d2a-6b1f7c0e5d3a', '', chunk, 'bulk'],
    ['POST', '/api/tasks/7/data', '', { 'upload-start': 'true' }, 'bulk'],
    ['POST', '/api/tasks/7/data', '', {}, 'bulk'],
    ['POST', '/api/jobs/9/annotations/', 'format=CVAT 1.1', tus, 'bulk'],
    ['PATCH', '/api/jobs/9/annotations/0f9c7a2e-1c0b-4f4e-9d2a-6b1f7c0e5d3a', '', chunk, 'bulk'],
    ['POST', '/api/projects/3/dataset/', 'format=COCO 1.0', { 'upload-start': 'true' }, 'bulk'],
    ['PATCH', '/api/projects/3/dataset/0f9c7a2e-1c0b-4f4e-9d2a-6b1f7c0e5d3a', '', chunk, 'bulk'],
    ['POST', '/api/projects/3/dataset/', 'format=COCO 1.0', { 'upload-finish': 'true' }, 'bulk'],
    ['POST', '/api/tasks/backup/', '', tus, 'bulk'],
    ['POST', '/api/projects/backup/', '', { 'upload-finish': 'true' }, 'bulk'],
    // Polling is cheap and the UI polls it while a person waits.
    ['GET', '/api/requests/action=export&target=task&target_id=7', '', {}, 'interactive'],
    ['GET', '/api/requests', '', {}, 'interactive'],
    // The annotation editor.
    ['GET', '/api/jobs/9/annotations', '', {}, 'interactive'],
    ['PATCH', '/api/jobs/9/annotations', 'action=update', {}, 'interactive'],
    ['GET', '/api/jobs/9/data', 'type=chunk&index=0&quality=compressed', {}, 'interactive'],
    ['GET', '/api/tasks/7/data', 'type=frame&number=3', {}, 'interactive'],
    ['GET', '/api/tasks', 'page=1', {}, 'interactive'],
    ['GET', '/api/users/self', '', {}, 'interactive'],
    // Legacy GET export forms answer 410 in 2.73: nothing heavy.
    ['GET', '/api/tasks/7/dataset', 'format=COCO 1.0&action=download', {}, 'interactive'],
    ['GET', '/', '', {}, 'interactive'],
  ];
  it.each(routes)('%s %s?%s %j is %s', (method, pathname, search, headers, expected) => {
    expect(cvatClassifier({ method, pathname, search, headers })).toBe(expected);
  });

  it('add configured bulk paths on top of CVAT rules', () => {
    const classify = createClassifier(['/api/lambda/']);
    expect(classify(get('/api/lambda/requests'))).toBe('bulk');
    expect(classify(get('/api/tasks/7/annotations'))).toBe('bulk');
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
