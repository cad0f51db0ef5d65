// A snapshot exported to a directory, readable without a server: what `rescue build --embed`
// puts on the rescue medium for offline recovery, and what `lifeboat snapshot export` writes
// for an air-gapped copy. The blobs are copied exactly as the server stores them, so an
// encrypted snapshot stays encrypted and every chunk is still checked against its id.
//
//   DIR/export.json     {kind, version, snapshot (as the server describes it), manifestSha256, chunks}
//   DIR/manifest        the manifest blob
//   DIR/chunks/<id>     every chunk the snapshot references (streams, file index, LUKS headers)
//
// export.json is written last, after every blob is on disk, so a directory with it is
// complete; an interrupted export is refused, not half-used.

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { SnapshotInfoSchema, type SnapshotInfo } from "../../common/api.ts";
import { forEachLimit } from "../../common/concurrency.ts";
import { inputError } from "../../common/errors.ts";
import { decodeBlob, type ZstdDecoders } from "../../common/repository/blob.ts";
import { decodeManifest, type Manifest } from "../../common/repository/manifest.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import type { ApiClient } from "./api.ts";
import { DataDirSource } from "./datadir.ts";

/**
 * What restore and recovery read: a server (ApiClient), an exported snapshot, or a server's
 * data directory. `checkChunk` is for sources whose blobs reach decoding unhashed (a data
 * directory's getChunk, a server's getChunkToDecode; decoding checks them anyway): asked
 * when a blob does not decode, it throws the error that names where the damage is (a
 * stored file, or the way from the server), and returns if the blob is as stored.
 */
export type SnapshotSource = Pick<
  ApiClient,
  "listSnapshots" | "getSnapshot" | "getManifest" | "getChunk"
> & {
  checkChunk?(id: string, blob: Buffer): void;
  /** The blob for decoding, unhashed, where a source's getChunk would hash it. */
  getChunkToDecode?(id: string): Promise<Buffer>;
};

/** A chunk's plaintext from any source, checked against its id (decodeBlob). */
export async function readChunk(
  source: SnapshotSource,
  id: string,
  keys: RepoKeys | null,
  options: { decoders?: ZstdDecoders } = {},
): Promise<Buffer> {
  const blob = source.getChunkToDecode
    ? await source.getChunkToDecode(id)
    : await source.getChunk(id);
  try {
    return await decodeBlob(blob, id, keys, options);
  } catch (error) {
    source.checkChunk?.(id, blob);
    throw error;
  }
}

const ExportSchema = z.object({
  kind: z.literal("lifeboat/snapshot-export"),
  version: z.literal(1),
  snapshot: SnapshotInfoSchema,
  manifestSha256: z.string().regex(/^[0-9a-f]{64}$/),
  chunks: z.number().int().nonnegative(),
});

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Every chunk id a manifest references, once. */
export function manifestChunks(manifest: Manifest): string[] {
  const ids = new Set<string>();
  for (const fs of manifest.filesystems) {
    for (const stream of fs.streams) for (const [id] of stream.chunks) ids.add(id);
    for (const [id] of fs.index.chunks) ids.add(id);
  }
  for (const header of manifest.luksHeaders) for (const [id] of header.chunks) ids.add(id);
  return [...ids];
}

export async function exportSnapshot(options: {
  client: ApiClient;
  keys: RepoKeys | null;
  snapshot: string;
  dir: string;
  onChunk?: (done: number, total: number) => void;
}): Promise<{ chunks: number; bytes: number }> {
  const { client, dir } = options;
  const info = await client.getSnapshot(options.snapshot);
  if (!info.manifestId) {
    throw inputError(
      "LB_REPO_BAD_MANIFEST",
      `Snapshot ${options.snapshot} has no manifest id; it can't be exported.`,
    );
  }
  const blob = await client.getManifest(info.id);
  const manifest = await decodeManifest(blob, info.manifestId, options.keys);
  await mkdir(path.join(dir, "chunks"), { recursive: true });
  await writeFile(path.join(dir, "manifest"), blob);
  const ids = manifestChunks(manifest);
  let done = 0;
  let bytes = blob.length;
  await forEachLimit(ids, 8, async (id) => {
    const data = await client.getChunk(id);
    await writeFile(path.join(dir, "chunks", id), data);
    bytes += data.length;
    options.onChunk?.(++done, ids.length);
  });
  const description = ExportSchema.parse({
    kind: "lifeboat/snapshot-export",
    version: 1,
    snapshot: info,
    manifestSha256: sha256(blob),
    chunks: ids.length,
  });
  const temp = path.join(dir, "export.json.tmp");
  await writeFile(temp, `${JSON.stringify(description, null, 2)}\n`);
  await rename(temp, path.join(dir, "export.json"));
  return { chunks: ids.length, bytes };
}

/**
 * `--from DIR`: a snapshot export (it has export.json) or a server's data directory (it has
 * the catalog), read without a server.
 */
export async function openDirectorySource(dir: string): Promise<SnapshotSource> {
  if (!existsSync(path.join(dir, "export.json")) && DataDirSource.holdsCatalog(dir)) {
    return DataDirSource.open(dir);
  }
  return LocalSnapshotSource.open(dir);
}

/** An exported snapshot as a read-only source for restore and recovery. */
export class LocalSnapshotSource implements SnapshotSource {
  readonly dir: string;
  readonly #info: SnapshotInfo;
  readonly #manifestSha256: string;

  private constructor(dir: string, info: SnapshotInfo, manifestSha256: string) {
    this.dir = dir;
    this.#info = info;
    this.#manifestSha256 = manifestSha256;
  }

  static async open(dir: string): Promise<LocalSnapshotSource> {
    const file = path.join(dir, "export.json");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      throw inputError(
        "LB_EXPORT_INCOMPLETE",
        `${dir} holds neither a complete snapshot export (${file} is missing) nor a server's catalog.`,
        "Point --from at a directory written by 'lifeboat snapshots export' (or the rescue medium's embedded snapshot; export again if it was interrupted), or at a server's data directory.",
      );
    }
    const parsed = ExportSchema.safeParse(JSON.parse(text));
    if (!parsed.success) {
      throw inputError(
        "LB_EXPORT_INVALID",
        `${file} is not a Lifeboat snapshot export: ${parsed.error.issues[0]?.message}.`,
      );
    }
    return new LocalSnapshotSource(dir, parsed.data.snapshot, parsed.data.manifestSha256);
  }

  async listSnapshots(host?: string): Promise<SnapshotInfo[]> {
    return host && host !== this.#info.host ? [] : [this.#info];
  }

  async getSnapshot(id: string): Promise<SnapshotInfo> {
    if (id !== this.#info.id) {
      throw inputError(
        "LB_RECOVER_NO_SNAPSHOT",
        `Snapshot ${id} is not in ${this.dir}; it holds ${this.#info.id}.`,
      );
    }
    return this.#info;
  }

  async getManifest(snapshot: string): Promise<Buffer> {
    await this.getSnapshot(snapshot);
    const blob = await readFile(path.join(this.dir, "manifest"));
    if (sha256(blob) !== this.#manifestSha256) {
      throw inputError(
        "LB_REPO_CORRUPT_MANIFEST",
        `The manifest in ${this.dir} is damaged (its SHA-256 does not match export.json).`,
        "Export the snapshot again.",
      );
    }
    return blob;
  }

  async getChunk(id: string): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`not a chunk id: ${id}`);
    try {
      return await readFile(path.join(this.dir, "chunks", id));
    } catch {
      throw inputError(
        "LB_REPO_MISSING_CHUNK",
        `Chunk ${id} is missing from ${this.dir}.`,
        "The export is incomplete; export the snapshot again.",
      );
    }
  }
}
