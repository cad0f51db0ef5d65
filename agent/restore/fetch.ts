// Restore's side of the chunk store: fetch blobs, check and decode them, and hand out the
// plaintext of a stream (or of a byte range of it) in order, with read-ahead.
//
// Every chunk is checked before anyone sees a byte of it: the decrypted plaintext against
// its chunk id (decodeBlob), and its length against the manifest. From a server, the blob is
// also checked against the hash the server recorded as it arrives (api.ts); from a data
// directory, that hash is asked only for a blob that does not decode, to name the damage
// (local.ts, readChunk).

import { orderedMap } from "../../common/concurrency.ts";
import { inputError } from "../../common/errors.ts";
import { ZstdDecoders } from "../../common/repository/blob.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import type { ChunkRef } from "../../common/repository/manifest.ts";
import { readChunk, type SnapshotSource } from "../client/local.ts";
import type { Progress } from "../progress.ts";

export interface FetcherOptions {
  client: SnapshotSource;
  keys: RepoKeys | null;
  progress: Progress;
  /** Chunk downloads in flight per stream or range being read (read-ahead). */
  parallel?: number;
}

export interface FetchCounters {
  bytes: number;
  chunks: number;
}

/** The chunks of a stream that overlap [start, end), with the part of each that lies inside. */
function overlapping(
  chunks: ChunkRef[],
  range: { start: number; end: number },
): { ref: ChunkRef; from: number; to: number }[] {
  const found: { ref: ChunkRef; from: number; to: number }[] = [];
  let offset = 0;
  for (const ref of chunks) {
    const chunkEnd = offset + ref[1];
    if (chunkEnd > range.start && offset < range.end) {
      found.push({
        ref,
        from: Math.max(0, range.start - offset),
        to: Math.min(ref[1], range.end - offset),
      });
    }
    if (chunkEnd >= range.end) break;
    offset = chunkEnd;
  }
  return found;
}

export class ChunkFetcher {
  readonly #options: FetcherOptions;
  readonly #counters: FetchCounters;
  /** Bytes a full restore will stream, for the progress bar's ETA (null for single files). */
  total: number | null = null;
  /** The chunk last fetched for a range, since neighbouring entries often share it. */
  #last: { id: string; plain: Buffer } | null = null;
  /** Kept decompressors (blob.ts says why). */
  readonly #decoders = new ZstdDecoders();

  constructor(options: FetcherOptions, counters: FetchCounters) {
    this.#options = options;
    this.#counters = counters;
  }

  async #get([id, size]: ChunkRef): Promise<Buffer> {
    const plain = await readChunk(this.#options.client, id, this.#options.keys, {
      decoders: this.#decoders,
    });
    if (plain.length !== size) {
      throw inputError(
        "LB_REPO_CORRUPT_CHUNK",
        `Chunk ${id} has ${plain.length} bytes, the manifest says ${size}.`,
        "Run 'lifeboat verify --read-data' to find the damage.",
      );
    }
    return plain;
  }

  async fetch(ref: ChunkRef): Promise<Buffer> {
    if (this.#last?.id === ref[0]) return this.#last.plain;
    const plain = await this.#get(ref);
    this.#counters.chunks++;
    this.#last = { id: ref[0], plain };
    return plain;
  }

  /** A stream's plaintext, chunk by chunk, fetched ahead in parallel and yielded in order. */
  stream(chunks: ChunkRef[], item: string, parallel?: number): AsyncGenerator<Buffer> {
    return this.slice(chunks, { start: 0, end: Number.POSITIVE_INFINITY }, item, parallel);
  }

  /**
   * Bytes [start, end) of a stream, as they arrive: only the chunks that overlap the range
   * are fetched, ahead and in parallel, and yielded in order.
   */
  async *slice(
    chunks: ChunkRef[],
    range: { start: number; end: number },
    item: string,
    parallel = this.#options.parallel ?? 8,
    /** Count the bytes as restored (the file index, read to plan the restore, is not). */
    counted = true,
  ): AsyncGenerator<Buffer> {
    const needed = overlapping(chunks, range);
    for await (const { plain, from, to } of orderedMap(needed, parallel, async (n) => ({
      plain: await this.#get(n.ref),
      from: n.from,
      to: n.to,
    }))) {
      const part = from === 0 && to === plain.length ? plain : plain.subarray(from, to);
      this.#counters.chunks++;
      if (!counted) {
        yield part;
        continue;
      }
      this.#counters.bytes += part.length;
      this.#options.progress.update({
        phase: "restore",
        item,
        bytes: this.#counters.bytes,
        totalBytes: this.total,
      });
      yield part;
    }
  }

  /** A whole stream in one buffer (a file index), not counted as restored bytes. */
  async whole(chunks: ChunkRef[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    const all = { start: 0, end: Number.POSITIVE_INFINITY };
    for await (const part of this.slice(chunks, all, "index", undefined, false)) parts.push(part);
    return Buffer.concat(parts);
  }

  /** Bytes [start, end) of a stream in one buffer, fetching one chunk at a time. */
  async range(chunks: ChunkRef[], range: { start: number; end: number }): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (const { ref, from, to } of overlapping(chunks, range)) {
      parts.push((await this.fetch(ref)).subarray(from, to));
    }
    const data = Buffer.concat(parts);
    if (data.length !== range.end - range.start) {
      throw new Error(`range ${range.start}-${range.end} lies past the end of its stream`);
    }
    this.#counters.bytes += data.length;
    return data;
  }
}
