// `lifeboat restore`: bring a snapshot's files back, whole or in part. The rescue system's
// recovery engine calls the same function after recreating the disks.
//
// Every chunk is checked twice before GNU tar sees a byte of it: the blob against the hash
// the server recorded (client side), and the decrypted plaintext against its chunk id. A
// damaged chunk stops the restore with an error naming it; wrong data is never written.

import { availableParallelism } from "node:os";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { inputError } from "../../common/errors.ts";
import { decodeIndex, selectEntries, type IndexEntry } from "../../common/repository/fileindex.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import { decodeManifest, type Manifest } from "../../common/repository/manifest.ts";
import type { SnapshotSource } from "../client/local.ts";
import type { Progress } from "../progress.ts";
import { extractTar } from "./extract.ts";
import { ChunkFetcher } from "./fetch.ts";
import {
  PARALLEL_MIN_BYTES,
  PIECES_PER_EXTRACTOR,
  extractPieces,
  pieceMinBytes,
  planPieces,
  streamZeroOffsets,
  type Range,
} from "./parallel.ts";

export interface RestoreOptions {
  client: SnapshotSource;
  keys: RepoKeys | null;
  snapshot: string;
  /** Files land at TARGET/<mount point>/<path>. */
  target: string;
  /** Absolute paths as they were on the backed-up machine; empty = everything. */
  paths: string[];
  progress: Progress;
  /** Chunk downloads in flight (read-ahead). */
  parallel?: number;
  /**
   * tar processes extracting pieces of a big stream at once (parallel.ts). Default 1: one
   * tar per stream. On the machines measured so far the kernel's file-writing path did not
   * scale with more (bench/README.md), so more is something to choose where it does.
   */
  extractors?: number;
  /** Streams smaller than this are extracted by one tar (tests lower it). */
  parallelMinBytes?: number;
  signal?: AbortSignal;
}

export interface RestoreSummary {
  snapshot: string;
  bytes: number;
  chunks: number;
  files: number;
  seconds: number;
}

export async function loadManifest(
  client: SnapshotSource,
  snapshot: string,
  keys: RepoKeys | null,
): Promise<Manifest> {
  const info = await client.getSnapshot(snapshot);
  if (info.keyId !== (keys?.keyId ?? null)) {
    throw inputError(
      "LB_RESTORE_WRONG_KEY",
      info.keyId
        ? `Snapshot ${snapshot} is encrypted with key ${info.keyId}, and ${keys ? `the key given is ${keys.keyId}` : "no key was given"}.`
        : `Snapshot ${snapshot} is not encrypted, but a key was given.`,
      info.keyId
        ? "Pass the host's key file with --key-file (or keyFile in the agent config)."
        : "Restore it without --key-file.",
    );
  }
  if (!info.manifestId) {
    throw inputError(
      "LB_REPO_BAD_MANIFEST",
      `Snapshot ${snapshot} was committed without a manifest id.`,
      "It was not written by 'lifeboat backup'; it can't be restored with this version.",
    );
  }
  const blob = await client.getManifest(snapshot);
  return decodeManifest(blob, info.manifestId, keys);
}

export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = performance.now();
  await requireDirectory(options.target);
  const manifest = await loadManifest(options.client, options.snapshot, options.keys);
  const counters = { bytes: 0, chunks: 0, files: 0 };
  const fetcher = new ChunkFetcher(options, counters);
  const extractors = Math.max(1, Math.min(options.extractors ?? 1, 4 * availableParallelism()));
  // Parents before children: / before /boot before /boot/efi.
  const filesystems = [...manifest.filesystems].sort(
    (a, b) => depth(a.mountPoint) - depth(b.mountPoint),
  );
  if (options.paths.length === 0) {
    fetcher.total = filesystems.reduce(
      (sum, fs) => sum + fs.streams.reduce((n, stream) => n + stream.size, 0),
      0,
    );
    for (const fs of filesystems) {
      const dir = path.join(options.target, fs.mountPoint);
      await mkdir(dir, { recursive: true });
      const pieces = await piecesFor(fs, fetcher, extractors, options.parallelMinBytes);
      for (const [k, stream] of fs.streams.entries()) {
        if (k === 0 && pieces) {
          await extractPieces({
            fetcher,
            chunks: stream.chunks,
            pieces,
            extractors,
            lastStream: fs.streams.length === 1,
            target: dir,
            within: options.target,
            item: fs.mountPoint,
            parallel: options.parallel ?? 8,
            signal: options.signal,
          });
          continue;
        }
        await extractTar({
          target: dir,
          input: Readable.from(fetcher.stream(stream.chunks, fs.mountPoint)),
          incremental: true,
          // A stream extracted earlier (/) must not redirect this one (/boot) outside.
          within: options.target,
          signal: options.signal,
        });
      }
      counters.files += fs.index.entries;
    }
  } else {
    for (const [fs, relative] of assignPaths(filesystems, options.paths)) {
      const index = decodeIndex(await fetcher.whole(fs.index.chunks));
      const entries = selectEntries(index, relative);
      const dir = path.join(options.target, fs.mountPoint);
      await mkdir(dir, { recursive: true });
      await restoreEntries(fs, entries, dir, fetcher, options.signal, options.target);
      counters.files += entries.length;
    }
  }
  options.progress.finish();
  return {
    snapshot: options.snapshot,
    ...counters,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Single files: fetch only the chunks that hold the selected entries' bytes, cut the entries
 * out, and hand GNU tar a small archive of just those entries, stream by stream.
 */
async function restoreEntries(
  fs: Manifest["filesystems"][number],
  entries: IndexEntry[],
  dir: string,
  fetcher: ChunkFetcher,
  signal: AbortSignal | undefined,
  root: string,
) {
  const byStream = new Map<number, IndexEntry[]>();
  for (const entry of entries) {
    const list = byStream.get(entry.k) ?? [];
    list.push(entry);
    byStream.set(entry.k, list);
  }
  for (const k of [...byStream.keys()].sort((a, b) => a - b)) {
    const stream = fs.streams[k];
    if (!stream) throw new Error(`index entry names stream ${k}, which the manifest lacks`);
    const ranges = byStream
      .get(k)!
      .map((e) => ({ start: e.o, end: e.o + e.n }))
      .sort((a, b) => a.start - b.start);
    const parts: Buffer[] = [];
    for (const range of ranges) parts.push(await fetcher.range(stream.chunks, range));
    parts.push(Buffer.alloc(1024));
    await extractTar({
      target: dir,
      input: Readable.from(parts),
      incremental: false,
      within: root,
      signal,
    });
  }
}

/**
 * How to cut a filesystem's first stream for parallel extraction, or null for one tar: one
 * extractor, a small stream, or a file index that can't be read (a full restore does not
 * need it, so damage there must not stop one).
 */
async function piecesFor(
  fs: Manifest["filesystems"][number],
  fetcher: ChunkFetcher,
  extractors: number,
  minBytes = PARALLEL_MIN_BYTES,
): Promise<Range[] | null> {
  const size = fs.streams[0]?.size ?? 0;
  if (extractors < 2 || size < minBytes) return null;
  let offsets: number[] | null;
  try {
    offsets = streamZeroOffsets(await fetcher.whole(fs.index.chunks));
  } catch {
    return null;
  }
  if (!offsets) return null;
  const pieces = planPieces(
    offsets,
    size,
    extractors * PIECES_PER_EXTRACTOR,
    pieceMinBytes(minBytes),
  );
  return pieces.length > 1 ? pieces : null;
}

/** Which filesystem holds each requested path (the deepest mount point that contains it). */
export function assignPaths(
  filesystems: Manifest["filesystems"],
  paths: string[],
): [Manifest["filesystems"][number], string[]][] {
  const groups = new Map<Manifest["filesystems"][number], string[]>();
  for (const raw of paths) {
    if (!path.isAbsolute(raw)) {
      throw inputError(
        "LB_RESTORE_PATH_NOT_ABSOLUTE",
        `--path ${raw} is not an absolute path.`,
        "Give paths as they were on the backed-up machine, e.g. --path /etc/hosts.",
      );
    }
    const wanted = path.posix.normalize(raw);
    const owner = filesystems
      .filter((fs) => wanted === fs.mountPoint || wanted.startsWith(withSlash(fs.mountPoint)))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (!owner) {
      throw inputError(
        "LB_RESTORE_PATH_NOT_IN_SNAPSHOT",
        `${raw} is not under any filesystem in this snapshot (${filesystems.map((f) => f.mountPoint).join(", ")}).`,
        "Give a path under one of those mount points, as it was on the backed-up machine.",
      );
    }
    const relative = path.posix.relative(owner.mountPoint, wanted) || ".";
    const list = groups.get(owner) ?? [];
    list.push(relative);
    groups.set(owner, list);
  }
  return [...groups.entries()];
}

function withSlash(dir: string) {
  return dir.endsWith("/") ? dir : `${dir}/`;
}

function depth(mountPoint: string) {
  return mountPoint === "/" ? 0 : mountPoint.split("/").length;
}

async function requireDirectory(target: string) {
  const info = await stat(target).catch(() => null);
  if (!info?.isDirectory()) {
    throw inputError(
      "LB_RESTORE_TARGET",
      `Restore target ${target} is not an existing directory.`,
      `Create it first (mkdir -p ${target}) or pass another --target.`,
    );
  }
}
