/**
 * zlib-format compression that produces the same bytes as the reference zlib library (1.2.12 and
 * later, the library CPython links) at its default level 6, window 15 and memLevel 8: what Python's
 * `zlib.compress(data)` returns, and so what Django's `signing.dumps(..., compress=True)` embeds.
 *
 * Node's own `zlib.deflateSync` cannot be used for that: Node bundles a zlib fork with different
 * match finding, so its (equally valid) output differs from Python's byte for byte. This file is a
 * straight reimplementation of the reference algorithm: lazy matching over hash chains
 * (`deflate_slow`), a block flushed every 16383 symbols, and per block the smallest of stored, fixed
 * and dynamic Huffman encodings, with zlib's tie-breaking everywhere. It is used only when dumping;
 * decompression uses `node:zlib` (bounded).
 *
 * @internal
 */

const MIN_MATCH = 3;
const MAX_MATCH = 258;
const MIN_LOOKAHEAD = MAX_MATCH + MIN_MATCH + 1;
const W_SIZE = 1 << 15;
const W_MASK = W_SIZE - 1;
const WINDOW_SIZE = 2 * W_SIZE;
const MAX_DIST = W_SIZE - MIN_LOOKAHEAD;
const HASH_SIZE = 1 << 15;
const HASH_MASK = HASH_SIZE - 1;
const HASH_SHIFT = 5;
const LIT_BUFSIZE = 1 << 14;
const SYM_LIMIT = LIT_BUFSIZE - 1;
/** Level 6 of zlib's configuration table. */
const GOOD_LENGTH = 8;
const MAX_LAZY = 16;
const NICE_LENGTH = 128;
const MAX_CHAIN = 128;
const TOO_FAR = 4096;

const LITERALS = 256;
const LENGTH_CODES = 29;
const L_CODES = LITERALS + 1 + LENGTH_CODES;
const D_CODES = 30;
const BL_CODES = 19;
const HEAP_SIZE = 2 * L_CODES + 1;
const MAX_BITS = 15;
const MAX_BL_BITS = 7;
const END_BLOCK = 256;
const REP_3_6 = 16;
const REPZ_3_10 = 17;
const REPZ_11_138 = 18;

const EXTRA_LBITS = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const EXTRA_DBITS = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
const EXTRA_BLBITS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
const BL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

const LENGTH_CODE = new Uint8Array(MAX_MATCH - MIN_MATCH + 1);
const BASE_LENGTH = new Uint16Array(LENGTH_CODES);
const DIST_CODE = new Uint8Array(512);
const BASE_DIST = new Uint16Array(D_CODES);

/** A Huffman tree as zlib keeps it: `fc` is frequency then code, `dl` is parent then bit length. */
interface Tree {
  readonly fc: Uint16Array;
  readonly dl: Uint16Array;
}

interface StaticDesc {
  readonly tree: Tree | null;
  readonly extra: readonly number[];
  readonly base: number;
  readonly elems: number;
  readonly maxLength: number;
}

function reverseBits(code: number, len: number): number {
  let res = 0;
  let c = code;
  for (let i = 0; i < len; i++) {
    res = (res << 1) | (c & 1);
    c >>>= 1;
  }
  return res;
}

function generateCodes(tree: Tree, maxCode: number, blCount: Uint16Array): void {
  const nextCode = new Uint16Array(MAX_BITS + 1);
  let code = 0;
  for (let bits = 1; bits <= MAX_BITS; bits++) {
    code = (code + (blCount[bits - 1] ?? 0)) << 1;
    nextCode[bits] = code;
  }
  for (let n = 0; n <= maxCode; n++) {
    const len = tree.dl[n] ?? 0;
    if (len === 0) continue;
    const next = nextCode[len] ?? 0;
    nextCode[len] = next + 1;
    tree.fc[n] = reverseBits(next, len);
  }
}

const STATIC_LTREE: Tree = { fc: new Uint16Array(L_CODES + 2), dl: new Uint16Array(L_CODES + 2) };
const STATIC_DTREE: Tree = { fc: new Uint16Array(D_CODES), dl: new Uint16Array(D_CODES) };

(function initStaticTables() {
  let length = 0;
  let code = 0;
  for (code = 0; code < LENGTH_CODES - 1; code++) {
    BASE_LENGTH[code] = length;
    for (let n = 0; n < 1 << (EXTRA_LBITS[code] ?? 0); n++) LENGTH_CODE[length++] = code;
  }
  LENGTH_CODE[length - 1] = code;
  let dist = 0;
  for (code = 0; code < 16; code++) {
    BASE_DIST[code] = dist;
    for (let n = 0; n < 1 << (EXTRA_DBITS[code] ?? 0); n++) DIST_CODE[dist++] = code;
  }
  dist >>= 7;
  for (; code < D_CODES; code++) {
    BASE_DIST[code] = dist << 7;
    for (let n = 0; n < 1 << ((EXTRA_DBITS[code] ?? 0) - 7); n++) DIST_CODE[256 + dist++] = code;
  }
  const blCount = new Uint16Array(MAX_BITS + 1);
  let n = 0;
  const setLen = (upTo: number, len: number) => {
    for (; n <= upTo; n++) {
      STATIC_LTREE.dl[n] = len;
      blCount[len] = (blCount[len] ?? 0) + 1;
    }
  };
  setLen(143, 8);
  setLen(255, 9);
  setLen(279, 7);
  setLen(287, 8);
  generateCodes(STATIC_LTREE, L_CODES + 1, blCount);
  for (let d = 0; d < D_CODES; d++) {
    STATIC_DTREE.dl[d] = 5;
    STATIC_DTREE.fc[d] = reverseBits(d, 5);
  }
})();

const STATIC_L_DESC: StaticDesc = {
  tree: STATIC_LTREE,
  extra: EXTRA_LBITS,
  base: LITERALS + 1,
  elems: L_CODES,
  maxLength: MAX_BITS,
};
const STATIC_D_DESC: StaticDesc = {
  tree: STATIC_DTREE,
  extra: EXTRA_DBITS,
  base: 0,
  elems: D_CODES,
  maxLength: MAX_BITS,
};
const STATIC_BL_DESC: StaticDesc = {
  tree: null,
  extra: EXTRA_BLBITS,
  base: 0,
  elems: BL_CODES,
  maxLength: MAX_BL_BITS,
};

function distCode(dist: number): number {
  return (dist < 256 ? DIST_CODE[dist] : DIST_CODE[256 + (dist >>> 7)]) ?? 0;
}

/** Growable output with an LSB-first bit writer. */
class Output {
  bytes: Uint8Array;
  length = 0;
  private bitBuf = 0;
  private bitCount = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(Math.max(64, capacity));
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  byte(value: number): void {
    this.ensure(1);
    this.bytes[this.length++] = value & 0xff;
  }

  bits(value: number, length: number): void {
    this.bitBuf |= value << this.bitCount;
    this.bitCount += length;
    while (this.bitCount >= 8) {
      this.byte(this.bitBuf);
      this.bitBuf >>>= 8;
      this.bitCount -= 8;
    }
  }

  /** zlib's `bi_windup`: pad to a byte boundary with zero bits. */
  windup(): void {
    if (this.bitCount > 0) this.byte(this.bitBuf);
    this.bitBuf = 0;
    this.bitCount = 0;
  }

  copy(source: Uint8Array, start: number, length: number): void {
    this.ensure(length);
    this.bytes.set(source.subarray(start, start + length), this.length);
    this.length += length;
  }
}

interface TreeDesc {
  readonly tree: Tree;
  maxCode: number;
  readonly stat: StaticDesc;
}

function newTree(size: number): Tree {
  return { fc: new Uint16Array(size), dl: new Uint16Array(size) };
}

class Deflater {
  private readonly window = new Uint8Array(WINDOW_SIZE);
  private readonly prev = new Uint16Array(W_SIZE);
  private readonly head = new Uint16Array(HASH_SIZE);
  private insH = 0;
  private strstart = 0;
  private blockStart = 0;
  private lookahead = 0;
  private matchStart = 0;
  private matchLength = MIN_MATCH - 1;
  private prevLength = MIN_MATCH - 1;
  private prevMatch = 0;
  private matchAvailable = false;
  private inPos = 0;

  private readonly symDist = new Uint16Array(LIT_BUFSIZE);
  private readonly symLc = new Uint8Array(LIT_BUFSIZE);
  private symNext = 0;

  private readonly lDesc: TreeDesc = { tree: newTree(HEAP_SIZE), maxCode: 0, stat: STATIC_L_DESC };
  private readonly dDesc: TreeDesc = { tree: newTree(2 * D_CODES + 1), maxCode: 0, stat: STATIC_D_DESC };
  private readonly blDesc: TreeDesc = { tree: newTree(2 * BL_CODES + 1), maxCode: 0, stat: STATIC_BL_DESC };
  private readonly heap = new Int32Array(HEAP_SIZE);
  private heapLen = 0;
  private heapMax = 0;
  private readonly depth = new Uint8Array(HEAP_SIZE);
  private readonly blCount = new Uint16Array(MAX_BITS + 1);
  private optLen = 0;
  private staticLen = 0;

  constructor(
    private readonly input: Uint8Array,
    private readonly out: Output,
  ) {
    this.initBlock();
  }

  run(): void {
    this.deflateSlow();
  }

  // ---- window and hashing -------------------------------------------------------------------

  private fillWindow(): void {
    do {
      let more = WINDOW_SIZE - this.lookahead - this.strstart;
      if (this.strstart >= W_SIZE + MAX_DIST) {
        this.window.copyWithin(0, W_SIZE, W_SIZE + W_SIZE - more);
        this.matchStart -= W_SIZE;
        this.strstart -= W_SIZE;
        this.blockStart -= W_SIZE;
        this.slideHash();
        more += W_SIZE;
      }
      const available = this.input.length - this.inPos;
      if (available === 0) break;
      const n = Math.min(available, more);
      this.window.set(this.input.subarray(this.inPos, this.inPos + n), this.strstart + this.lookahead);
      this.inPos += n;
      this.lookahead += n;
      if (this.lookahead >= MIN_MATCH) {
        const str = this.strstart;
        this.insH = this.window[str] ?? 0;
        this.insH = ((this.insH << HASH_SHIFT) ^ (this.window[str + 1] ?? 0)) & HASH_MASK;
      }
    } while (this.lookahead < MIN_LOOKAHEAD && this.inPos < this.input.length);
  }

  private slideHash(): void {
    for (let n = 0; n < HASH_SIZE; n++) {
      const m = this.head[n] ?? 0;
      this.head[n] = m >= W_SIZE ? m - W_SIZE : 0;
    }
    for (let n = 0; n < W_SIZE; n++) {
      const m = this.prev[n] ?? 0;
      this.prev[n] = m >= W_SIZE ? m - W_SIZE : 0;
    }
  }

  /** zlib's INSERT_STRING: returns the previous head of the hash chain. */
  private insertString(str: number): number {
    this.insH = ((this.insH << HASH_SHIFT) ^ (this.window[str + (MIN_MATCH - 1)] ?? 0)) & HASH_MASK;
    const matchHead = this.head[this.insH] ?? 0;
    this.prev[str & W_MASK] = matchHead;
    this.head[this.insH] = str;
    return matchHead;
  }

  private longestMatch(start: number): number {
    const w = this.window;
    let curMatch = start;
    let chainLength = MAX_CHAIN;
    const scanStart = this.strstart;
    let bestLen = this.prevLength;
    let niceMatch = NICE_LENGTH;
    const limit = this.strstart > MAX_DIST ? this.strstart - MAX_DIST : 0;
    const strend = this.strstart + MAX_MATCH;
    let scanEnd1 = w[scanStart + bestLen - 1] ?? 0;
    let scanEnd = w[scanStart + bestLen] ?? 0;
    if (this.prevLength >= GOOD_LENGTH) chainLength >>>= 2;
    if (niceMatch > this.lookahead) niceMatch = this.lookahead;

    for (;;) {
      let match = curMatch;
      if (
        w[match + bestLen] === scanEnd &&
        w[match + bestLen - 1] === scanEnd1 &&
        w[match] === w[scanStart] &&
        w[match + 1] === w[scanStart + 1]
      ) {
        // Like zlib, skip byte 2: equal hashes and equal bytes 0 and 1 imply it.
        let scan = scanStart + 2;
        match += 2;
        do {
          scan++;
          match++;
        } while (w[scan] === w[match] && scan < strend);
        const len = MAX_MATCH - (strend - scan);
        if (len > bestLen) {
          this.matchStart = curMatch;
          bestLen = len;
          if (len >= niceMatch) break;
          scanEnd1 = w[scanStart + bestLen - 1] ?? 0;
          scanEnd = w[scanStart + bestLen] ?? 0;
        }
      }
      curMatch = this.prev[curMatch & W_MASK] ?? 0;
      if (curMatch <= limit || --chainLength === 0) break;
    }

    return Math.min(bestLen, this.lookahead);
  }

  // ---- the lazy matcher ---------------------------------------------------------------------

  private deflateSlow(): void {
    for (;;) {
      if (this.lookahead < MIN_LOOKAHEAD) {
        this.fillWindow();
        if (this.lookahead === 0) break;
      }
      let hashHead = 0;
      if (this.lookahead >= MIN_MATCH) hashHead = this.insertString(this.strstart);

      this.prevLength = this.matchLength;
      this.prevMatch = this.matchStart;
      this.matchLength = MIN_MATCH - 1;

      if (hashHead !== 0 && this.prevLength < MAX_LAZY && this.strstart - hashHead <= MAX_DIST) {
        this.matchLength = this.longestMatch(hashHead);
        if (
          this.matchLength <= 5 &&
          this.matchLength === MIN_MATCH &&
          this.strstart - this.matchStart > TOO_FAR
        ) {
          this.matchLength = MIN_MATCH - 1;
        }
      }

      if (this.prevLength >= MIN_MATCH && this.matchLength <= this.prevLength) {
        const maxInsert = this.strstart + this.lookahead - MIN_MATCH;
        const flush = this.tally(this.strstart - 1 - this.prevMatch, this.prevLength - MIN_MATCH);
        this.lookahead -= this.prevLength - 1;
        this.prevLength -= 2;
        do {
          if (++this.strstart <= maxInsert) this.insertString(this.strstart);
        } while (--this.prevLength !== 0);
        this.matchAvailable = false;
        this.matchLength = MIN_MATCH - 1;
        this.strstart++;
        if (flush) this.flushBlock(false);
      } else if (this.matchAvailable) {
        const flush = this.tally(0, this.window[this.strstart - 1] ?? 0);
        if (flush) this.flushBlock(false);
        this.strstart++;
        this.lookahead--;
      } else {
        this.matchAvailable = true;
        this.strstart++;
        this.lookahead--;
      }
    }
    if (this.matchAvailable) {
      this.tally(0, this.window[this.strstart - 1] ?? 0);
      this.matchAvailable = false;
    }
    this.flushBlock(true);
  }

  /** zlib's `_tr_tally`: records a literal (dist 0) or a match; true when the block is full. */
  private tally(dist: number, lc: number): boolean {
    this.symDist[this.symNext] = dist;
    this.symLc[this.symNext] = lc;
    this.symNext++;
    const ltree = this.lDesc.tree.fc;
    if (dist === 0) {
      ltree[lc] = (ltree[lc] ?? 0) + 1;
    } else {
      const code = (LENGTH_CODE[lc] ?? 0) + LITERALS + 1;
      ltree[code] = (ltree[code] ?? 0) + 1;
      const dcode = distCode(dist - 1);
      const dtree = this.dDesc.tree.fc;
      dtree[dcode] = (dtree[dcode] ?? 0) + 1;
    }
    return this.symNext === SYM_LIMIT;
  }

  private flushBlock(last: boolean): void {
    const storedLen = this.strstart - this.blockStart;
    this.trFlushBlock(this.blockStart >= 0 ? this.blockStart : -1, storedLen, last);
    this.blockStart = this.strstart;
  }

  // ---- trees ---------------------------------------------------------------------------------

  private initBlock(): void {
    this.lDesc.tree.fc.fill(0, 0, L_CODES);
    this.dDesc.tree.fc.fill(0, 0, D_CODES);
    this.blDesc.tree.fc.fill(0, 0, BL_CODES);
    this.lDesc.tree.fc[END_BLOCK] = 1;
    this.optLen = 0;
    this.staticLen = 0;
    this.symNext = 0;
  }

  private smaller(tree: Tree, n: number, m: number): boolean {
    const fn = tree.fc[n] ?? 0;
    const fm = tree.fc[m] ?? 0;
    return fn < fm || (fn === fm && (this.depth[n] ?? 0) <= (this.depth[m] ?? 0));
  }

  private pqDownHeap(tree: Tree, start: number): void {
    const heap = this.heap;
    let k = start;
    const v = heap[k] ?? 0;
    let j = k << 1;
    while (j <= this.heapLen) {
      if (j < this.heapLen && this.smaller(tree, heap[j + 1] ?? 0, heap[j] ?? 0)) j++;
      if (this.smaller(tree, v, heap[j] ?? 0)) break;
      heap[k] = heap[j] ?? 0;
      k = j;
      j <<= 1;
    }
    heap[k] = v;
  }

  private genBitlen(desc: TreeDesc): void {
    const { fc, dl } = desc.tree;
    const maxCode = desc.maxCode;
    const stree = desc.stat.tree;
    const { extra, base, maxLength } = desc.stat;
    const heap = this.heap;
    const blCount = this.blCount;
    let overflow = 0;
    blCount.fill(0);

    dl[heap[this.heapMax] ?? 0] = 0;
    let h: number;
    for (h = this.heapMax + 1; h < HEAP_SIZE; h++) {
      const n = heap[h] ?? 0;
      let bits = (dl[dl[n] ?? 0] ?? 0) + 1;
      if (bits > maxLength) {
        bits = maxLength;
        overflow++;
      }
      dl[n] = bits;
      if (n > maxCode) continue;
      blCount[bits] = (blCount[bits] ?? 0) + 1;
      const xbits = n >= base ? (extra[n - base] ?? 0) : 0;
      const f = fc[n] ?? 0;
      this.optLen += f * (bits + xbits);
      if (stree) this.staticLen += f * ((stree.dl[n] ?? 0) + xbits);
    }
    if (overflow === 0) return;

    do {
      let bits = maxLength - 1;
      while ((blCount[bits] ?? 0) === 0) bits--;
      blCount[bits] = (blCount[bits] ?? 0) - 1;
      blCount[bits + 1] = (blCount[bits + 1] ?? 0) + 2;
      blCount[maxLength] = (blCount[maxLength] ?? 0) - 1;
      overflow -= 2;
    } while (overflow > 0);

    for (let bits = maxLength; bits !== 0; bits--) {
      let n = blCount[bits] ?? 0;
      while (n !== 0) {
        const m = heap[--h] ?? 0;
        if (m > maxCode) continue;
        if ((dl[m] ?? 0) !== bits) {
          this.optLen += (bits - (dl[m] ?? 0)) * (fc[m] ?? 0);
          dl[m] = bits;
        }
        n--;
      }
    }
  }

  private buildTree(desc: TreeDesc): void {
    const tree = desc.tree;
    const { fc, dl } = tree;
    const stree = desc.stat.tree;
    const elems = desc.stat.elems;
    const heap = this.heap;
    let maxCode = -1;

    this.heapLen = 0;
    this.heapMax = HEAP_SIZE;
    for (let n = 0; n < elems; n++) {
      if ((fc[n] ?? 0) !== 0) {
        heap[++this.heapLen] = maxCode = n;
        this.depth[n] = 0;
      } else {
        dl[n] = 0;
      }
    }
    while (this.heapLen < 2) {
      const node = maxCode < 2 ? ++maxCode : 0;
      heap[++this.heapLen] = node;
      fc[node] = 1;
      this.depth[node] = 0;
      this.optLen--;
      if (stree) this.staticLen -= stree.dl[node] ?? 0;
    }
    desc.maxCode = maxCode;

    for (let n = this.heapLen >> 1; n >= 1; n--) this.pqDownHeap(tree, n);

    let node = elems;
    do {
      const n = heap[1] ?? 0;
      heap[1] = heap[this.heapLen--] ?? 0;
      this.pqDownHeap(tree, 1);
      const m = heap[1] ?? 0;
      heap[--this.heapMax] = n;
      heap[--this.heapMax] = m;
      fc[node] = (fc[n] ?? 0) + (fc[m] ?? 0);
      const dn = this.depth[n] ?? 0;
      const dm = this.depth[m] ?? 0;
      this.depth[node] = Math.max(dn, dm) + 1;
      dl[n] = node;
      dl[m] = node;
      heap[1] = node++;
      this.pqDownHeap(tree, 1);
    } while (this.heapLen >= 2);
    heap[--this.heapMax] = heap[1] ?? 0;

    this.genBitlen(desc);
    generateCodes(tree, maxCode, this.blCount);
  }

  private scanTree(tree: Tree, maxCode: number): void {
    const dl = tree.dl;
    const bl = this.blDesc.tree.fc;
    let prevlen = -1;
    let nextlen = dl[0] ?? 0;
    let count = 0;
    let maxCount = 7;
    let minCount = 4;
    if (nextlen === 0) {
      maxCount = 138;
      minCount = 3;
    }
    dl[maxCode + 1] = 0xffff;
    for (let n = 0; n <= maxCode; n++) {
      const curlen = nextlen;
      nextlen = dl[n + 1] ?? 0;
      if (++count < maxCount && curlen === nextlen) continue;
      if (count < minCount) {
        bl[curlen] = (bl[curlen] ?? 0) + count;
      } else if (curlen !== 0) {
        if (curlen !== prevlen) bl[curlen] = (bl[curlen] ?? 0) + 1;
        bl[REP_3_6] = (bl[REP_3_6] ?? 0) + 1;
      } else if (count <= 10) {
        bl[REPZ_3_10] = (bl[REPZ_3_10] ?? 0) + 1;
      } else {
        bl[REPZ_11_138] = (bl[REPZ_11_138] ?? 0) + 1;
      }
      count = 0;
      prevlen = curlen;
      if (nextlen === 0) {
        maxCount = 138;
        minCount = 3;
      } else if (curlen === nextlen) {
        maxCount = 6;
        minCount = 3;
      } else {
        maxCount = 7;
        minCount = 4;
      }
    }
  }

  private sendCode(c: number, tree: Tree): void {
    this.out.bits(tree.fc[c] ?? 0, tree.dl[c] ?? 0);
  }

  private sendTree(tree: Tree, maxCode: number): void {
    const dl = tree.dl;
    const bl = this.blDesc.tree;
    let prevlen = -1;
    let nextlen = dl[0] ?? 0;
    let count = 0;
    let maxCount = 7;
    let minCount = 4;
    if (nextlen === 0) {
      maxCount = 138;
      minCount = 3;
    }
    for (let n = 0; n <= maxCode; n++) {
      const curlen = nextlen;
      nextlen = dl[n + 1] ?? 0;
      if (++count < maxCount && curlen === nextlen) continue;
      if (count < minCount) {
        do {
          this.sendCode(curlen, bl);
        } while (--count !== 0);
      } else if (curlen !== 0) {
        if (curlen !== prevlen) {
          this.sendCode(curlen, bl);
          count--;
        }
        this.sendCode(REP_3_6, bl);
        this.out.bits(count - 3, 2);
      } else if (count <= 10) {
        this.sendCode(REPZ_3_10, bl);
        this.out.bits(count - 3, 3);
      } else {
        this.sendCode(REPZ_11_138, bl);
        this.out.bits(count - 11, 7);
      }
      count = 0;
      prevlen = curlen;
      if (nextlen === 0) {
        maxCount = 138;
        minCount = 3;
      } else if (curlen === nextlen) {
        maxCount = 6;
        minCount = 3;
      } else {
        maxCount = 7;
        minCount = 4;
      }
    }
  }

  private buildBlTree(): number {
    this.scanTree(this.lDesc.tree, this.lDesc.maxCode);
    this.scanTree(this.dDesc.tree, this.dDesc.maxCode);
    this.buildTree(this.blDesc);
    let maxBlindex: number;
    for (maxBlindex = BL_CODES - 1; maxBlindex >= 3; maxBlindex--) {
      if ((this.blDesc.tree.dl[BL_ORDER[maxBlindex] ?? 0] ?? 0) !== 0) break;
    }
    this.optLen += 3 * (maxBlindex + 1) + 5 + 5 + 4;
    return maxBlindex;
  }

  private sendAllTrees(lcodes: number, dcodes: number, blcodes: number): void {
    this.out.bits(lcodes - 257, 5);
    this.out.bits(dcodes - 1, 5);
    this.out.bits(blcodes - 4, 4);
    for (let rank = 0; rank < blcodes; rank++) {
      this.out.bits(this.blDesc.tree.dl[BL_ORDER[rank] ?? 0] ?? 0, 3);
    }
    this.sendTree(this.lDesc.tree, lcodes - 1);
    this.sendTree(this.dDesc.tree, dcodes - 1);
  }

  private compressBlock(ltree: Tree, dtree: Tree): void {
    for (let sx = 0; sx < this.symNext; sx++) {
      let dist = this.symDist[sx] ?? 0;
      let lc = this.symLc[sx] ?? 0;
      if (dist === 0) {
        this.sendCode(lc, ltree);
      } else {
        let code = LENGTH_CODE[lc] ?? 0;
        this.sendCode(code + LITERALS + 1, ltree);
        let extra = EXTRA_LBITS[code] ?? 0;
        if (extra !== 0) {
          lc -= BASE_LENGTH[code] ?? 0;
          this.out.bits(lc, extra);
        }
        dist--;
        code = distCode(dist);
        this.sendCode(code, dtree);
        extra = EXTRA_DBITS[code] ?? 0;
        if (extra !== 0) {
          dist -= BASE_DIST[code] ?? 0;
          this.out.bits(dist, extra);
        }
      }
    }
    this.sendCode(END_BLOCK, ltree);
  }

  private trFlushBlock(bufStart: number, storedLen: number, last: boolean): void {
    this.buildTree(this.lDesc);
    this.buildTree(this.dDesc);
    const maxBlindex = this.buildBlTree();
    let optLenb = (this.optLen + 3 + 7) >>> 3;
    const staticLenb = (this.staticLen + 3 + 7) >>> 3;
    if (staticLenb <= optLenb) optLenb = staticLenb;
    const lastBit = last ? 1 : 0;

    if (storedLen + 4 <= optLenb && bufStart !== -1) {
      this.out.bits(lastBit, 3);
      this.out.windup();
      this.out.byte(storedLen);
      this.out.byte(storedLen >>> 8);
      this.out.byte(~storedLen);
      this.out.byte(~storedLen >>> 8);
      this.out.copy(this.window, bufStart, storedLen);
    } else if (staticLenb === optLenb) {
      this.out.bits((1 << 1) + lastBit, 3);
      this.compressBlock(STATIC_LTREE, STATIC_DTREE);
    } else {
      this.out.bits((2 << 1) + lastBit, 3);
      this.sendAllTrees(this.lDesc.maxCode + 1, this.dDesc.maxCode + 1, maxBlindex + 1);
      this.compressBlock(this.lDesc.tree, this.dDesc.tree);
    }
    this.initBlock();
    if (last) this.out.windup();
  }
}

function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  const NMAX = 5552;
  for (let i = 0; i < data.length; ) {
    const end = Math.min(data.length, i + NMAX);
    for (; i < end; i++) {
      a += data[i] ?? 0;
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/**
 * Compresses `input` exactly as Python's `zlib.compress(input)` does with the reference zlib.
 *
 * @internal
 */
export function zlibCompress(input: Uint8Array): Uint8Array {
  const out = new Output(Math.ceil(input.length * 0.6) + 64);
  // CMF 0x78 (deflate, 32K window); FLG 0x9c (default level, check bits).
  out.byte(0x78);
  out.byte(0x9c);
  new Deflater(input, out).run();
  const sum = adler32(input);
  out.byte(sum >>> 24);
  out.byte(sum >>> 16);
  out.byte(sum >>> 8);
  out.byte(sum);
  return out.bytes.subarray(0, out.length);
}
