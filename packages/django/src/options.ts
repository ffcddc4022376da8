/** Option checks shared by the public functions: they throw TypeError/RangeError naming the option. @internal */

/** @internal */
export function describe(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** @internal */
export function checkOptionsObject(name: string, value: unknown, required: boolean): void {
  if (value === undefined && !required) return;
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`${name} should be an object, got ${describe(value)}`);
  }
}

/** @internal */
export function checkSecret(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new TypeError(`${name} should be a non-empty string, got ${describe(value)}`);
  }
  return value;
}

/** @internal */
export function checkSecretList(name: string, value: unknown): readonly string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value))
    throw new TypeError(`${name} should be an array of strings, got ${describe(value)}`);
  for (let i = 0; i < value.length; i++) checkSecret(`${name}[${i}]`, value[i]);
  return value as readonly string[];
}

/** @internal */
export function checkString(name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') throw new TypeError(`${name} should be a string, got ${describe(value)}`);
  return value;
}

/** @internal */
export function checkBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} should be a boolean, got ${describe(value)}`);
  return value;
}

/** @internal */
export function checkPositiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`${name} should be a positive integer, got ${describe(value)}`);
  }
  return value;
}

/** @internal */
export function checkClock(name: string, value: unknown): () => number {
  if (value === undefined) return Date.now;
  if (typeof value !== 'function')
    throw new TypeError(`${name} should be a function, got ${describe(value)}`);
  return value as () => number;
}
