// `lifeboat backup`: capture the layout, stream every local filesystem through GNU tar, cut
// the stream into content-defined chunks, upload the chunks the server lacks, and commit
// one snapshot. docs/repository.md is the format this writes.
//
// Order of durability: chunks (fsync'd by the server on upload) → file index and tar state
// (chunks too) → manifest → commit. The snapshot becomes visible only at the commit; if the
// agent dies before it, nothing is visible and the next backup reuses the uploaded chunks.

import { createHash } from "node:crypto";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { runTool } from "../../common/exec.ts";
import path from "node:path";
import { LIFEBOAT_VERSION } from "../../common/version.ts";
import { createChunker, gearTable } from "../../common/repository/chunker.ts";
import { encodeIndex, decodeIndex, mergeIndex } from "../../common/repository/fileindex.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import {
  encodeManifest,
  type ChunkRef,
  type Manifest,
  type Stream,
} from "../../common/repository/manifest.ts";
import { createTarIndexer } from "../../common/repository/tarindex.ts";
import type { Layout } from "../../layouts/schema.ts";
import type { ApiClient } from "../client/api.ts";
import type { Progress } from "../progress.ts";
import { withHooks, type HookRecord } from "./hooks.ts";
import { SlabChunkReader } from "./slabs.ts";
import { spawnTarCreate } from "./tar.ts";
import { backupTargets, excludesFor, type BackupTarget } from "./targets.ts";
import { loadChainState, lockBackups, promoteChainState, stagingDir, type Chain } from "./state.ts";
import { ChunkUploader } from "./upload.ts";

export interface BackupOptions {
  client: ApiClient;
  host: string;
  keys: RepoKeys | null;
  /** Back up only these paths instead of every local filesystem of the layout. */
  paths: string[];
  /** Extra exclude patterns (absolute paths or globs), on top of the defaults. */
  excludes: string[];
  hooks: { pre: string[]; post: string[] };
  stateDir: string;
  /** Start a new full stream after this many streams in a chain. */
  fullEvery: number;
  /** Captures the layout document; null when the caller chose not to (e.g. in tests). */
  captureLayout: (() => Promise<Layout>) | null;
  progress: Progress;
  /** Parallel blob uploads. */
  uploads?: number;
  signal?: AbortSignal;
}

export interface BackupSummary {
  id: string;
  host: string;
  /** Bytes of tar stream read, over all filesystems. */
  bytes: number;
  /** Plaintext bytes the repository did not have yet. */
  newBytes: number;
  /** Bytes of tar data the snapshot restores (all streams of every chain). */
  snapshotBytes: number;
  /** Of those, the bytes this run did not have to store (unchanged or deduplicated). */
  dedupBytes: number;
  /** Bytes actually stored, after compression and encryption. */
  storedBytes: number;
  files: number;
  seconds: number;
  filesystems: { mountPoint: string; level: number; bytes: number; files: number }[];
  hooks: HookRecord[];
  warnings: string[];
}

export async function runBackup(options: BackupOptions): Promise<BackupSummary> {
  const started = performance.now();
  const warnings: string[] = [];
  let summary: BackupSummary | null = null;
  const unlock = await lockBackups(options.stateDir, options.host);
  let hooks: HookRecord[];
  try {
    hooks = await withHooks(options.hooks, async (preHooks) => {
      summary = await backupOnce(options, started, warnings, preHooks);
    });
  } finally {
    await unlock();
  }
  if (!summary) throw new Error("backup finished without a result");
  const result: BackupSummary = summary;
  result.hooks = hooks;
  for (const hook of hooks.filter((h) => h.phase === "post" && h.exitCode !== 0)) {
    result.warnings.push(
      `post-backup hook failed (exit ${hook.exitCode ?? "none"}): ${hook.command}; the snapshot itself is complete.`,
    );
  }
  return result;
}

async function backupOnce(
  options: BackupOptions,
  started: number,
  warnings: string[],
  preHooks: HookRecord[],
): Promise<BackupSummary> {
  const { client, keys } = options;
  // The layout capture runs while the first filesystem streams; it only has to be ready for
  // the manifest. Path backups still record it when a capture function is given.
  const layoutPromise = options.captureLayout ? options.captureLayout() : Promise.resolve(null);
  layoutPromise.catch(() => {});
  const targets =
    options.paths.length > 0
      ? await backupTargets(null, { paths: options.paths })
      : await backupTargets(await layoutPromise, {});

  const chains = await Promise.all(
    targets.map((t) => loadChainState(options.stateDir, options.host, t.mountPoint)),
  );
  const parent = chains.find((c) => c !== null)?.chain.snapshot ?? null;
  const totalBytes = estimateBackupBytes(
    targets,
    chains.map((c) => c?.chain ?? null),
    options.paths.length > 0 ? null : await layoutPromise,
    options.fullEvery,
  );
  const session = await client.createSnapshot({
    host: options.host,
    keyId: keys?.keyId ?? null,
    parent,
  });
  const snapshot = session.id;
  const uploader = new ChunkUploader({
    client,
    snapshot,
    keys,
    uploads: options.uploads,
  });
  const gear = gearTable(keys?.chunkerKey);
  const filesystems: Manifest["filesystems"] = [];
  const newChains: Chain[] = [];
  const perFs: BackupSummary["filesystems"] = [];
  let streamedBytes = 0;

  for (const [i, target] of targets.entries()) {
    const result = await backupTarget({
      options,
      target,
      previous: chains[i] ?? null,
      snapshot,
      uploader,
      gear,
      warnings,
      onBytes: (n) => {
        streamedBytes += n;
        options.progress.update({
          phase: "backup",
          item: target.mountPoint,
          bytes: streamedBytes,
          totalBytes,
          newBytes: uploader.stats.newBytes,
        });
      },
    });
    filesystems.push(result.manifestEntry);
    newChains.push(result.chain);
    perFs.push({
      mountPoint: target.mountPoint,
      level: result.level,
      bytes: result.bytes,
      files: result.files,
    });
  }
  const layout = await layoutPromise;
  const luksHeaders = layout
    ? await backupLuksHeaders(layout, { gear, uploader, warnings }, options.stateDir)
    : [];
  await uploader.flush();
  options.progress.finish();

  const snapshotBytes = filesystems.reduce(
    (sum, fs) => sum + fs.streams.reduce((n, stream) => n + stream.size, 0),
    0,
  );
  const files = perFs.reduce((sum, f) => sum + f.files, 0);
  const seconds = (performance.now() - started) / 1000;
  const stats = {
    bytes: streamedBytes,
    newBytes: uploader.stats.newBytes,
    files,
    seconds,
  };
  const manifest: Manifest = {
    kind: "lifeboat/snapshot",
    version: 1,
    id: snapshot,
    host: options.host,
    createdAt: new Date().toISOString(),
    createdBy: `lifeboat ${LIFEBOAT_VERSION}`,
    parent,
    keyId: keys?.keyId ?? null,
    layout,
    filesystems,
    luksHeaders,
    // Post-hooks run after the commit, so only the pre-hooks are in the manifest.
    hooks: preHooks,
    stats,
  };
  const encoded = await encodeManifest(manifest, keys);
  await client.putManifest(snapshot, encoded.blob, encoded.sha256);
  await client.commit(snapshot, {
    chunks: [...referencedChunks(filesystems, luksHeaders)],
    stats,
    summary: {
      filesystems: perFs.map((f) => ({ mountPoint: f.mountPoint, level: f.level, bytes: f.bytes })),
      manifestId: encoded.id,
    },
  });
  // Only now, with the snapshot visible, does the local chain move forward.
  for (const chain of newChains) await promoteChainState(options.stateDir, chain);

  return {
    id: snapshot,
    host: options.host,
    bytes: streamedBytes,
    newBytes: uploader.stats.newBytes,
    snapshotBytes,
    dedupBytes: Math.max(0, snapshotBytes - uploader.stats.newBytes),
    storedBytes: uploader.stats.storedBytes,
    files,
    seconds: (performance.now() - started) / 1000,
    filesystems: perFs,
    hooks: [],
    warnings,
  };
}

interface TargetJob {
  options: BackupOptions;
  target: BackupTarget;
  previous: Awaited<ReturnType<typeof loadChainState>>;
  snapshot: string;
  uploader: ChunkUploader;
  gear: Uint32Array;
  warnings: string[];
  onBytes: (n: number) => void;
}

async function backupTarget(job: TargetJob) {
  const { options, target, uploader, snapshot } = job;
  const staging = await stagingDir(options.stateDir, options.host, target.mountPoint, snapshot);
  const snarFile = path.join(staging, "snar");
  const indexFile = path.join(staging, "index.ndjson");

  // Continue the chain when the local state is intact, not too long, and every chunk of
  // the earlier streams is still on the server (held for this snapshot from now on).
  let previous = job.previous;
  if (previous && (previous.chain.streams.length >= options.fullEvery || previous.chain.forceFull))
    previous = null;
  if (previous) {
    const earlier = previous.chain.streams.flatMap((s) => s.chunks.map(([id]) => id));
    const missing = await uploader.hold([...new Set(earlier)]);
    if (missing.length > 0) {
      job.warnings.push(
        `${target.mountPoint}: ${missing.length} chunks of the previous backup are gone from the server (pruned?); starting a full stream.`,
      );
      previous = null;
    }
  }
  if (previous) await copyFile(previous.snarFile, snarFile);
  const level = previous ? previous.chain.streams.length : 0;

  const indexer = createTarIndexer();
  const reader = new SlabChunkReader({
    chunker: { gear: job.gear },
    onData: (data) => indexer.push(data),
  });
  const tar = await spawnTarCreate(
    {
      dir: target.mountPoint,
      excludes: excludesFor(target, options.excludes),
      snarFile,
      signal: options.signal,
    },
    reader,
  );
  const refs: ChunkRef[] = [];
  let bytes = 0;
  try {
    for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
      bytes += chunk.data.length;
      job.onBytes(chunk.data.length);
      refs.push(await uploader.add(chunk.data, chunk.release));
    }
  } catch (error) {
    reader.destroy(error);
    await tar.done.catch(() => {});
    throw error;
  }
  const { warnings } = await tar.done;
  for (const warning of warnings) job.warnings.push(`${target.mountPoint}: ${warning}`);

  // The stream's entries and the parent index are passed, not kept: nothing holds them once
  // the merge is done, and at millions of files they are most of the memory a backup uses.
  const { entries: index, unresolved } = mergeIndex(
    previous ? decodeIndex(await readFile(previous.indexFile)) : null,
    indexer.end(),
    level,
  );
  // Names tar calls unchanged that the parent index lacks (a renamed directory): full
  // restore is unaffected, but the index can't place them; the next stream is a full one.
  const forceFull = unresolved.length > 0;
  if (forceFull) {
    job.warnings.push(
      `${target.mountPoint}: ${unresolved.length} unchanged entries (e.g. ${unresolved[0]}) are not in the previous index; the next backup of it will be a full stream.`,
    );
  }
  const indexBytes = encodeIndex(index);
  await writeFile(indexFile, indexBytes, { mode: 0o600 });
  const indexRefs = await chunkAll(indexBytes, job);
  const stateRefs = await chunkAll(await readFile(snarFile), job);

  const stream: Stream = { level, madeIn: snapshot, size: bytes, chunks: refs };
  const streams = [...(previous?.chain.streams ?? []), stream];
  return {
    level,
    bytes,
    files: index.length,
    chain: {
      kind: "lifeboat/chain",
      version: 1,
      host: options.host,
      mountPoint: target.mountPoint,
      snapshot,
      streams,
      forceFull,
    } satisfies Chain,
    manifestEntry: {
      mountPoint: target.mountPoint,
      device: target.device,
      fsType: target.fsType,
      excludes: excludesFor(target, options.excludes),
      streams,
      index: { entries: index.length, chunks: indexRefs },
      state: { chunks: stateRefs },
    } satisfies Manifest["filesystems"][number],
  };
}

async function chunkAll(
  data: Buffer,
  job: Pick<TargetJob, "gear" | "uploader">,
): Promise<ChunkRef[]> {
  const chunker = createChunker({ gear: job.gear });
  const refs: ChunkRef[] = [];
  for (const chunk of [...chunker.push(data), ...chunker.end()])
    refs.push(await job.uploader.add(chunk));
  return refs;
}

/**
 * A header backup of every LUKS device in the layout (cryptsetup luksHeaderBackup), stored
 * as chunks: if a header is damaged, the data behind it can only be opened with a copy.
 * The copy holds the keyslots, which need the passphrase; it never holds a passphrase.
 */
async function backupLuksHeaders(
  layout: Layout,
  job: Pick<TargetJob, "gear" | "uploader" | "warnings">,
  stateDir: string,
): Promise<Manifest["luksHeaders"]> {
  const headers: Manifest["luksHeaders"] = [];
  if (layout.luks.length === 0) return headers;
  const dir = await mkdtemp(path.join(stateDir, ".luks-"));
  try {
    for (const luks of layout.luks) {
      const file = path.join(dir, `${luks.uuid}.img`);
      try {
        await runTool([
          "cryptsetup",
          "luksHeaderBackup",
          luks.device,
          "--header-backup-file",
          file,
        ]);
        const data = await readFile(file);
        headers.push({
          device: luks.device,
          uuid: luks.uuid,
          sizeBytes: data.length,
          sha256: createHash("sha256").update(data).digest("hex"),
          chunks: await chunkAll(data, job),
        });
      } catch (error) {
        job.warnings.push(
          `LUKS header of ${luks.device} not backed up: ${(error as Error).message}`,
        );
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return headers;
}

/**
 * How many bytes a backup will stream, for the progress bar's ETA, when it can be known: a
 * full stream is about as big as the last chain was, or, the first time, as the used space
 * the layout records. Incremental streams are small and unpredictable: no estimate.
 */
export function estimateBackupBytes(
  targets: BackupTarget[],
  chains: (Chain | null)[],
  layout: Layout | null,
  fullEvery: number,
): number | null {
  let total = 0;
  for (const [i, target] of targets.entries()) {
    const chain = chains[i] ?? null;
    if (chain && chain.streams.length < fullEvery && !chain.forceFull) return null;
    if (chain) {
      total += chain.streams.reduce((sum, stream) => sum + stream.size, 0);
      continue;
    }
    const used = layout?.filesystems.find((fs) => fs.device === target.device)?.usage?.usedBytes;
    if (used === undefined) return null;
    total += used;
  }
  return total > 0 ? total : null;
}

/** Every chunk id a manifest references: streams, indexes, tar states and LUKS headers. */
export function referencedChunks(
  filesystems: Manifest["filesystems"],
  luksHeaders: Manifest["luksHeaders"] = [],
): Set<string> {
  const ids = new Set<string>();
  for (const header of luksHeaders) for (const [id] of header.chunks) ids.add(id);
  for (const fs of filesystems) {
    for (const stream of fs.streams) for (const [id] of stream.chunks) ids.add(id);
    for (const [id] of fs.index.chunks) ids.add(id);
    for (const [id] of fs.state.chunks) ids.add(id);
  }
  return ids;
}
