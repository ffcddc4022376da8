import { describe, expect, test } from 'vitest';
import { dumpPythonJson, loadPythonJson } from '../src/index.ts';

describe('dumpPythonJson', () => {
  test("writes floats as Python's repr does (values checked with CPython)", () => {
    const cases: [number, string][] = [
      [0.1, '0.1'],
      [1e-5, '1e-05'],
      [1.5e-5, '1.5e-05'],
      [0.0001, '0.0001'],
      [1e16, '1e+16'],
      [1.5e16, '1.5e+16'],
      [123456789012345.6, '123456789012345.6'],
      [1e22, '1e+22'],
      [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [-2.5, '-2.5'],
      [100.25, '100.25'],
      [1e-7, '1e-07'],
      [2 ** 53, '9007199254740992.0'],
      [0.30000000000000004, '0.30000000000000004'],
      [-0, '-0.0'],
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      [Number.NEGATIVE_INFINITY, '-Infinity'],
    ];
    for (const [value, expected] of cases) expect(dumpPythonJson(value), String(value)).toBe(expected);
  });

  test('writes safe integers and bigints as Python ints', () => {
    expect(dumpPythonJson([0, -1, 2 ** 53 - 1, 12345678901234567890n])).toBe(
      '[0,-1,9007199254740991,12345678901234567890]',
    );
  });

  test('escapes like ensure_ascii, including DEL and astral characters', () => {
    expect(dumpPythonJson({ a: 'é\u2028\x7f😀', b: [1, 0.5] })).toBe(
      '{"a":"\\u00e9\\u2028\\u007f\\ud83d\\ude00","b":[1,0.5]}',
    );
    expect(dumpPythonJson('"\\/\b\f\n\r\t\x00\x1f')).toBe('"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f"');
  });

  test('keeps Map order and converts keys as Python does', () => {
    const m = new Map<unknown, unknown>([
      ['b', 1],
      ['10', 2],
      [3, 'int key'],
      [true, null],
      [null, false],
    ]);
    expect(dumpPythonJson(m)).toBe('{"b":1,"10":2,"3":"int key","true":null,"null":false}');
  });

  test('refuses what Python cannot serialize', () => {
    expect(() => dumpPythonJson({ a: undefined })).toThrow(TypeError);
    expect(() => dumpPythonJson({ a: new Date(0) })).toThrow(/Date is not JSON serializable/);
    expect(() => dumpPythonJson(() => 1)).toThrow(TypeError);
    expect(() => dumpPythonJson(new Map([[{}, 1]]))).toThrow(/keys must be/);
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(() => dumpPythonJson(loop)).toThrow(/circular/);
    let deep: unknown = [];
    for (let i = 0; i < 1500; i++) deep = [deep];
    expect(() => dumpPythonJson(deep)).toThrow(RangeError);
  });

  test('a shared (not circular) reference is fine', () => {
    const shared = { x: 1 };
    expect(dumpPythonJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });
});

describe('loadPythonJson', () => {
  test("reads Python's NaN and infinities, also nested", () => {
    const value = loadPythonJson('{"a":[NaN, Infinity, -Infinity, {"b": -1.5e-3}], "s": "NaN"}') as {
      a: unknown[];
      s: string;
    };
    expect(value.a[0]).toBeNaN();
    expect(value.a.slice(1)).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, { b: -0.0015 }]);
    expect(value.s).toBe('NaN');
    expect(loadPythonJson('["a\\"NaN", "NaN\\\\", -Infinity]')).toEqual([
      'a"NaN',
      'NaN\\',
      Number.NEGATIVE_INFINITY,
    ]);
  });

  test('keeps __proto__ as data in the slow path too', () => {
    const value = loadPythonJson('{"__proto__": {"x": NaN}}') as Record<string, unknown>;
    expect(Object.hasOwn(value, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });

  test('refuses invalid JSON with a SyntaxError', () => {
    const bad = ['', '{', '{"a":NaNa}', 'nan', '[1,]', '"\u0001"', '{"a" 1}', 'Infinity x', '[-]', '{NaN:1}'];
    for (const text of [...bad, '[-NaN]', '[1NaN]', '[NaN NaN]', '[--Infinity]', '[Infinity1]']) {
      expect(() => loadPythonJson(text), text).toThrow(SyntaxError);
    }
  });
});
