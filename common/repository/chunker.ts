// Content-defined chunking: FastCDC with normalized chunking (Xia et al., USENIX ATC 2016).
// A rolling "gear" hash over the stream decides where chunks end, so an insertion early in a
// stream moves only the boundaries near it and the chunks after it deduplicate again.
//
// Parameters (docs/repository.md): minimum 256 KiB, average 1 MiB, maximum 4 MiB. The first
// `min` bytes of a chunk are never hashed (FastCDC's cut-point skipping). Before the average
// size a harder mask (two more bits) is used, after it an easier one (two fewer), which pulls
// chunk sizes towards the average. Boundaries depend only on the bytes, never on how the
// stream was split into buffers; tests check that.

import { createHash, createHmac } from "node:crypto";

export const CHUNK_MIN = 256 * 1024;
export const CHUNK_AVG = 1024 * 1024;
export const CHUNK_MAX = 4 * 1024 * 1024;

export interface ChunkerOptions {
  gear?: Uint32Array;
  min?: number;
  avg?: number;
  max?: number;
}

export interface Chunker {
  /** Feed bytes; returns the chunks completed by them (may be none). */
  push(data: Buffer): Buffer[];
  /** End of stream: returns the last chunk, if any bytes are left. */
  end(): Buffer[];
}

const GEAR_LABEL = "lifeboat gear table v1";

/**
 * The gear table: 256 pseudo-random 32-bit values. Without a key it is fixed (SHA-256 in
 * counter mode over a label); with the repository's chunker key it is an HMAC of the same, so
 * chunk boundaries don't reveal which known files a repository holds.
 */
export function gearTable(key?: Buffer | null): Uint32Array {
  const table = new Uint32Array(256);
  for (let block = 0; block < 32; block++) {
    const input = `${GEAR_LABEL} ${block}`;
    const digest = key
      ? createHmac("sha256", key).update(input).digest()
      : createHash("sha256").update(input).digest();
    for (let j = 0; j < 8; j++) table[block * 8 + j] = digest.readUInt32BE(j * 4);
  }
  return table;
}

let defaultGear: Uint32Array | null = null;

/** The top `bits` bits set: with a shift-left gear hash the high bits see the most bytes. */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : (((1 << bits) - 1) << (32 - bits)) | 0;
}

/**
 * The boundary search on its own, for readers that keep a chunk's bytes in place (see
 * agent/backup/slabs.ts): `scan` looks at data[from, to), which continues the current chunk,
 * and returns the index just past the boundary, or -1 when the chunk goes on past `to`.
 * After a boundary the next call starts a new chunk.
 */
export interface CutFinder {
  scan(data: Uint8Array, from: number, to: number): number;
  /** Bytes of the current, unfinished chunk seen so far. */
  readonly pending: number;
  /** Forget the current chunk: the next byte starts a new one. */
  reset(): void;
}

export function createCutFinder(options: ChunkerOptions = {}): CutFinder {
  const gear = options.gear ?? (defaultGear ??= gearTable());
  const min = options.min ?? CHUNK_MIN;
  const avg = options.avg ?? CHUNK_AVG;
  const max = options.max ?? CHUNK_MAX;
  if (!(min > 0 && min <= avg && avg <= max)) {
    throw new RangeError(`chunk sizes must satisfy 0 < min <= avg <= max (${min}, ${avg}, ${max})`);
  }
  const bits = Math.round(Math.log2(avg));
  const maskS = topMask(bits + 2);
  const maskL = topMask(bits - 2);
  /** Length of the current chunk so far. */
  let pos = 0;
  let hash = 0;

  return {
    get pending() {
      return pos;
    },
    reset() {
      pos = 0;
      hash = 0;
    },
    scan(data: Uint8Array, from: number, to: number): number {
      let i = from;
      let h = hash;
      while (i < to) {
        if (pos < min) {
          const skip = Math.min(min - pos, to - i);
          i += skip;
          pos += skip;
          continue;
        }
        // Up to the average size the harder mask, then the easier one up to the maximum.
        const mask = pos < avg ? maskS : maskL;
        const end = Math.min(to, i + ((pos < avg ? avg : max) - pos));
        const start = i;
        for (; i < end; i++) {
          h = ((h << 1) + gear[data[i]!]!) | 0;
          if ((h & mask) === 0) {
            pos = 0;
            hash = 0;
            return i + 1;
          }
        }
        pos += i - start;
        if (pos >= max) {
          pos = 0;
          hash = 0;
          return i;
        }
      }
      hash = h;
      return -1;
    },
  };
}

export function createChunker(options: ChunkerOptions = {}): Chunker {
  const cuts = createCutFinder(options);
  /** Pieces of the current chunk from earlier pushes. */
  let pieces: Buffer[] = [];

  return {
    push(data: Buffer): Buffer[] {
      const out: Buffer[] = [];
      let from = 0;
      for (;;) {
        const cut = cuts.scan(data, from, data.length);
        if (cut < 0) break;
        const tail = data.subarray(from, cut);
        out.push(pieces.length === 0 ? tail : Buffer.concat([...pieces, tail]));
        pieces = [];
        from = cut;
      }
      if (from < data.length) pieces.push(data.subarray(from));
      return out;
    },
    end(): Buffer[] {
      if (pieces.length === 0) return [];
      const last = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
      pieces = [];
      cuts.reset();
      return [last];
    },
  };
}

/** Chunk an async byte stream. */
export async function* chunkStream(
  source: AsyncIterable<Buffer>,
  options: ChunkerOptions = {},
): AsyncGenerator<Buffer> {
  const chunker = createChunker(options);
  for await (const data of source) yield* chunker.push(data);
  yield* chunker.end();
}
