// The upload side of a backup: chunks come in, in stream order; each gets its id at once
// (the manifest needs the order), then the server is asked in batches which ids it lacks, and
// only those are encoded (zstd, AES-GCM) and uploaded, several at a time. A byte budget holds
// the producer (GNU tar) back when the network or the server is slower than the disk.

import { ByteBudget } from "../../common/concurrency.ts";
import {
  DEFAULT_ZSTD_LEVEL,
  blobHash,
  chunkId,
  encodeBlobParts,
} from "../../common/repository/blob.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import type { ChunkRef } from "../../common/repository/manifest.ts";
import type { ApiClient } from "../client/api.ts";

export interface UploadStats {
  /** Plaintext bytes of every chunk seen. */
  bytes: number;
  /** Plaintext bytes of chunks the repository did not have. */
  newBytes: number;
  /** Bytes of the blobs uploaded (after compression and encryption). */
  storedBytes: number;
  chunks: number;
  newChunks: number;
}

export interface UploaderOptions {
  client: ApiClient;
  snapshot: string;
  keys: RepoKeys | null;
  /** Blob uploads in flight. */
  uploads?: number;
  /** Plaintext bytes waiting or in flight before the producer has to wait. */
  budgetBytes?: number;
  /** zstd level. */
  level?: number;
}

interface Pending {
  id: string;
  plain: Buffer;
}

const BATCH = 64;
const CHECKS_IN_FLIGHT = 2;

export class ChunkUploader {
  readonly stats: UploadStats = { bytes: 0, newBytes: 0, storedBytes: 0, chunks: 0, newChunks: 0 };
  readonly #options: Required<Omit<UploaderOptions, "keys">> & { keys: RepoKeys | null };
  readonly #budget: ByteBudget;
  /** Ids already handled in this backup (asked about, or uploaded). */
  readonly #seen = new Set<string>();
  #queue: Pending[] = [];
  #checks = 0;
  #uploads = 0;
  #uploadQueue: Pending[] = [];
  #error: unknown = null;
  #idle: (() => void)[] = [];

  constructor(options: UploaderOptions) {
    this.#options = {
      ...options,
      uploads: options.uploads ?? 4,
      budgetBytes: options.budgetBytes ?? 32 * 1048576,
      level: options.level ?? DEFAULT_ZSTD_LEVEL,
    };
    this.#budget = new ByteBudget(this.#options.budgetBytes);
  }

  /** Take the next chunk of a stream; returns its reference for the manifest. */
  async add(plain: Buffer): Promise<ChunkRef> {
    this.#throwIfFailed();
    const id = chunkId(plain, this.#options.keys);
    this.stats.bytes += plain.length;
    this.stats.chunks++;
    if (!this.#seen.has(id)) {
      this.#seen.add(id);
      await this.#budget.acquire(plain.length);
      this.#throwIfFailed();
      this.#queue.push({ id, plain });
      this.#pump();
    }
    return [id, plain.length];
  }

  /**
   * Make sure the server holds these ids for this snapshot (chunks of earlier streams of an
   * incremental chain). Returns the ones it does not have.
   */
  async hold(ids: string[]): Promise<string[]> {
    const missing: string[] = [];
    for (let i = 0; i < ids.length; i += 10000) {
      const batch = ids.slice(i, i + 10000);
      missing.push(...(await this.#options.client.missing(this.#options.snapshot, batch)));
    }
    for (const id of ids) this.#seen.add(id);
    return missing;
  }

  /** Wait until every chunk given so far is on the server; throws the first failure. */
  async flush(): Promise<void> {
    this.#pump();
    while (this.#busy()) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
    this.#throwIfFailed();
  }

  #busy(): boolean {
    if (this.#error !== null) return this.#checks > 0 || this.#uploads > 0;
    return (
      this.#queue.length > 0 ||
      this.#uploadQueue.length > 0 ||
      this.#checks > 0 ||
      this.#uploads > 0
    );
  }

  #notify() {
    if (this.#busy()) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #fail(error: unknown) {
    this.#error ??= error;
    // Drop the work nobody will do, and give its budget back, so that a producer waiting
    // for budget wakes up and sees the failure.
    const dropped = [...this.#queue.splice(0), ...this.#uploadQueue.splice(0)];
    this.#budget.release(dropped.reduce((sum, p) => sum + p.plain.length, 0));
    this.#notify();
  }

  #throwIfFailed() {
    if (this.#error !== null) throw this.#error;
  }

  #pump() {
    while (this.#error === null && this.#checks < CHECKS_IN_FLIGHT && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, BATCH);
      this.#checks++;
      this.#check(batch)
        .catch((error: unknown) => this.#fail(error))
        .finally(() => {
          this.#checks--;
          this.#pump();
          this.#notify();
        });
    }
  }

  async #check(batch: Pending[]) {
    let missing: Set<string>;
    try {
      missing = new Set(
        await this.#options.client.missing(
          this.#options.snapshot,
          batch.map((p) => p.id),
        ),
      );
    } catch (error) {
      this.#budget.release(batch.reduce((sum, p) => sum + p.plain.length, 0));
      throw error;
    }
    for (const pending of batch) {
      if (missing.has(pending.id)) this.#uploadQueue.push(pending);
      else this.#budget.release(pending.plain.length);
    }
    this.#startUploads();
  }

  #startUploads() {
    while (
      this.#error === null &&
      this.#uploads < this.#options.uploads &&
      this.#uploadQueue.length > 0
    ) {
      const pending = this.#uploadQueue.shift()!;
      this.#uploads++;
      this.#upload(pending)
        .catch((error: unknown) => this.#fail(error))
        .finally(() => {
          this.#uploads--;
          this.#budget.release(pending.plain.length);
          this.#startUploads();
          this.#notify();
        });
    }
  }

  async #upload({ id, plain }: Pending) {
    const parts = await encodeBlobParts(plain, id, this.#options.keys, {
      level: this.#options.level,
    });
    await this.#options.client.putChunk(this.#options.snapshot, id, parts, blobHash(parts));
    this.stats.newBytes += plain.length;
    this.stats.storedBytes += parts.reduce((sum, part) => sum + part.length, 0);
    this.stats.newChunks++;
  }
}
