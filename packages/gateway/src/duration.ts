const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: a plain number is milliseconds, or a number with a unit `ms`, `s`, `m`, `h`
 * (`'30s'`, `'1.5m'`, `'250ms'`). Returns `undefined` for anything else.
 *
 * @example
 * ```ts
 * parseDuration('30s'); // 30000
 * ```
 */
export function parseDuration(raw: string): number | undefined {
  const match = DURATION.exec(raw.trim());
  if (!match) return undefined;
  const value = Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1);
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/** Formats milliseconds the way {@link parseDuration} reads them back (`30s`, `250ms`, `5m`). */
export function formatDuration(ms: number): string {
  const [unit, size] = Object.entries(UNIT_MS).findLast(([, s]) => ms >= s && ms % s === 0) ?? ['ms', 1];
  return `${ms / size}${unit}`;
}
