/**
 * Python's `json.dumps(value, separators=(',', ':'))` with its defaults (`ensure_ascii=True`,
 * `allow_nan=True`): the serializer Django's signing uses, reproduced byte for byte.
 *
 * JavaScript has one number type, so a safe integer is written as a Python `int` (`5`, never
 * `5.0`) and any other number as Python's `float` repr (`0.1`, `1e-05`, `1e+16`, `NaN`,
 * `Infinity`). Use a `bigint` for integers beyond 2^53. Object keys keep JavaScript's order (integer-
 * like keys first); pass a `Map` to keep another order, as a Python `dict` does.
 */

const MAX_DEPTH = 1000;

/**
 * A JSON string as Python writes it with `ensure_ascii=True`. `JSON.stringify` already writes the
 * escapes Python does for `"`, `\\`, control characters and lone surrogates; Python also escapes
 * everything outside printable ASCII (DEL and above), one UTF-16 code unit at a time.
 */
function dumpString(s: string): string {
  return JSON.stringify(s).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Python's `float.__repr__` for a finite number, from JavaScript's shortest round-trip digits. */
function floatRepr(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return 'Infinity';
  if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (Object.is(n, -0)) return '-0.0';
  const sign = n < 0 ? '-' : '';
  const [mantissa = '0', exponent = '0'] = Math.abs(n).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const decpt = Number(exponent) + 1;
  if (decpt <= -4 || decpt > 16) {
    const exp = decpt - 1;
    const body = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const expAbs = String(Math.abs(exp)).padStart(2, '0');
    return `${sign}${body}e${exp < 0 ? '-' : '+'}${expAbs}`;
  }
  if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
  if (decpt >= digits.length) return `${sign}${digits}${'0'.repeat(decpt - digits.length)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

function dumpNumber(n: number): string {
  // -0 can only come from a Python float (-0.0): a Python int never writes '-0'.
  return Number.isSafeInteger(n) && !Object.is(n, -0) ? String(n) : floatRepr(n);
}

/** A dictionary key: a string, or a number, bool or None written as Python's `str()` of it. */
function dumpKey(key: unknown, path: string): string {
  if (typeof key === 'string') return dumpString(key);
  if (key === null || ['number', 'bigint', 'boolean'].includes(typeof key))
    return `"${dumpValue(key, path, 0, new Set())}"`;
  throw new TypeError(`keys must be str, int, float, bool or None, not ${typeof key} (at ${path})`);
}

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function dumpValue(value: unknown, path: string, depth: number, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return dumpString(value);
    case 'number':
      return dumpNumber(value);
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (depth >= MAX_DEPTH)
        throw new RangeError(`value nests deeper than ${MAX_DEPTH} levels (at ${path})`);
      if (seen.has(value)) throw new TypeError(`circular reference detected (at ${path})`);
      seen.add(value);
      let out: string;
      if (Array.isArray(value)) {
        out = `[${Array.from(value, (v, i) => dumpValue(v, `${path}[${i}]`, depth + 1, seen)).join(',')}]`;
      } else if (value instanceof Map || isPlainObject(value)) {
        const pairs = value instanceof Map ? [...value] : Object.entries(value);
        const parts = pairs.map(
          ([k, v]) => `${dumpKey(k, path)}:${dumpValue(v, `${path}.${String(k)}`, depth + 1, seen)}`,
        );
        out = `{${parts.join(',')}}`;
      } else {
        throw new TypeError(
          `Object of type ${value.constructor?.name ?? 'unknown'} is not JSON serializable (at ${path})`,
        );
      }
      seen.delete(value);
      return out;
    }
    default:
      throw new TypeError(`${typeof value} is not JSON serializable (at ${path})`);
  }
}

/**
 * Serializes `value` exactly as Django's `JSONSerializer` (`json.dumps(value, separators=(',',
 * ':'))`) does. The result is pure ASCII.
 *
 * @throws {TypeError} for values Python's `json` cannot write either (`undefined`, functions,
 * symbols, class instances such as `Date`, circular references) and for unsupported `Map` keys
 * @throws {RangeError} when the value nests deeper than 1000 levels
 * @example
 * dumpPythonJson({ a: 'é', b: [1, 0.5] }) // '{"a":"\\u00e9","b":[1,0.5]}'
 */
export function dumpPythonJson(value: unknown): string {
  return dumpValue(value, '$', 0, new Set());
}
