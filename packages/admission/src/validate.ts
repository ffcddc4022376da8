// Option checks shared by every factory: they throw TypeError/RangeError naming the option and
// the value, and never coerce.

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** An integer >= `min` (and <= `max` when given). */
export function checkInteger(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number') throw new TypeError(`${name} should be an integer, got ${show(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new RangeError(`${name} should be an integer ${range}, got ${show(value)}`);
  }
  return value;
}

/** A finite number in `[min, max]` (or `(min, max]` when `exclusiveMin`). */
export function checkNumber(
  name: string,
  value: unknown,
  min: number,
  max: number,
  exclusiveMin = false,
): number {
  if (typeof value !== 'number') throw new TypeError(`${name} should be a number, got ${show(value)}`);
  if (!Number.isFinite(value) || value < min || value > max || (exclusiveMin && value === min)) {
    throw new RangeError(
      `${name} should be a number in ${exclusiveMin ? '(' : '['}${min}, ${max}], got ${show(value)}`,
    );
  }
  return value;
}

/** A function, when given. */
export function checkFunction<F>(name: string, value: F | undefined): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`${name} should be a function, got ${show(value)}`);
  }
  return value;
}

/** A plain options object. */
export function checkObject(name: string, value: unknown): void {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${name} should be an object, got ${show(value)}`);
  }
}

export { show };
