// A server's data directory read directly, without its server: restore and recovery when
// the backup server itself is down but its disk is readable (mounted in the rescue system,
// or on a spare machine), and the local-repository path of the backup benchmark.
//
// Read-only: the catalog is opened with SQLite's read-only flag (a running server may keep
// writing to it; a WAL reader sees its last commit), and nothing of the repository is
// written, created or migrated (SQLite's shared-memory index aside: docs/repository.md).
// Only committed snapshots are visible, as over the API. Every blob is checked before anyone
// sees a byte of it: the manifest against the SHA-256 the catalog recorded; chunks as every
// restore checks them, against their ids (AES-GCM, HMAC ids), and only when that fails
// against the catalog's SHA-256, to name the damaged file. Whoever can read the directory
// reads every host's snapshots: the directory is the repository, and its file modes are the
// access control (docs/repository.md, "Keys and trust"). Encrypted content still needs the
// key file.

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { SnapshotInfo } from "../../common/api.ts";
import { inputError, LifeboatError } from "../../common/errors.ts";
import { Catalog, CATALOG_FILE, snapshotInfo, type SnapshotRow } from "../../server/catalog.ts";
import { BlobStore, type BlobKind } from "../../server/store.ts";
import type { SnapshotSource } from "./local.ts";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

export class DataDirSource implements SnapshotSource {
  readonly dir: string;
  readonly #catalog: Catalog;
  readonly #store: BlobStore;

  private constructor(dir: string, catalog: Catalog) {
    this.dir = dir;
    this.#catalog = catalog;
    this.#store = new BlobStore(dir);
  }

  /** True when `dir` looks like a server's data directory (it has a catalog). */
  static holdsCatalog(dir: string): boolean {
    return existsSync(path.join(dir, CATALOG_FILE));
  }

  static open(dir: string): DataDirSource {
    const file = path.join(dir, CATALOG_FILE);
    let catalog: Catalog;
    try {
      catalog = new Catalog(file, { readOnly: true });
    } catch (error) {
      if (error instanceof LifeboatError) throw error; // another version: it says so itself
      throw inputError(
        "LB_DATADIR_UNREADABLE",
        `Can't read the catalog ${file}: ${(error as Error).message}.`,
        "Point --from at a Lifeboat server's data directory (the one given to 'lifeboat server --data'), readable by this user.",
      );
    }
    return new DataDirSource(dir, catalog);
  }

  close() {
    this.#catalog.close();
  }

  #committed(id: string): SnapshotRow {
    const row = this.#catalog.snapshot(id);
    if (!row || row.state !== "committed") {
      throw inputError(
        "LB_RECOVER_NO_SNAPSHOT",
        `No committed snapshot ${id} in ${this.dir}.`,
        `Run 'lifeboat snapshots --from ${this.dir}' to see the snapshots it holds.`,
      );
    }
    return row;
  }

  async listSnapshots(host?: string): Promise<SnapshotInfo[]> {
    return this.#catalog.listSnapshots(host ?? null).map(snapshotInfo);
  }

  async getSnapshot(id: string): Promise<SnapshotInfo> {
    return snapshotInfo(this.#committed(id));
  }

  async getManifest(snapshot: string): Promise<Buffer> {
    const row = this.#committed(snapshot);
    if (!row.manifest_hash) {
      throw inputError(
        "LB_REPO_BAD_MANIFEST",
        `Snapshot ${snapshot} in ${this.dir} has no manifest recorded.`,
      );
    }
    return this.#read("manifests", row.id, row.manifest_hash);
  }

  async getChunk(id: string): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`not a chunk id: ${id}`);
    const row = this.#catalog.chunk(id);
    if (row?.state !== "present") {
      throw inputError(
        "LB_REPO_MISSING_CHUNK",
        `Chunk ${id} is not in the catalog of ${this.dir}.`,
        damageHint(this.dir),
      );
    }
    // Unhashed: decoding checks the blob (GCM, and the plaintext against its id), and
    // checkChunk names the file if it does not decode. Hashing every blob first took a
    // tenth of a restore's CPU.
    const file = this.#store.pathOf("chunks", id);
    try {
      return await readFile(file);
    } catch {
      throw missingBlob("chunks", file, this.dir);
    }
  }

  checkChunk(id: string, blob: Buffer) {
    const row = this.#catalog.chunk(id);
    if (row && sha256(blob) !== row.blob_hash) {
      throw damagedBlob("chunks", this.#store.pathOf("chunks", id), this.dir);
    }
  }

  /** A blob file, whole, refused unless it hashes to what the catalog recorded. */
  async #read(kind: BlobKind, id: string, expected: string): Promise<Buffer> {
    const file = this.#store.pathOf(kind, id);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch {
      throw missingBlob(kind, file, this.dir);
    }
    if (sha256(data) !== expected) throw damagedBlob(kind, file, this.dir);
    return data;
  }
}

const damageHint = (dir: string) =>
  `This snapshot can't be restored whole from here: try an older one ('lifeboat snapshots --from ${dir}'). ` +
  "'lifeboat verify --read-data' against a server on this directory names every snapshot the damage breaks.";

function missingBlob(kind: BlobKind, file: string, dir: string) {
  return inputError(
    kind === "chunks" ? "LB_REPO_MISSING_CHUNK" : "LB_REPO_BAD_MANIFEST",
    `${file} is missing: the catalog of ${dir} lists it.`,
    damageHint(dir),
  );
}

function damagedBlob(kind: BlobKind, file: string, dir: string) {
  return inputError(
    kind === "chunks" ? "LB_REPO_CORRUPT_CHUNK" : "LB_REPO_CORRUPT_MANIFEST",
    `${file} is damaged: its SHA-256 no longer matches the catalog's.`,
    damageHint(dir),
  );
}
