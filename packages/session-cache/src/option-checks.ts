/** Throws a TypeError unless `value` is a plain object (or undefined when optional). */
export function checkObject(name: string, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} should be an object, got ${describe(value)}`);
  }
}

/** A positive integer option (with its default when undefined); RangeError/TypeError name it and the value. */
export function positiveInteger(
  name: string,
  value: unknown,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number')
    throw new TypeError(`${name} should be a positive integer, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new RangeError(
      `${name} should be a positive integer${max === Number.MAX_SAFE_INTEGER ? '' : ` <= ${max}`}, got ${describe(value)}`,
    );
  }
  return value;
}

/** A non-negative integer option. */
export function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number')
    throw new TypeError(`${name} should be a non-negative integer, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} should be a non-negative integer, got ${describe(value)}`);
  }
  return value;
}

/** A boolean option. */
export function booleanOption(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} should be a boolean, got ${describe(value)}`);
  return value;
}

/** One of a fixed set of strings. */
export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(
      `${name} should be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`,
    );
  }
  return value as T;
}

/** A function option. */
export function functionOption<F>(name: string, value: unknown, fallback: F): F {
  if (value === undefined) return fallback;
  if (typeof value !== 'function')
    throw new TypeError(`${name} should be a function, got ${describe(value)}`);
  return value as F;
}

/** A short, safe description of an option value for error messages (strings are not echoed in full). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return 'an object';
  }
}
