// What the settings say about themselves: `--help` and the README's table, both from SETTINGS.
import { envOf, flagOf, SETTING_GROUPS, SETTING_KEYS, type SettingKey, spec } from './settings.js';

function usage(key: SettingKey): string {
  const s = spec(key);
  const flag = flagOf(key);
  if (s.kind.boolean) return `${flag} / --no-${flag.slice(2)}`;
  return `${flag} ${s.kind.label}${s.kind.list ? ' (repeatable)' : ''}`;
}

function defaultOf(key: SettingKey): string {
  const s = spec(key);
  return s.defaultText ?? s.kind.show(s.default);
}

const plain = (markdown: string): string => markdown.replaceAll('`', '');

/** Each group's title and settings, in the order of {@link SETTING_GROUPS}. */
function byGroup(): [string, SettingKey[]][] {
  return Object.entries(SETTING_GROUPS).map(([group, title]) => [
    title,
    SETTING_KEYS.filter((key) => spec(key).group === group),
  ]);
}

/** `sluice-gateway --help`: every flag with its environment variables and default, by group. */
export function configHelp(): string {
  const lines = [
    'Usage: sluice-gateway [flags]        (from a checkout: pnpm start -- [flags])',
    '',
    'A reverse proxy in front of Django/CVAT that caches session validation and admits only',
    'what the database can serve. Flags win over environment variables, which win over defaults.',
    'Durations: 500ms, 30s, 5m, 1h or ms. Sizes: 64k, 10m, 1g or bytes.',
  ];
  for (const [title, keys] of byGroup()) {
    lines.push('', `${title}:`);
    for (const key of keys) {
      lines.push(`  ${usage(key)}`);
      lines.push(`      ${plain(spec(key).doc)}`);
      lines.push(`      env: ${envOf(key).join(', ')}; default: ${plain(defaultOf(key))}`);
    }
  }
  lines.push(
    '',
    'Other:',
    '  --help, --version, --print-config (prints the resolved configuration and exits)',
  );
  return lines.join('\n');
}

/** A Markdown table with its columns padded the way the formatter (Biome) aligns them. */
function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/** The README's settings table (Markdown), one table per group. */
export function configTable(): string {
  const out: string[] = [];
  const cell = (s: string): string => s.replaceAll('|', '\\|');
  for (const [title, keys] of byGroup()) {
    const rows = keys.map((key) => [
      `\`${cell(usage(key))}\``,
      envOf(key)
        .map((e) => `\`${e}\``)
        .join(', '),
      `\`${key}\``,
      cell(defaultOf(key)),
      cell(spec(key).doc),
    ]);
    out.push(
      `#### ${title}`,
      '',
      ...markdownTable(['flag', 'environment', 'option', 'default', 'meaning'], rows),
      '',
    );
  }
  return out.join('\n').trimEnd();
}
