// A spool: bytes kept in memory up to a threshold, then in a temp file, bounded in total; one
// reader streams them out in order while the writer may still be adding (nginx's request and
// response buffering). The temp file is unlinked the moment it is created, so no path is ever
// left behind: a crash, a kill or an abort frees its space when the descriptor closes.
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';

/** Why a spool refused a chunk. */
export class SpoolFullError extends Error {
  override readonly name = 'SpoolFullError';
  readonly code = 'E_SPOOL_FULL';
}

/** Options of {@link Spool}. */
export interface SpoolOptions {
  /** Bytes kept in memory before the temp file is used. */
  readonly memoryBytes: number;
  /** Most bytes held at once (memory and file together). */
  readonly maxBytes: number;
  /** `reject`: a chunk over `maxBytes` fails with {@link SpoolFullError}; `wait`: it waits for the reader. */
  readonly whenFull: 'reject' | 'wait';
  /** Where temp files are made (created if missing). */
  readonly tempDir: string;
}

const READ_CHUNK = 64 * 1024;
/** Chunks bound for the file are written together once this many bytes wait (one writev). */
const FILE_BATCH = 256 * 1024;

/** Memory, then a temp file, bounded: one writer (`write()`, `end()`), one reader (`stream()`). */
export class Spool {
  readonly #o: SpoolOptions;
  readonly #memory: Buffer[] = [];
  #memoryBytes = 0;
  /** Chunks after the file's content, not written yet (at most FILE_BATCH bytes). */
  readonly #pending: Buffer[] = [];
  #pendingBytes = 0;
  #file: FileHandle | undefined;
  #opening: Promise<FileHandle> | undefined;
  #writePos = 0;
  #readPos = 0;
  #written = 0;
  #ended = false;
  #destroyed = false;
  #wakeReader: (() => void) | undefined;
  #wakeWriter: (() => void) | undefined;
  #reader: Readable | undefined;
  #pumping = false;
  #wanted = false;

  constructor(options: SpoolOptions) {
    this.#o = options;
  }

  /** Bytes written in all. */
  get written(): number {
    return this.#written;
  }

  /** Bytes held now (not yet read). */
  get held(): number {
    return this.#memoryBytes + this.#pendingBytes + (this.#writePos - this.#readPos);
  }

  /**
   * Stores `chunk`: in memory while under `memoryBytes` and nothing waits in the file, else in
   * the file.
   *
   * @throws {SpoolFullError} over `maxBytes` with `whenFull: 'reject'`; an I/O error of the temp file
   */
  async write(chunk: Buffer): Promise<void> {
    if (this.#destroyed) throw new Error('the spool was destroyed');
    if (this.#o.whenFull === 'reject' && this.held + chunk.length > this.#o.maxBytes) {
      throw new SpoolFullError(`more than ${this.#o.maxBytes} bytes`);
    }
    while (this.held + chunk.length > this.#o.maxBytes && this.held > 0) {
      await new Promise<void>((resolve) => {
        this.#wakeWriter = resolve;
      });
      if (this.#destroyed) throw new Error('the spool was destroyed');
    }
    this.#written += chunk.length;
    const inFile = this.#writePos > this.#readPos || this.#pendingBytes > 0;
    if (!inFile && this.#memoryBytes + chunk.length <= this.#o.memoryBytes) {
      this.#memory.push(chunk);
      this.#memoryBytes += chunk.length;
    } else {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#pendingBytes >= FILE_BATCH) await this.#flush();
    }
    this.#wake();
  }

  /** No more writes. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /** Everything written, in order, as one stream (call it once). */
  stream(): Readable {
    if (this.#reader) throw new Error('a spool has one reader');
    const reader = new Readable({
      highWaterMark: READ_CHUNK,
      read: () => {
        this.#wanted = true;
        if (!this.#pumping) void this.#run(reader);
      },
      destroy: (error, callback) => {
        void this.destroy().then(() => callback(error));
      },
    });
    this.#reader = reader;
    return reader;
  }

  /** The whole content as one buffer, once ended (for small bodies held in memory). */
  inMemory(): Buffer | undefined {
    if (!this.#ended || this.#file !== undefined || this.#opening !== undefined) return undefined;
    return this.#memory.length === 1 ? this.#memory[0] : Buffer.concat(this.#memory);
  }

  /** Frees memory, closes (and so frees) the temp file. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#memory.length = 0;
    this.#memoryBytes = 0;
    this.#pending.length = 0;
    this.#pendingBytes = 0;
    this.#wakeWriter?.();
    this.#wake();
    const file = this.#file ?? (await this.#opening?.catch(() => undefined));
    this.#file = undefined;
    await file?.close().catch(() => undefined);
  }

  /** The reader took bytes: a writer waiting for room may go on. */
  #read(): void {
    this.#wakeWriter?.();
    this.#wakeWriter = undefined;
  }

  #wake(): void {
    const wake = this.#wakeReader;
    this.#wakeReader = undefined;
    wake?.();
  }

  /** Writes the pending chunks at the end of the file, in one call. */
  async #flush(): Promise<void> {
    const chunks = this.#pending.splice(0);
    const bytes = this.#pendingBytes;
    this.#pendingBytes = 0;
    const file = await this.#openFile();
    let done = 0;
    while (done < bytes) {
      const { bytesWritten } = await file.writev(
        done === 0 ? chunks : [Buffer.concat(chunks).subarray(done)],
        this.#writePos + done,
      );
      done += bytesWritten;
    }
    this.#writePos += bytes;
  }

  #openFile(): Promise<FileHandle> {
    if (this.#file) return Promise.resolve(this.#file);
    this.#opening ??= (async () => {
      await mkdir(this.#o.tempDir, { recursive: true, mode: 0o700 });
      const path = join(this.#o.tempDir, `spool-${process.pid}-${randomBytes(8).toString('hex')}`);
      const file = await open(path, 'wx+', 0o600);
      await unlink(path).catch(() => undefined);
      if (this.#destroyed) {
        await file.close();
        throw new Error('the spool was destroyed');
      }
      this.#file = file;
      return file;
    })();
    return this.#opening;
  }

  /** One pump at a time; a read() that comes while it runs makes it go on. */
  async #run(reader: Readable): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#wanted && !this.#destroyed) {
        this.#wanted = false;
        await this.#pump(reader);
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Hands the reader what is there: memory first, then the file; waits when caught up. */
  async #pump(reader: Readable): Promise<void> {
    for (;;) {
      if (this.#destroyed) return;
      const head = this.#memory.shift();
      if (head) {
        this.#memoryBytes -= head.length;
        this.#read();
        if (!reader.push(head)) return;
        continue;
      }
      if (this.#readPos < this.#writePos && this.#file) {
        const size = Math.min(READ_CHUNK, this.#writePos - this.#readPos);
        const buffer = Buffer.allocUnsafe(size);
        let bytesRead: number;
        try {
          ({ bytesRead } = await this.#file.read(buffer, 0, size, this.#readPos));
        } catch (error) {
          reader.destroy(error as Error);
          return;
        }
        if (this.#destroyed) return;
        this.#readPos += bytesRead;
        // Caught up with the file: the next writes may use memory again, and the file restarts.
        if (this.#readPos === this.#writePos) this.#readPos = this.#writePos = 0;
        this.#read();
        if (!reader.push(buffer.subarray(0, bytesRead))) return;
        continue;
      }
      // Caught up with the file: what waits for it goes straight to the reader.
      const next = this.#pending.shift();
      if (next) {
        this.#pendingBytes -= next.length;
        this.#read();
        if (!reader.push(next)) return;
        continue;
      }
      if (this.#ended) {
        reader.push(null);
        return;
      }
      await new Promise<void>((resolve) => {
        this.#wakeReader = resolve;
      });
    }
  }
}
