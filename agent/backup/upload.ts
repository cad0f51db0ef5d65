// The upload side of a backup: chunks come in, in stream order; each gets its id at once
// (the manifest needs the order), then the server is asked in batches which ids it lacks, and
// only those are encoded (zstd, AES-GCM) and uploaded, several at a time. A byte budget holds
// the producer (GNU tar) back when the network or the server is slower than the disk.

import { ByteBudget } from "../../common/concurrency.ts";
import {
  DEFAULT_ZSTD_LEVEL,
  ZstdEncoders,
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
  /** The producer's buffer may be reused once the chunk is encoded and sent (slabs.ts). */
  release: (() => void) | undefined;
}

const BATCH = 64;
const CHECKS_IN_FLIGHT = 2;
/**
 * A check waits for this share of the budget in chunks, or for BATCH_WAIT_MS: asked one at
 * a time, a first backup made one request per chunk (measured: 702 checks for 704 chunks),
 * each costing the server an authentication and a transaction.
 */
const BATCH_SHARE = 1 / 4;
const BATCH_WAIT_MS = 100;

export class ChunkUploader {
  readonly stats: UploadStats = { bytes: 0, newBytes: 0, storedBytes: 0, chunks: 0, newChunks: 0 };
  readonly #options: Required<Omit<UploaderOptions, "keys">> & { keys: RepoKeys | null };
  readonly #budget: ByteBudget;
  readonly #encoders: ZstdEncoders;
  /** Ids already handled in this backup (asked about, or uploaded). */
  readonly #seen = new Set<string>();
  #queue: Pending[] = [];
  #queuedBytes = 0;
  #flushing = false;
  #batchTimer: NodeJS.Timeout | null = null;
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
    this.#encoders = new ZstdEncoders(this.#options.level);
  }

  /**
   * Take the next chunk of a stream; returns its reference for the manifest. `release` is
   * called once the uploader no longer needs `plain`: at once for a chunk it has seen, or
   * after the upload (or its failure).
   */
  async add(plain: Buffer, release?: () => void): Promise<ChunkRef> {
    const id = chunkId(plain, this.#options.keys);
    const ref: ChunkRef = [id, plain.length];
    this.stats.bytes += plain.length;
    this.stats.chunks++;
    if (this.#error !== null || this.#seen.has(id)) {
      release?.();
      this.#throwIfFailed();
      return ref;
    }
    this.#seen.add(id);
    const pending: Pending = { id, plain, release };
    try {
      await this.#budget.acquire(plain.length);
      this.#throwIfFailed();
    } catch (error) {
      release?.();
      throw error;
    }
    this.#queue.push(pending);
    this.#queuedBytes += plain.length;
    this.#pump();
    return ref;
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

  /**
   * Wait until every chunk given so far is on the server; throws the first failure. The
   * compressors are freed (a later chunk would get new ones).
   */
  async flush(): Promise<void> {
    this.#flushing = true;
    this.#pump();
    while (this.#busy()) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
    this.#encoders.close();
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
    for (const pending of [...this.#queue.splice(0), ...this.#uploadQueue.splice(0)])
      this.#finished(pending);
    this.#queuedBytes = 0;
    this.#notify();
  }

  /** The uploader is done with this chunk's plaintext: give back its budget and buffer. */
  #finished(pending: Pending) {
    this.#budget.release(pending.plain.length);
    pending.release?.();
  }

  #throwIfFailed() {
    if (this.#error !== null) throw this.#error;
  }

  #pump(waited = false) {
    while (this.#error === null && this.#checks < CHECKS_IN_FLIGHT && this.#queue.length > 0) {
      const small =
        this.#queue.length < BATCH && this.#queuedBytes < this.#options.budgetBytes * BATCH_SHARE;
      if (small && !waited && !this.#flushing) {
        this.#batchTimer ??= setTimeout(() => {
          this.#batchTimer = null;
          this.#pump(true);
        }, BATCH_WAIT_MS);
        return;
      }
      const batch = this.#queue.splice(0, BATCH);
      for (const pending of batch) this.#queuedBytes -= pending.plain.length;
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
      for (const pending of batch) this.#finished(pending);
      throw error;
    }
    for (const pending of batch) {
      if (missing.has(pending.id)) this.#uploadQueue.push(pending);
      else this.#finished(pending);
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
          this.#finished(pending);
          this.#startUploads();
          this.#notify();
        });
    }
  }

  async #upload({ id, plain }: Pending) {
    const parts = await encodeBlobParts(plain, id, this.#options.keys, {
      encoders: this.#encoders,
    });
    await this.#options.client.putChunk(this.#options.snapshot, id, parts, blobHash(parts));
    this.stats.newBytes += plain.length;
    this.stats.storedBytes += parts.reduce((sum, part) => sum + part.length, 0);
    this.stats.newChunks++;
  }
}
