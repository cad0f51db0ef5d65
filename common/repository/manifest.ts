// The snapshot manifest (docs/repository.md, "Manifests"): what a snapshot holds, stored as a
// blob like a chunk (compressed, encrypted when the repository is). Its blob id is computed
// like a chunk id over the JSON bytes and sent to the server with the commit, so a reader
// can check the manifest it gets is the one that was committed.

import { z } from "zod";
import { inputError } from "../errors.ts";
import { LayoutSchema } from "../../layouts/schema.ts";
import { blobHash, chunkId, decodeBlob, encodeBlob } from "./blob.ts";
import type { RepoKeys } from "./keys.ts";

const ChunkIdSchema = z.string().regex(/^[0-9a-f]{64}$/);

/** A chunk reference: its id and its plaintext length. Order matters (stream order). */
export const ChunkRefSchema = z.tuple([ChunkIdSchema, z.number().int().nonnegative()]);
export type ChunkRef = z.infer<typeof ChunkRefSchema>;

/** One tar stream of a filesystem's chain: level 0 is full, later levels incremental. */
export const StreamSchema = z.object({
  level: z.number().int().nonnegative(),
  /** The snapshot whose backup wrote this stream. */
  madeIn: z.string(),
  /** Plaintext bytes of the stream. */
  size: z.number().int().nonnegative(),
  chunks: z.array(ChunkRefSchema),
});
export type Stream = z.infer<typeof StreamSchema>;

export const FilesystemBackupSchema = z.object({
  /** Where the tree was (and is restored to, under the restore target). */
  mountPoint: z.string(),
  device: z.string().nullable(),
  fsType: z.string().nullable(),
  excludes: z.array(z.string()),
  /** Extract in order to rebuild the tree as of this snapshot. */
  streams: z.array(StreamSchema),
  /** The NDJSON file index (fileindex.ts), chunked like a stream. */
  index: z.object({ entries: z.number().int().nonnegative(), chunks: z.array(ChunkRefSchema) }),
  /** GNU tar's incremental state after this backup, so any machine can continue the chain. */
  state: z.object({ chunks: z.array(ChunkRefSchema) }),
});

export const ManifestSchema = z.object({
  kind: z.literal("lifeboat/snapshot"),
  version: z.literal(1),
  id: z.string(),
  host: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  parent: z.string().nullable(),
  keyId: z.string().nullable(),
  /** The disk layout, to rebuild the machine; null for backups made without it. */
  layout: LayoutSchema.nullable(),
  filesystems: z.array(FilesystemBackupSchema),
  /** cryptsetup luksHeaderBackup of each LUKS device, for when a header is damaged. */
  luksHeaders: z
    .array(
      z.object({
        device: z.string(),
        uuid: z.string(),
        sizeBytes: z.number().int().nonnegative(),
        sha256: z.string(),
        chunks: z.array(ChunkRefSchema),
      }),
    )
    .default([]),
  hooks: z.array(
    z.object({
      phase: z.enum(["pre", "post"]),
      command: z.string(),
      exitCode: z.number().nullable(),
      seconds: z.number(),
    }),
  ),
  stats: z.object({
    bytes: z.number(),
    newBytes: z.number(),
    files: z.number(),
    seconds: z.number(),
  }),
});
export type Manifest = z.infer<typeof ManifestSchema>;
export type ManifestInput = z.input<typeof ManifestSchema>;

export async function encodeManifest(
  manifest: Manifest,
  keys: RepoKeys | null,
): Promise<{ id: string; blob: Buffer; sha256: string }> {
  const plain = Buffer.from(JSON.stringify(ManifestSchema.parse(manifest)));
  const id = chunkId(plain, keys);
  const blob = await encodeBlob(plain, id, keys);
  return { id, blob, sha256: blobHash(blob) };
}

export async function decodeManifest(
  blob: Buffer,
  id: string,
  keys: RepoKeys | null,
): Promise<Manifest> {
  const plain = await decodeBlob(blob, id, keys);
  const bad = (why: string) =>
    inputError(
      "LB_REPO_BAD_MANIFEST",
      `Manifest ${id} does not match the snapshot format: ${why}.`,
      "It was written by another version of Lifeboat; restore it with that version.",
    );
  let value: unknown;
  try {
    value = JSON.parse(plain.toString("utf8"));
  } catch (error) {
    throw bad(`not JSON (${(error as Error).message})`);
  }
  const result = ManifestSchema.safeParse(value);
  if (!result.success) {
    throw bad(
      result.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join(".")}: ${i.message}`)
        .join("; "),
    );
  }
  return result.data;
}
