// Reading tar's archive into a few large buffers ("slabs") that are used again and again,
// and cutting chunks out of them in place.
//
// Why: a stream read the usual way arrives in fresh 64 KiB buffers, and each chunk was then
// joined into yet another buffer. At hundreds of MB/s that is two new allocations per byte
// backed up, and V8 answers the external memory with a full garbage collection every few
// tens of MB (bench/README.md measured 129 of them in one first backup). Here the socket
// reads straight into the current slab (net.Socket `onread`), a finished chunk is a view of
// the slab, and a slab goes back to the free list when every chunk cut from it has been
// released by the uploader. After the first few slabs, a backup allocates almost nothing
// for the stream itself.
//
// The one copy left: when a slab is full, the unfinished chunk at its end (at most
// CHUNK_MAX bytes) moves to the start of the next slab, so a chunk is always contiguous.

import type { Socket } from "node:net";
import {
  CHUNK_MAX,
  createCutFinder,
  type ChunkerOptions,
} from "../../common/repository/chunker.ts";

export interface StreamChunk {
  /** The chunk's bytes: a view of a slab, valid until `release()`. */
  data: Buffer;
  /** The consumer is done with `data`: its slab may be filled again. Call exactly once. */
  release(): void;
}

export interface SlabReaderOptions {
  chunker?: ChunkerOptions;
  /** Size of one slab; at least the largest chunk plus one read. */
  slabBytes?: number;
  /** Stop reading while this many bytes of chunks wait for the consumer. */
  queueBytes?: number;
  /**
   * Every piece of the stream as it arrives, in order (for the tar index and progress). The
   * view is valid only during the call.
   */
  onData?: (data: Buffer) => void;
}

interface Slab {
  buf: Buffer;
  /** Chunks cut from this slab and not yet released. */
  refs: number;
}

/** Reads are never offered less room than this (a pipe holds 64 KiB). */
const MIN_READ = 64 * 1024;
/** Free slabs kept for reuse; more than this go to the garbage collector. */
const KEEP_FREE = 4;

export class SlabChunkReader {
  readonly #cuts;
  readonly #slabBytes: number;
  readonly #queueBytes: number;
  readonly #onData: (data: Buffer) => void;
  readonly #free: Slab[] = [];
  #slab: Slab;
  /** Where the current chunk starts in the current slab. */
  #start = 0;
  /** Bytes of the current slab filled by reads. */
  #filled = 0;
  #queue: StreamChunk[] = [];
  #queued = 0;
  #ended = false;
  #error: unknown = null;
  #wake: (() => void) | null = null;
  #socket: Socket | null = null;
  #paused = false;
  /** Bytes read so far. */
  bytes = 0;
  /** Slabs allocated (the rest of the stream reused them). */
  allocated = 0;

  /** Pass as `onread` when creating the socket the stream arrives on. */
  readonly onread = {
    buffer: (): Buffer => this.#room(),
    callback: (nread: number): boolean => this.#take(nread),
  };

  constructor(options: SlabReaderOptions = {}) {
    this.#cuts = createCutFinder(options.chunker);
    const max = options.chunker?.max ?? CHUNK_MAX;
    this.#slabBytes = options.slabBytes ?? 2 * max;
    if (this.#slabBytes < max + MIN_READ) {
      throw new RangeError(`a slab must hold a largest chunk plus one read (${max + MIN_READ})`);
    }
    this.#queueBytes = options.queueBytes ?? 4 * 1048576;
    this.#onData = options.onData ?? (() => {});
    this.#slab = this.#newSlab();
  }

  /** Follow the socket created with `onread`: its end, its errors, and pausing. */
  attach(socket: Socket): void {
    this.#socket = socket;
    socket.on("end", () => this.#finish());
    socket.on("error", (error) => this.#fail(error));
    socket.on("close", () => {
      if (!this.#ended) {
        this.#fail(new Error("the archive stream closed before its end (the pipe broke)"));
      }
    });
  }

  /** The next chunk, in stream order, or null after the last one. Throws a read error. */
  async next(): Promise<StreamChunk | null> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#queued -= chunk.data.length;
        if (this.#paused && this.#queued <= this.#queueBytes / 2) {
          this.#paused = false;
          this.#socket?.resume();
        }
        return chunk;
      }
      if (this.#error !== null) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Stop reading: the socket is destroyed (its writer gets EPIPE). Queued chunks are dropped. */
  destroy(reason?: unknown): void {
    this.#fail(reason ?? new Error("the reader stopped"));
    for (const chunk of this.#queue.splice(0)) chunk.release();
    this.#queued = 0;
    this.#socket?.destroy();
  }

  #newSlab(): Slab {
    const reused = this.#free.pop();
    if (reused) return reused;
    this.allocated++;
    return { buf: Buffer.allocUnsafeSlow(this.#slabBytes), refs: 0 };
  }

  /** Room for the next read: the rest of the current slab, or a fresh slab when it is short. */
  #room(): Buffer {
    if (this.#slabBytes - this.#filled < MIN_READ) {
      const old = this.#slab;
      const next = this.#newSlab();
      const carried = old.buf.copy(next.buf, 0, this.#start, this.#filled);
      this.#slab = next;
      this.#start = 0;
      this.#filled = carried;
      if (old.refs === 0) this.#recycle(old);
    }
    return this.#slab.buf.subarray(this.#filled);
  }

  #recycle(slab: Slab) {
    if (this.#free.length < KEEP_FREE) this.#free.push(slab);
  }

  #take(nread: number): boolean {
    if (this.#error !== null) return false;
    const slab = this.#slab;
    const from = this.#filled;
    this.#filled += nread;
    this.bytes += nread;
    try {
      this.#onData(slab.buf.subarray(from, this.#filled));
    } catch (error) {
      this.destroy(error);
      return false;
    }
    for (let at = from; ;) {
      const cut = this.#cuts.scan(slab.buf, at, this.#filled);
      if (cut < 0) break;
      this.#emit(slab, this.#start, cut);
      this.#start = at = cut;
    }
    this.#wakeUp();
    if (this.#queued >= this.#queueBytes) {
      this.#paused = true;
      return false;
    }
    return true;
  }

  #emit(slab: Slab, start: number, end: number) {
    slab.refs++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--slab.refs === 0 && slab !== this.#slab) this.#recycle(slab);
    };
    this.#queue.push({ data: slab.buf.subarray(start, end), release });
    this.#queued += end - start;
  }

  #finish() {
    if (this.#ended || this.#error !== null) return;
    // The last chunk is whatever is left, however short.
    if (this.#filled > this.#start) this.#emit(this.#slab, this.#start, this.#filled);
    this.#cuts.reset();
    this.#ended = true;
    this.#wakeUp();
  }

  #fail(error: unknown) {
    this.#error ??= error;
    this.#wakeUp();
  }

  #wakeUp() {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
