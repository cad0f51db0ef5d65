// Level 3 of a drill: a sample of regular files whose SHA-256 the restored machine must
// reproduce. The expected hashes come from the snapshot itself: the file index says where
// each file's tar member lies in its stream, only the chunks covering those bytes are
// fetched and decrypted, and tar-stream reads the member's content.
//
// Files are drawn from places a first boot doesn't rewrite (/usr, /etc minus the files
// recovery or DHCP may touch), regular and not sparse, at most 4 MiB, chosen by a hash of
// the drill id so a rerun of the same drill checks the same files.

import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import tarStream from "tar-stream";
import { readChunk, type SnapshotSource } from "../../agent/client/local.ts";
import { decodeIndex, entryPath, type IndexEntry } from "../../common/repository/fileindex.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import type { ChunkRef, Manifest } from "../../common/repository/manifest.ts";
import { IDENTIFIER_FILES } from "../../rescue/recover/identifiers.ts";

const MAX_SAMPLE_BYTES = 4 * 1024 * 1024;
const SAMPLED_TREES = ["/usr/", "/etc/"];
const CHANGED_AT_BOOT = new Set([
  "/etc/resolv.conf",
  "/etc/adjtime",
  "/etc/mtab",
  "/etc/machine-id",
  "/etc/hostname",
  ...IDENTIFIER_FILES.map((f) => `/${f}`),
]);

export interface SampleFile {
  path: string;
  fs: Manifest["filesystems"][number];
  entry: IndexEntry;
}

function absolutePath(mountPoint: string, entry: IndexEntry): string | null {
  const raw = entryPath(entry);
  const text = raw.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(raw)) return null; // non-UTF-8 names: skip
  const relative = text.replace(/^(\.\/)+/, "").replace(/^\/+/, "");
  return mountPoint === "/" ? `/${relative}` : `${mountPoint}/${relative}`;
}

/** The candidates, in a stable order that depends on the seed (pure). */
export function chooseSamples(
  filesystems: { fs: Manifest["filesystems"][number]; index: IndexEntry[] }[],
  count: number,
  seed: string,
  trees: readonly string[] = SAMPLED_TREES,
): SampleFile[] {
  const candidates: (SampleFile & { rank: string })[] = [];
  for (const { fs, index } of filesystems) {
    for (const entry of index) {
      if (entry.t !== "f" || entry.s === 0 || entry.s > MAX_SAMPLE_BYTES) continue;
      // A member much shorter than its file's size holds a sparse map, not the bytes.
      if (entry.n < entry.s) continue;
      const file = absolutePath(fs.mountPoint, entry);
      if (!file || CHANGED_AT_BOOT.has(file)) continue;
      if (!trees.some((tree) => file.startsWith(tree))) continue;
      const rank = createHash("sha256").update(`${seed}\0${file}`).digest("hex");
      candidates.push({ path: file, fs, entry, rank });
    }
  }
  return candidates
    .sort((a, b) => a.rank.localeCompare(b.rank))
    .slice(0, count)
    .map(({ rank: _rank, ...sample }) => sample);
}

async function chunkBytes(
  source: SnapshotSource,
  keys: RepoKeys | null,
  chunks: ChunkRef[],
  range?: { start: number; end: number },
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [id, size] of chunks) {
    const end = offset + size;
    if (!range || (end > range.start && offset < range.end)) {
      const plain = await readChunk(source, id, keys);
      parts.push(
        range
          ? plain.subarray(Math.max(0, range.start - offset), Math.min(size, range.end - offset))
          : plain,
      );
    }
    if (range && end >= range.end) break;
    offset = end;
  }
  return Buffer.concat(parts);
}

/** SHA-256 of the one regular file in a tar member's bytes (null: not readable as one). */
export async function hashMember(member: Buffer): Promise<string | null> {
  const extract = tarStream.extract();
  let digest: string | null = null;
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const sparse = Object.keys(header.pax ?? {}).some((k) => k.startsWith("GNU.sparse"));
      const hash = createHash("sha256");
      stream.on("data", (data: unknown) => void hash.update(data as Buffer));
      stream.on("end", () => {
        if (digest === null && header.type === "file" && !sparse) digest = hash.digest("hex");
        next();
      });
      stream.resume();
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([member, Buffer.alloc(1024)]).pipe(extract);
  await done.catch(() => (digest = null));
  return digest;
}

/** Picks up to `count` files and returns their expected SHA-256 by absolute path. */
export async function sampleFileHashes(options: {
  source: SnapshotSource;
  manifest: Manifest;
  keys: RepoKeys | null;
  count: number;
  seed: string;
  /** Where files may be drawn from (default /usr/ and /etc/). */
  trees?: readonly string[];
}): Promise<Map<string, string>> {
  const filesystems = [];
  for (const fs of options.manifest.filesystems) {
    const index = decodeIndex(await chunkBytes(options.source, options.keys, fs.index.chunks));
    filesystems.push({ fs, index });
  }
  const out = new Map<string, string>();
  for (const sample of chooseSamples(filesystems, options.count, options.seed, options.trees)) {
    const stream = sample.fs.streams[sample.entry.k];
    if (!stream) continue;
    const member = await chunkBytes(options.source, options.keys, stream.chunks, {
      start: sample.entry.o,
      end: sample.entry.o + sample.entry.n,
    });
    const digest = await hashMember(member);
    if (digest) out.set(sample.path, digest);
  }
  return out;
}
