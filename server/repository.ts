// The repository as the server keeps it: catalog (SQLite) plus blob store (files), and the
// operations with their atomicity rules from docs/repository.md. Commits, the final step of
// an upload and garbage collection take one lock (shared for commits and uploads, exclusive
// for collection), so a commit never sees a chunk that a collection is deleting, and a
// re-upload never lands under a file about to be removed.

import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Readable } from "node:stream";
import { Catalog, CATALOG_FILE, type SnapshotRow } from "./catalog.ts";
import { applyRetention, checkRetentionPolicy, type RetentionPolicy } from "./retention.ts";
import { BlobStore, HttpError } from "./store.ts";

export const MAX_CHUNK_BLOB = 4 * 1024 * 1024 + 4096;
export const MAX_MANIFEST_BLOB = 256 * 1024 * 1024;

export interface RepositoryOptions {
  /** Idle time after which a pending snapshot expires (ms). */
  sessionTtlMs?: number;
  /** Unreferenced chunks younger than this are never collected (ms). */
  gcGraceMs?: number;
}

/**
 * Uploads and commits share the lock; garbage collection and forgetting take it alone. So
 * uploads land in parallel (their fsyncs overlap), while a collection never runs beside a
 * commit or an upload that could be putting back a chunk it is deleting.
 */
class SharedLock {
  #shared = 0;
  #exclusive = false;
  #waiting: { exclusive: boolean; start: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#shared--;
      this.#wake();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#exclusive = false;
      this.#wake();
    }
  }

  #acquire(exclusive: boolean): Promise<void> {
    // First come, first served: a waiting collection is not starved by a stream of uploads.
    if (this.#waiting.length === 0 && this.#free(exclusive)) {
      this.#take(exclusive);
      return Promise.resolve();
    }
    return new Promise((start) => this.#waiting.push({ exclusive, start }));
  }

  #free(exclusive: boolean) {
    return exclusive ? !this.#exclusive && this.#shared === 0 : !this.#exclusive;
  }

  #take(exclusive: boolean) {
    if (exclusive) this.#exclusive = true;
    else this.#shared++;
  }

  #wake() {
    while (this.#waiting.length > 0 && this.#free(this.#waiting[0]!.exclusive)) {
      const next = this.#waiting.shift()!;
      this.#take(next.exclusive);
      next.start();
    }
  }
}

export interface VerifyEvent {
  type: "progress" | "result";
  [key: string]: unknown;
}

export function newSnapshotId(now = Date.now()): string {
  // Time-sortable: 12 hex digits of milliseconds, then 8 random bytes.
  return now.toString(16).padStart(12, "0") + randomBytes(8).toString("hex");
}

export class Repository {
  readonly catalog: Catalog;
  readonly store: BlobStore;
  readonly sessionTtlMs: number;
  readonly gcGraceMs: number;
  readonly lock = new SharedLock();

  constructor(dataDir: string, options: RepositoryOptions = {}) {
    this.catalog = new Catalog(path.join(dataDir, CATALOG_FILE));
    this.store = new BlobStore(dataDir);
    this.sessionTtlMs = options.sessionTtlMs ?? 60 * 60_000;
    this.gcGraceMs = options.gcGraceMs ?? 60 * 60_000;
  }

  /** Start-up: empty tmp/, finish a collection a crash interrupted. */
  async open() {
    await this.store.init();
    await this.finishDeleting();
  }

  close() {
    this.catalog.close();
  }

  pendingFor(id: string, host: string): SnapshotRow {
    const row = this.catalog.snapshot(id);
    if (!row || row.host !== host) {
      throw new HttpError(
        404,
        "LB_SERVER_NO_SUCH_SNAPSHOT",
        `No snapshot ${id} for host ${host}.`,
        "Start a backup with POST /v1/snapshots.",
      );
    }
    if (row.state !== "pending") {
      throw new HttpError(
        409,
        "LB_SERVER_SNAPSHOT_COMMITTED",
        `Snapshot ${id} is already committed; it can't change.`,
        "Start a new snapshot.",
      );
    }
    if ((row.expires_at ?? 0) <= Date.now()) {
      throw new HttpError(
        410,
        "LB_SERVER_SESSION_EXPIRED",
        `The upload session of snapshot ${id} expired.`,
        "Run the backup again; chunks already uploaded are reused.",
      );
    }
    // Slide the expiry, but write it (an fsync'd transaction) at most about once a minute
    // per session, not on every chunk.
    const expiresAt = Date.now() + this.sessionTtlMs;
    if (expiresAt - (row.expires_at ?? 0) > Math.min(60_000, this.sessionTtlMs / 10)) {
      this.catalog.touchSnapshot(id, expiresAt);
    }
    return row;
  }

  createSnapshot(host: string, keyId: string | null, parent: string | null) {
    const id = newSnapshotId();
    const expiresAt = Date.now() + this.sessionTtlMs;
    this.catalog.createSnapshot({ id, host, keyId, parent, expiresAt });
    return { id, expiresAt: new Date(expiresAt).toISOString() };
  }

  async putChunk(
    snapshot: string,
    id: string,
    body: Readable,
    sha256: string,
  ): Promise<"created" | "present"> {
    const existing = this.catalog.chunk(id);
    if (existing?.state === "present" && (await this.store.exists("chunks", id))) {
      body.resume();
      this.catalog.holdChunk(snapshot, id);
      return "present";
    }
    const received = await this.store.receive(body, MAX_CHUNK_BLOB);
    if (received.sha256 !== sha256) {
      await this.store.discard(received.temp);
      throw new HttpError(
        400,
        "LB_SERVER_BLOB_HASH_MISMATCH",
        `Chunk ${id}: the body's SHA-256 is ${received.sha256}, the x-blob-sha256 header says ${sha256}.`,
        "The upload was damaged in transit; send it again.",
      );
    }
    return this.lock.shared(async () => {
      const now = this.catalog.chunk(id);
      if (now?.state === "present" && (await this.store.exists("chunks", id))) {
        await this.store.discard(received.temp);
        this.catalog.holdChunk(snapshot, id);
        return "present" as const;
      }
      await this.store.place("chunks", id, received.temp);
      this.catalog.recordChunk(snapshot, id, received.size, received.sha256);
      return "created" as const;
    });
  }

  async putManifest(snapshot: string, body: Readable, sha256: string) {
    const received = await this.store.receive(body, MAX_MANIFEST_BLOB);
    if (received.sha256 !== sha256) {
      await this.store.discard(received.temp);
      throw new HttpError(
        400,
        "LB_SERVER_BLOB_HASH_MISMATCH",
        `Manifest of ${snapshot}: the body's SHA-256 does not match x-blob-sha256.`,
        "Send it again.",
      );
    }
    await this.store.place("manifests", snapshot, received.temp);
    this.catalog.setManifest(snapshot, received.size, received.sha256);
  }

  async commit(snapshot: string, chunks: string[], stats: unknown, summary: unknown) {
    return this.lock.shared(async () => {
      const row = this.catalog.snapshot(snapshot)!;
      if (!row.manifest_hash || !(await this.store.exists("manifests", snapshot))) {
        throw new HttpError(
          409,
          "LB_SERVER_NO_MANIFEST",
          `Snapshot ${snapshot} has no manifest yet.`,
          "Upload it with PUT /v1/snapshots/{id}/manifest before committing.",
        );
      }
      const absent = this.catalog.absentChunks([...new Set(chunks)]);
      if (absent.length > 0) {
        throw new HttpError(
          409,
          "LB_SERVER_MISSING_CHUNKS",
          `Snapshot ${snapshot} references ${absent.length} chunk(s) the server does not have, e.g. ${absent.slice(0, 20).join(", ")}.`,
          "Upload them (ask POST /missing again) and commit again.",
        );
      }
      return this.catalog.commitSnapshot(snapshot, [...new Set(chunks)], stats, summary);
    });
  }

  async forget(ids: string[]) {
    await this.lock.exclusive(async () => {
      this.catalog.forgetSnapshots(ids);
      for (const id of ids) await this.store.remove("manifests", id);
    });
  }

  plan(host: string | null, policy: RetentionPolicy) {
    checkRetentionPolicy(policy);
    const rows = this.catalog.listSnapshots(host);
    const hosts = [...new Set(rows.map((r) => r.host))].sort();
    return hosts.map((h) => ({
      host: h,
      ...applyRetention(
        rows
          .filter((r) => r.host === h)
          .map((r) => ({ id: r.id, time: new Date(r.committed_at ?? r.created_at) })),
        policy,
      ),
    }));
  }

  /** Garbage collection, crash-safe: mark in one transaction, delete files, drop rows. */
  async collect(): Promise<{ chunks: number; bytes: number }> {
    return this.lock.exclusive(async () => {
      await this.store.releaseReserve();
      try {
        return await this.#collect();
      } finally {
        await this.store.keepReserve();
      }
    });
  }

  async #collect(): Promise<{ chunks: number; bytes: number }> {
    const now = Date.now();
    for (const id of this.catalog.expirePending(now)) await this.store.remove("manifests", id);
    this.catalog.markGarbage(now - this.gcGraceMs);
    const collected = await this.finishDeleting();
    // Files a crash left between rename and catalog insert: no row, so nothing refers to
    // them. Past the grace period they can't belong to an upload in flight either.
    const known = new Set(this.catalog.allChunks().map((c) => c.id));
    for (const id of await this.store.list("chunks")) {
      if (known.has(id)) continue;
      const info = await this.store.exists("chunks", id);
      if (info && info.mtimeMs < now - this.gcGraceMs) {
        await this.store.remove("chunks", id);
        collected.chunks++;
        collected.bytes += info.size;
      }
    }
    return collected;
  }

  async finishDeleting(): Promise<{ chunks: number; bytes: number }> {
    let chunks = 0;
    let bytes = 0;
    for (const row of this.catalog.deletingChunks()) {
      await this.store.remove("chunks", row.id);
      this.catalog.dropChunkRow(row.id);
      chunks++;
      bytes += row.size;
    }
    return { chunks, bytes };
  }

  /** Catalog and store agree? With readData, every blob is re-hashed. Yields progress. */
  async *verify(host: string | null, readData: boolean): AsyncGenerator<VerifyEvent> {
    const snapshots = this.catalog.listSnapshots(host);
    const refs = this.catalog.referencesOf(snapshots.map((s) => s.id));
    const rows = new Map(this.catalog.allChunks().map((c) => [c.id, c]));
    const missing: { id: string; snapshots: string[] }[] = [];
    const corrupt: { id: string; snapshots: string[] }[] = [];
    const manifestsMissing: string[] = [];
    for (const snapshot of snapshots) {
      const file = await this.store.exists("manifests", snapshot.id);
      if (!file || file.size !== snapshot.manifest_size) manifestsMissing.push(snapshot.id);
      else if (readData) {
        const hashed = await this.store.hashFile("manifests", snapshot.id);
        if (hashed?.sha256 !== snapshot.manifest_hash) manifestsMissing.push(snapshot.id);
      }
    }
    const total = refs.size;
    let totalBytes = 0;
    for (const id of refs.keys()) totalBytes += rows.get(id)?.size ?? 0;
    let done = 0;
    let bytes = 0;
    let lastReport = 0;
    for (const [id, users] of refs) {
      const row = rows.get(id);
      const file = row ? await this.store.exists("chunks", id) : null;
      if (!row || !file || file.size !== row.size) missing.push({ id, snapshots: users.sort() });
      else if (readData) {
        const hashed = await this.store.hashFile("chunks", id);
        if (hashed?.sha256 !== row.blob_hash) corrupt.push({ id, snapshots: users.sort() });
        bytes += row.size;
      }
      done++;
      if (performance.now() - lastReport > 500) {
        lastReport = performance.now();
        yield { type: "progress", done, total, bytes, totalBytes };
      }
    }
    let orphanFiles = 0;
    let orphanRows = 0;
    if (host === null) {
      const files = new Set(await this.store.list("chunks"));
      for (const name of files) if (!rows.has(name)) orphanFiles++;
      for (const id of rows.keys()) if (!files.has(id)) orphanRows++;
    }
    yield { type: "progress", done, total, bytes, totalBytes };
    const broken = new Set(
      [...missing, ...corrupt].flatMap((c) => c.snapshots).concat(manifestsMissing),
    );
    yield {
      type: "result",
      ok: missing.length === 0 && corrupt.length === 0 && manifestsMissing.length === 0,
      snapshots: snapshots.length,
      chunks: total,
      bytes,
      missing,
      corrupt,
      manifestsMissing,
      brokenSnapshots: [...broken].sort(),
      orphanFiles,
      orphanRows,
    };
  }
}
