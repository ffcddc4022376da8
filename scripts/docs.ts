// `pnpm docs:settings`: rewrites the settings table of packages/gateway/README.md from the settings
// (between `<!-- settings:start -->` and `<!-- settings:end -->`); a test checks they match.
import { readFileSync, writeFileSync } from 'node:fs';
import { configTable } from '../packages/gateway/src/config/docs.ts';

const file = new URL('../packages/gateway/README.md', import.meta.url);
const readme = readFileSync(file, 'utf8');
const start = readme.indexOf('<!-- settings:start -->');
const end = readme.indexOf('<!-- settings:end -->');
if (start === -1 || end === -1) throw new Error('packages/gateway/README.md has no settings markers');
const next = `${readme.slice(0, start)}<!-- settings:start -->\n\n${configTable()}\n\n${readme.slice(end)}`;
writeFileSync(file, next);
console.log(next === readme ? 'settings table already up to date' : 'settings table rewritten');
