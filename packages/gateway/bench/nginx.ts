import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../test/support/src/index.ts';
import { type Service, startService, waitForHttp, which } from './processes.js';

/** A private nginx: its config, temp files and logs in a temp dir, on a free port. */
export interface Nginx {
  readonly url: string;
  readonly version: string;
  stop(): Promise<void>;
}

/**
 * Starts Debian's nginx as a plain reverse proxy to `upstream` (keep-alive upstream pool, HTTP/1.1,
 * X-Forwarded-* set, default buffering), one worker process, nothing written outside a temp dir,
 * no change to the machine's nginx. Undefined when nginx is not installed
 * (`apt-get install -y nginx-light`).
 */
export async function startNginx(upstream: URL): Promise<Nginx | undefined> {
  const bin = which('nginx');
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-nginx-'));
  // Workers started by root run as `nobody` unless told otherwise: let them use the temp dirs.
  chmodSync(dir, 0o755);
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    mkdirSync(join(dir, sub), { mode: 0o777 });
    chmodSync(join(dir, sub), 0o777);
  }
  const port = await freePort();
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 100000;
  upstream app {
    server ${upstream.host};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const version = nginxVersion(bin);
  const service: Service = startService(bin, [
    '-p',
    dir,
    '-e',
    join(dir, 'error.log'),
    '-c',
    confPath,
    '-g',
    'daemon off;',
  ]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/api/server/about`);
  } catch (e) {
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url,
    version,
    stop: async () => {
      await service.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function nginxVersion(bin: string): string {
  // `nginx -v` prints to stderr: "nginx version: nginx/1.22.1"
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return /nginx\/[\d.]+/.exec(`${r.stderr}${r.stdout}`)?.[0] ?? 'nginx';
}
