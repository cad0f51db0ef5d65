// `lifeboat restore`: bring a snapshot's files back, whole or in part. The rescue system's
// recovery engine calls the same function after recreating the disks.
//
// Every chunk is checked twice before GNU tar sees a byte of it: the blob against the hash
// the server recorded (client side), and the decrypted plaintext against its chunk id. A
// damaged chunk stops the restore with an error naming it; wrong data is never written.

import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { orderedMap } from "../../common/concurrency.ts";
import { inputError } from "../../common/errors.ts";
import { decodeBlob } from "../../common/repository/blob.ts";
import { decodeIndex, selectEntries, type IndexEntry } from "../../common/repository/fileindex.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import { decodeManifest, type ChunkRef, type Manifest } from "../../common/repository/manifest.ts";
import type { SnapshotSource } from "../client/local.ts";
import type { Progress } from "../progress.ts";
import { extractTar } from "./extract.ts";

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
      for (const stream of fs.streams) {
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

class ChunkFetcher {
  readonly #options: RestoreOptions;
  readonly #counters: { bytes: number; chunks: number };
  /** Bytes a full restore will stream, for the progress bar's ETA (null for single files). */
  total: number | null = null;
  /** The chunk last fetched for a range, since neighbouring entries often share it. */
  #last: { id: string; plain: Buffer } | null = null;

  constructor(options: RestoreOptions, counters: { bytes: number; chunks: number }) {
    this.#options = options;
    this.#counters = counters;
  }

  async fetch(id: string): Promise<Buffer> {
    if (this.#last?.id === id) return this.#last.plain;
    const blob = await this.#options.client.getChunk(id);
    const plain = await decodeBlob(blob, id, this.#options.keys);
    this.#counters.chunks++;
    this.#last = { id, plain };
    return plain;
  }

  /** A stream's plaintext, chunk by chunk, fetched ahead in parallel and yielded in order. */
  async *stream(chunks: ChunkRef[], item: string): AsyncGenerator<Buffer> {
    const parallel = this.#options.parallel ?? 8;
    for await (const plain of orderedMap(chunks, parallel, async ([id, size]) => {
      const blob = await this.#options.client.getChunk(id);
      const data = await decodeBlob(blob, id, this.#options.keys);
      if (data.length !== size) {
        throw inputError(
          "LB_REPO_CORRUPT_CHUNK",
          `Chunk ${id} has ${data.length} bytes, the manifest says ${size}.`,
          "Run 'lifeboat verify --read-data' to find the damage.",
        );
      }
      return data;
    })) {
      this.#counters.bytes += plain.length;
      this.#counters.chunks++;
      this.#options.progress.update({
        phase: "restore",
        item,
        bytes: this.#counters.bytes,
        totalBytes: this.total,
      });
      yield plain;
    }
  }

  async whole(chunks: ChunkRef[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of this.stream(chunks, "index")) parts.push(part);
    return Buffer.concat(parts);
  }

  /** Bytes [start, end) of a stream, fetching only the chunks that overlap them. */
  async range(chunks: ChunkRef[], range: { start: number; end: number }): Promise<Buffer> {
    const parts: Buffer[] = [];
    let offset = 0;
    for (const [id, size] of chunks) {
      const chunkEnd = offset + size;
      if (chunkEnd > range.start && offset < range.end) {
        const plain = await this.fetch(id);
        parts.push(
          plain.subarray(Math.max(0, range.start - offset), Math.min(size, range.end - offset)),
        );
      }
      if (chunkEnd >= range.end) break;
      offset = chunkEnd;
    }
    const data = Buffer.concat(parts);
    if (data.length !== range.end - range.start) {
      throw new Error(`range ${range.start}-${range.end} lies past the end of its stream`);
    }
    this.#counters.bytes += data.length;
    return data;
  }
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
