// The chunk store on local disk: DIR/chunks/ab/<id>, DIR/manifests/ab/<snapshot id>, and
// DIR/tmp for uploads in flight. A blob is written to tmp while it is hashed, fsync'd,
// checked against the hash the client sent, renamed into place and its directory fsync'd;
// only then does the caller record it in the catalog. Files in place are never rewritten.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { LifeboatError } from "../common/errors.ts";

export type BlobKind = "chunks" | "manifests";

export class HttpError extends LifeboatError {
  readonly status: number;
  constructor(status: number, code: string, message: string, hint?: string) {
    super({ kind: status >= 500 ? "environment" : "input", code, message, hint });
    this.status = status;
  }
}

export class BlobStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Space kept back for emergencies: garbage collection needs to write to the catalog to
   * free space, so on a full disk it would fail exactly when it is needed. Collection
   * releases this file first and takes it back afterwards.
   */
  get reserveFile() {
    return path.join(this.dir, "reserve");
  }

  async releaseReserve() {
    await rm(this.reserveFile, { force: true });
  }

  async keepReserve(bytes = 8 * 1024 * 1024) {
    const info = await stat(this.reserveFile).catch(() => null);
    if (info?.size === bytes) return;
    try {
      const handle = await open(this.reserveFile, "w", 0o600);
      try {
        await handle.writeFile(Buffer.alloc(bytes));
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch {
      // No room for it now; the next collection tries again.
      await rm(this.reserveFile, { force: true });
    }
  }

  async init() {
    for (const sub of ["chunks", "manifests", "tmp"])
      await mkdir(path.join(this.dir, sub), { recursive: true });
    // Uploads that were in flight when the server stopped: never recorded, so just garbage.
    await rm(path.join(this.dir, "tmp"), { recursive: true, force: true });
    await mkdir(path.join(this.dir, "tmp"));
    await this.keepReserve();
  }

  pathOf(kind: BlobKind, id: string): string {
    return path.join(this.dir, kind, id.slice(0, 2), id);
  }

  async exists(kind: BlobKind, id: string): Promise<{ size: number; mtimeMs: number } | null> {
    const info = await stat(this.pathOf(kind, id)).catch(() => null);
    return info ? { size: info.size, mtimeMs: info.mtimeMs } : null;
  }

  /**
   * Receive a blob into tmp/: hash it while writing, refuse more than `limit` bytes, fsync.
   * Returns the temp file, its size and SHA-256. The caller places or discards it.
   */
  async receive(
    body: Readable,
    limit: number,
  ): Promise<{ temp: string; size: number; sha256: string }> {
    const temp = path.join(this.dir, "tmp", randomBytes(12).toString("hex"));
    const hash = createHash("sha256");
    let size = 0;
    // Chunk blobs (at most a few MiB) are gathered in memory and written with one call;
    // larger blobs (manifests) stream to the file. Either way the file is fsync'd.
    const gather = limit <= 8 * 1024 * 1024;
    const parts: Buffer[] = [];
    const out = gather ? null : createWriteStream(temp, { flags: "wx", mode: 0o600, flush: true });
    let refused = false;
    try {
      await new Promise<void>((resolve, reject) => {
        body.on("data", (data: Buffer) => {
          if (refused) return;
          size += data.length;
          if (size > limit) {
            // Keep reading (and dropping) the rest, so the 413 reaches the client instead of
            // a reset connection.
            refused = true;
            reject(
              new HttpError(
                413,
                "LB_SERVER_BODY_TOO_LARGE",
                `The blob is larger than ${limit} bytes.`,
                "Chunk blobs are at most 4 MiB + 4 KiB and manifests 256 MiB; check the client.",
              ),
            );
            return;
          }
          hash.update(data);
          if (!out) parts.push(data);
          else if (!out.write(data)) {
            body.pause();
            out.once("drain", () => body.resume());
          }
        });
        body.on("end", () => (out ? out.end() : resolve()));
        body.on("error", reject);
        body.on("aborted", () =>
          reject(new HttpError(400, "LB_SERVER_UPLOAD_ABORTED", "The upload was aborted.")),
        );
        out?.on("error", reject);
        out?.on("finish", resolve);
      });
      if (!out) {
        const handle = await open(temp, "wx", 0o600);
        try {
          await handle.writev(parts);
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
      return { temp, size, sha256: hash.digest("hex") };
    } catch (error) {
      out?.destroy();
      // Read and drop the rest of the body, so the error response reaches the client at
      // once instead of after its upload times out.
      if (!body.destroyed) body.resume();
      await rm(temp, { force: true });
      throw diskError(error, this.dir);
    }
  }

  /** Move a received blob into place, durably. */
  async place(kind: BlobKind, id: string, temp: string) {
    const file = this.pathOf(kind, id);
    const dir = path.dirname(file);
    try {
      await mkdir(dir, { recursive: true });
      await rename(temp, file);
      const handle = await open(dir, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await rm(temp, { force: true });
      throw diskError(error, this.dir);
    }
  }

  async discard(temp: string) {
    await rm(temp, { force: true });
  }

  async readWhole(kind: BlobKind, id: string): Promise<Buffer> {
    return readFile(this.pathOf(kind, id));
  }

  read(kind: BlobKind, id: string): Readable {
    return createReadStream(this.pathOf(kind, id));
  }

  async remove(kind: BlobKind, id: string) {
    await rm(this.pathOf(kind, id), { force: true });
  }

  async hashFile(kind: BlobKind, id: string): Promise<{ sha256: string; size: number } | null> {
    const hash = createHash("sha256");
    let size = 0;
    try {
      for await (const data of this.read(kind, id)) {
        hash.update(data as Buffer);
        size += (data as Buffer).length;
      }
    } catch {
      return null;
    }
    return { sha256: hash.digest("hex"), size };
  }

  /** Every blob file of a kind (for orphan checks). */
  async list(kind: BlobKind): Promise<string[]> {
    const out: string[] = [];
    const base = path.join(this.dir, kind);
    for (const prefix of await readdir(base).catch(() => [] as string[])) {
      for (const name of await readdir(path.join(base, prefix)).catch(() => [] as string[]))
        out.push(name);
    }
    return out;
  }
}

export function diskError(error: unknown, dir: string): unknown {
  const code = (error as NodeJS.ErrnoException)?.code;
  // SQLITE_FULL (13): the catalog could not grow.
  const sqliteFull = code === "ERR_SQLITE_ERROR" && (error as { errcode?: number }).errcode === 13;
  if (code === "ENOSPC" || code === "EDQUOT" || sqliteFull) {
    return new HttpError(
      507,
      "LB_SERVER_DISK_FULL",
      `The server's data directory ${dir} is full; the upload was not stored.`,
      "Free space there (prune old snapshots, or grow the filesystem), then run the backup again; chunks already stored are reused.",
    );
  }
  return error;
}
