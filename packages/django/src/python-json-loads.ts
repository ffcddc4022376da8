import { randomUUID } from 'node:crypto';

/** A JSON string (skipped as it is) or one of Python's literals outside strings (captured). */
const STRING_OR_LITERAL = /"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)/g;

/**
 * Parses JSON text as Python's `json.loads` does: `JSON.parse`, plus Python's `NaN`, `Infinity`
 * and `-Infinity` literals (which Python's `json.dumps` writes for such floats). Integers beyond
 * 2^53 lose precision, as with any `JSON.parse`.
 *
 * @throws {SyntaxError} when the text is not JSON (nor Python's extended literals)
 * @example
 * loadPythonJson('{"x":NaN}') // { x: NaN }
 */
export function loadPythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    if (!/NaN|Infinity/.test(text)) throw error;
  }
  // Only then: each literal becomes a string carrying a marker no input can know, and the reviver
  // turns it back into its number (a marker in a key is a literal where JSON wants a string).
  const marker = `${randomUUID()}:`;
  const marked = text.replace(STRING_OR_LITERAL, (token, literal?: string) =>
    literal === undefined ? token : `"${marker}${literal}"`,
  );
  return JSON.parse(marked, (key, value: unknown) => {
    if (key.startsWith(marker)) throw new SyntaxError(`${key.slice(marker.length)} cannot be a key`);
    return typeof value === 'string' && value.startsWith(marker) ? Number(value.slice(marker.length)) : value;
  });
}
