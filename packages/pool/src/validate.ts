/** Throws a TypeError/RangeError naming the option unless `value` is an integer in [min, max]. */
export function checkInteger(
  where: string,
  name: string,
  value: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${where}: ${name} should be a number, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new RangeError(`${where}: ${name} should be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/** Like {@link checkInteger} but for finite numbers in [min, max]. */
export function checkNumber(where: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${where}: ${name} should be a number, got ${describe(value)}`);
  }
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`${where}: ${name} should be between ${min} and ${max}, got ${describe(value)}`);
  }
  return value;
}

/** Returns `value` when it is one of `choices`, else throws a TypeError naming the option. */
export function checkChoice<T extends string>(
  where: string,
  name: string,
  value: unknown,
  choices: readonly T[],
): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new TypeError(`${where}: ${name} should be one of ${choices.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/** Throws unless `value` is a function. */
export function checkFunction(where: string, name: string, value: unknown): void {
  if (typeof value !== 'function') {
    throw new TypeError(`${where}: ${name} should be a function, got ${describe(value)}`);
  }
}

/** Throws unless `value` is an object (the options bag itself). */
export function checkObject(where: string, name: string, value: unknown): void {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${where}: ${name} should be an object, got ${describe(value)}`);
  }
}

/** A short printable form of a bad option value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'function') return 'a function';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}
