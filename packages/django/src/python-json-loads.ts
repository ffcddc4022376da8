/**
 * Python's `json.loads` for JSON text: `JSON.parse`, plus Python's `NaN`, `Infinity` and
 * `-Infinity` literals (which Python's `json.dumps` writes for such floats). Integers beyond
 * 2^53 lose precision, as with any `JSON.parse`.
 */

const MAX_DEPTH = 1000;

class Reader {
  private pos = 0;
  constructor(private readonly text: string) {}

  fail(): never {
    throw new SyntaxError(`invalid JSON at position ${this.pos}`);
  }

  private skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  private literal(word: string): boolean {
    if (this.text.startsWith(word, this.pos)) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  document(): unknown {
    const value = this.value(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) this.fail();
    return value;
  }

  private value(depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail();
    this.skipWhitespace();
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        if (this.literal('true')) return true;
        return this.fail();
      case 'f':
        if (this.literal('false')) return false;
        return this.fail();
      case 'n':
        if (this.literal('null')) return null;
        return this.fail();
      case 'N':
        if (this.literal('NaN')) return Number.NaN;
        return this.fail();
      case 'I':
        if (this.literal('Infinity')) return Number.POSITIVE_INFINITY;
        return this.fail();
      default:
        if (c === '-' && this.literal('-Infinity')) return Number.NEGATIVE_INFINITY;
        return this.number();
    }
  }

  private number(): number {
    const match = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?/y;
    match.lastIndex = this.pos;
    const m = match.exec(this.text);
    if (!m) this.fail();
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private string(): string {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not contain raw control characters.
    const quoted = /"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
    quoted.lastIndex = this.pos;
    const m = quoted.exec(this.text);
    if (!m) this.fail();
    this.pos += m[0].length;
    return JSON.parse(m[0]) as string;
  }

  private array(depth: number): unknown[] {
    this.pos++;
    const out: unknown[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') this.fail();
    }
  }

  private object(depth: number): Record<string, unknown> {
    this.pos++;
    const out: Record<string, unknown> = {};
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.fail();
      const key = this.string();
      this.skipWhitespace();
      if (this.text[this.pos++] !== ':') this.fail();
      Object.defineProperty(out, key, {
        value: this.value(depth + 1),
        writable: true,
        enumerable: true,
        configurable: true,
      });
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail();
    }
  }
}

/**
 * Parses JSON text as Python's `json.loads` does.
 *
 * @throws {SyntaxError} when the text is not JSON (nor Python's extended literals)
 * @example
 * loadPythonJson('{"x":NaN}') // { x: NaN }
 */
export function loadPythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    // Python's json also reads NaN / Infinity / -Infinity; only then is the slower reader needed.
    if (!/NaN|Infinity/.test(text))
      throw error instanceof SyntaxError ? error : new SyntaxError(String(error));
    return new Reader(text).document();
  }
}
