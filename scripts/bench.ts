// `pnpm bench`: runs every package's benchmark (packages/*/bench/index.ts) one after another,
// each in its own process so they do not disturb each other, and prints their tables.
// `pnpm bench <package>` runs only the named packages (e.g. `pnpm bench django pool`).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const wanted = new Set(process.argv.slice(2));
const order = ['django', 'pool', 'session-cache', 'admission', 'gateway'];
const packages = readdirSync(join(root, 'packages'))
  .filter((name) => existsSync(join(root, 'packages', name, 'bench', 'index.ts')))
  .filter((name) => wanted.size === 0 || wanted.has(name))
  .sort((a, b) => order.indexOf(a) - order.indexOf(b));

let failed = 0;
for (const name of packages) {
  console.log(`\n## @sluice/${name}\n`);
  const result = spawnSync(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', join('packages', name, 'bench', 'index.ts')],
    { cwd: root, stdio: 'inherit' },
  );
  if (result.status !== 0) {
    failed += 1;
    console.error(`bench for @sluice/${name} failed (exit ${result.status ?? result.signal})`);
  }
}
process.exit(failed === 0 ? 0 : 1);
