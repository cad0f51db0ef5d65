// Parallel extraction of a full stream. One GNU tar writing a whole filesystem is bound by
// the kernel's work per file (create, write, chown, set xattrs, utimes), and it uses one
// CPU. The file index says where entries start in the stream, so the stream can be cut at
// entry boundaries into pieces that several tar processes extract at once, each from its
// own byte range, fetched with its own read-ahead.
//
// What one tar over the whole stream does that pieces extracted side by side can't:
// - A hard link needs its target to exist, and the target may be in a piece still being
//   written. A piece's tar may fail on a hard link ("Cannot hard link to"); every hard link
//   of the stream is replayed after all pieces, so each one exists in the end.
// - A directory's mtime changes whenever a file is created in it, by whichever tar. When the
//   stream is the last of its chain, every directory entry is replayed after the pieces (and
//   after the hard links), with --listed-incremental as a sequential restore would, so the
//   times, modes and owners are the archive's. When later streams follow, they carry every
//   directory again and set them last.
// The bytes replayed (hard links and directories with their GNU.dumpdir lists) are captured
// while the pieces flow past, so nothing is fetched twice. Missing parent directories are
// created by whichever tar needs them first (GNU tar treats one that already exists as
// made), and set right by the replay.
//
// Cut points come from the file index (entries of stream 0, still in the snapshot): a cut
// is always the start of an entry. Entries the index no longer lists (changed or deleted
// later in the chain) lie between cut points and are extracted like any other, as the later
// streams expect.

import { forEachLimit } from "../../common/concurrency.ts";
import { createTarIndexer, type TarEntry } from "../../common/repository/tarindex.ts";
import type { ChunkRef } from "../../common/repository/manifest.ts";
import type { ChunkFetcher } from "./fetch.ts";
import { extractTar } from "./extract.ts";

/** Below this, one tar is as fast: the pieces' start-up costs more than they save. */
export const PARALLEL_MIN_BYTES = 64 * 1048576;
/** Pieces are at least a quarter of the smallest stream cut, so read-ahead has room. */
export function pieceMinBytes(streamMinBytes: number): number {
  return Math.max(1, Math.floor(streamMinBytes / 4));
}
/** Pieces per extractor: the queue evens out pieces of many small files against big ones. */
export const PIECES_PER_EXTRACTOR = 3;

export interface Range {
  start: number;
  end: number;
}

/**
 * Offsets of the entries of stream 0 from a file index (NDJSON), read without the full
 * schema: only `k` and `o` matter here, and a wrong offset can't pass unnoticed (tar finds
 * no header there and fails). Null when the index doesn't read as one.
 */
export function streamZeroOffsets(index: Buffer): number[] | null {
  const offsets: number[] = [];
  for (const line of index.toString("utf8").split("\n")) {
    if (line === "") continue;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      return null;
    }
    const { k, o } = (entry ?? {}) as { k?: unknown; o?: unknown };
    if (typeof k !== "number" || typeof o !== "number" || !Number.isInteger(o) || o < 0)
      return null;
    if (k === 0) offsets.push(o);
  }
  return offsets.sort((a, b) => a - b);
}

/**
 * Cut a stream of `size` bytes into at most `count` ranges at entry starts, of roughly even
 * size and at least `minBytes` each (the last may be smaller). Together the ranges cover
 * every byte of the stream, in order. One range when there is nothing to gain.
 */
export function planPieces(
  offsets: number[],
  size: number,
  count: number,
  minBytes: number,
): Range[] {
  const pieces = Math.max(1, Math.min(count, Math.floor(size / minBytes)));
  const cuts = [0];
  let next = 0;
  for (let i = 1; i < pieces; i++) {
    const wanted = Math.round((size * i) / pieces);
    while (next < offsets.length && offsets[next]! < wanted) next++;
    const cut = offsets[next];
    if (cut === undefined || cut >= size) break;
    if (cut - cuts[cuts.length - 1]! >= minBytes) cuts.push(cut);
  }
  return cuts.map((start, i) => ({ start, end: cuts[i + 1] ?? size }));
}

export interface ParallelExtractOptions {
  fetcher: ChunkFetcher;
  chunks: ChunkRef[];
  pieces: Range[];
  extractors: number;
  /** Replay the stream's directories at the end (it is the last stream of its chain). */
  lastStream: boolean;
  target: string;
  within: string;
  item: string;
  /** Chunk downloads in flight in all, shared among the extractors. */
  parallel: number;
  signal?: AbortSignal;
}

interface Replay {
  offset: number;
  type: TarEntry["type"];
  raw: Buffer;
}

/** A hard link whose target was not there yet; the replay makes it. */
const LINK_NOT_YET = /: Cannot hard link to .*: No such file or directory$/;

export async function extractPieces(options: ParallelExtractOptions): Promise<void> {
  const replay: Replay[] = [];
  const perPiece = Math.max(2, Math.ceil(options.parallel / options.extractors));
  await forEachLimit(options.pieces, options.extractors, async (piece) => {
    const indexer = createTarIndexer({
      keep: (e) => e.type === "h" || (options.lastStream && e.type === "d"),
      capture: () => true,
    });
    const fetcher = options.fetcher;
    async function* bytes(): AsyncGenerator<Buffer> {
      for await (const part of fetcher.slice(options.chunks, piece, options.item, perPiece)) {
        indexer.push(part);
        yield part;
      }
      // A piece in the middle of the stream has no end-of-archive blocks of its own.
      yield Buffer.alloc(1024);
    }
    await extractTar({
      target: options.target,
      input: bytes(),
      incremental: false,
      within: options.within,
      signal: options.signal,
      tolerate: LINK_NOT_YET,
    });
    for (const entry of indexer.end()) {
      replay.push({ offset: piece.start + entry.offset, type: entry.type, raw: entry.raw! });
    }
  });
  if (replay.length === 0) return;
  // Links first (their targets are all there now), then directories, parents first, so that
  // nothing is created inside a directory after its time was set.
  const order = (e: Replay) => (e.type === "h" ? 0 : 1);
  replay.sort((a, b) => order(a) - order(b) || a.offset - b.offset);
  await extractTar({
    target: options.target,
    input: [...replay.map((e) => e.raw), Buffer.alloc(1024)],
    incremental: options.lastStream,
    within: options.within,
    signal: options.signal,
  });
}
