// Option checks shared by every Sluice factory. One message style everywhere:
// `<name> should be <expectation>, got <value>`; TypeError for the wrong type, RangeError for a
// value of the right type out of range. Nothing is coerced.

/** A short printable form of a bad value for error messages (strings quoted and cut at 60). */
export function show(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** Throws a TypeError unless `value` is a non-null object (not an array). */
export function checkObject(name: string, value: unknown): asserts value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} should be an object, got ${show(value)}`);
  }
}

/** An integer in `[min, max]`. */
export function checkInteger(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} should be an integer, got ${show(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new RangeError(`${name} should be an integer ${range}, got ${show(value)}`);
  }
  return value;
}

/** A finite number in `[min, max]`, or `(min, max]` when `exclusiveMin`. */
export function checkNumber(
  name: string,
  value: unknown,
  min: number,
  max: number,
  exclusiveMin = false,
): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} should be a number, got ${show(value)}`);
  }
  if (!Number.isFinite(value) || value < min || value > max || (exclusiveMin && value === min)) {
    throw new RangeError(
      `${name} should be a number in ${exclusiveMin ? '(' : '['}${min}, ${max}], got ${show(value)}`,
    );
  }
  return value;
}

/** A boolean. */
export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} should be a boolean, got ${show(value)}`);
  return value;
}

/** A string, non-empty unless `allowEmpty`. */
export function checkString(name: string, value: unknown, allowEmpty = false): string {
  if (typeof value !== 'string' || (!allowEmpty && value === '')) {
    throw new TypeError(`${name} should be a ${allowEmpty ? '' : 'non-empty '}string, got ${show(value)}`);
  }
  return value;
}

/** One of `choices`. */
export function checkChoice<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new TypeError(
      `${name} should be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${show(value)}`,
    );
  }
  return value as T;
}

/** A function. */
export function checkFunction<F>(name: string, value: unknown): F {
  if (typeof value !== 'function') throw new TypeError(`${name} should be a function, got ${show(value)}`);
  return value as F;
}

/**
 * `fallback` when `value` is undefined, else `check(name, value)`: the one way options get
 * their defaults.
 *
 * @example
 * ```ts
 * const maxQueue = optional(o.maxQueue, 1000, (v) => checkInteger('maxQueue', v, 0));
 * ```
 */
export function optional<T, D = T>(value: unknown, fallback: D, check: (value: unknown) => T): T | D {
  return value === undefined ? fallback : check(value);
}
