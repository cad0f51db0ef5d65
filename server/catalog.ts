// The server's catalog: hosts, token hashes, snapshots, chunks, references, holds and an
// audit trail, in SQLite (node:sqlite) in WAL mode. Every method is one synchronous call,
// and every multi-row change is one transaction, so no other request can
// see a half-done change (Node runs one of them at a time).

import type { RecoveryInfo, RecoveryReport, SnapshotInfo } from "../common/api.ts";
import {
  DrillSchema,
  DrillSettingsSchema,
  type Drill,
  type DrillSettings,
} from "../common/drills.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { inputError } from "../common/errors.ts";

/** The catalog's file in a server's data directory. */
export const CATALOG_FILE = "catalog.sqlite";

/** Numbered migrations; PRAGMA user_version says how many have run. Append, never edit. */
const MIGRATIONS: string[] = [
  `CREATE TABLE admin_tokens (token_hash TEXT PRIMARY KEY, created_at TEXT NOT NULL);
   CREATE TABLE hosts (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     host TEXT NOT NULL REFERENCES hosts(name),
     state TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
     created_at TEXT NOT NULL,
     committed_at TEXT,
     expires_at INTEGER,
     key_id TEXT,
     parent TEXT,
     manifest_size INTEGER,
     manifest_hash TEXT,
     stats TEXT,
     summary TEXT
   );
   CREATE INDEX snapshots_by_host ON snapshots(host, state, committed_at);
   CREATE TABLE chunks (
     id TEXT PRIMARY KEY,
     size INTEGER NOT NULL,
     blob_hash TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('present', 'deleting')),
     created_at INTEGER NOT NULL
   );
   CREATE TABLE refs (snapshot_id TEXT NOT NULL, chunk_id TEXT NOT NULL,
     PRIMARY KEY (snapshot_id, chunk_id)) WITHOUT ROWID;
   CREATE INDEX refs_by_chunk ON refs(chunk_id);
   CREATE TABLE holds (snapshot_id TEXT NOT NULL, chunk_id TEXT NOT NULL,
     PRIMARY KEY (snapshot_id, chunk_id)) WITHOUT ROWID;
   CREATE INDEX holds_by_chunk ON holds(chunk_id);
   CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
     action TEXT NOT NULL, target TEXT, result TEXT NOT NULL);`,
  // Recovery reports from rescue systems: outcome, step timings and the whole log.
  `CREATE TABLE recoveries (
     id INTEGER PRIMARY KEY,
     host TEXT NOT NULL REFERENCES hosts(name),
     snapshot_id TEXT,
     received_at TEXT NOT NULL,
     ok INTEGER NOT NULL,
     seconds REAL NOT NULL,
     steps TEXT NOT NULL,
     error TEXT,
     log TEXT NOT NULL
   );
   CREATE INDEX recoveries_by_host ON recoveries(host, id);`,
  // Restore drills: the record (common/drills.ts) as JSON, with the columns queries need;
  // and each host's drill settings (schedule, probes, targets).
  `CREATE TABLE drills (
     id TEXT PRIMARY KEY,
     host TEXT NOT NULL REFERENCES hosts(name),
     state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'passed', 'failed')),
     created_at TEXT NOT NULL,
     started_at TEXT,
     record TEXT NOT NULL
   );
   CREATE INDEX drills_by_host ON drills(host, created_at);
   CREATE INDEX drills_by_state ON drills(state, created_at);
   CREATE TABLE drill_settings (
     host TEXT PRIMARY KEY REFERENCES hosts(name),
     settings TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );`,
];

export interface SnapshotRow {
  id: string;
  host: string;
  state: "pending" | "committed";
  created_at: string;
  committed_at: string | null;
  expires_at: number | null;
  key_id: string | null;
  parent: string | null;
  manifest_size: number | null;
  manifest_hash: string | null;
  stats: string | null;
  summary: string | null;
}

/** A snapshot row as the API describes it (GET /v1/snapshots, and readers of a data directory). */
export function snapshotInfo(row: SnapshotRow): SnapshotInfo {
  const summary = row.summary ? (JSON.parse(row.summary) as { manifestId?: string } | null) : null;
  return {
    id: row.id,
    host: row.host,
    createdAt: row.created_at,
    committedAt: row.committed_at,
    keyId: row.key_id,
    parent: row.parent,
    manifestId: summary?.manifestId ?? null,
    stats: row.stats ? (JSON.parse(row.stats) as SnapshotInfo["stats"]) : null,
    summary,
  };
}

export interface ChunkRow {
  id: string;
  size: number;
  blob_hash: string;
  state: "present" | "deleting";
  created_at: number;
}

/** SQLite's "unable to open" (SQLITE_CANTOPEN). */
const SQLITE_CANTOPEN = 14;

/**
 * A read-only connection. A WAL reader needs the shared-memory index (catalog.sqlite-shm)
 * and creates it when it is missing; on a read-only mount it can't, and SQLite refuses to
 * open. Nothing can write through such a mount, so the file is then opened as immutable:
 * read as it lies, without locks.
 */
function openReadOnly(file: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(file, { readOnly: true });
    db.exec("PRAGMA busy_timeout = 5000");
    db.prepare("PRAGMA user_version").get();
    return db;
  } catch (error) {
    if (db?.isOpen) db.close();
    if ((error as { errcode?: number }).errcode !== SQLITE_CANTOPEN) throw error;
    const url = pathToFileURL(file);
    url.searchParams.set("immutable", "1");
    return new DatabaseSync(url, { readOnly: true });
  }
}

export class Catalog {
  readonly db: DatabaseSync;
  /**
   * Compiled statements by SQL text. Every request runs a few (auth, the snapshot, the
   * chunk); compiling them each time cost more CPU than running them.
   */
  readonly #statements = new Map<string, StatementSync>();

  /**
   * `readOnly`: for reading a data directory without its server (a restore from the server's
   * disk). Nothing is written, so nothing is migrated: the catalog must be at exactly the
   * version this build writes, or the reader would misread it.
   */
  constructor(file: string, options: { readOnly?: boolean } = {}) {
    if (options.readOnly) {
      this.db = openReadOnly(file);
      const version = this.version();
      if (version !== MIGRATIONS.length) {
        this.db.close();
        throw inputError(
          "LB_CATALOG_VERSION",
          `The catalog ${file} is at version ${version}; this Lifeboat reads version ${MIGRATIONS.length}.`,
          version > MIGRATIONS.length
            ? "It was written by a newer Lifeboat: read it with that version."
            : "Start this version's server on the directory once ('lifeboat server --data DIR') to bring it up to date.",
        );
      }
      return;
    }
    this.db = new DatabaseSync(file);
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec("PRAGMA synchronous = FULL");
    this.db.exec("PRAGMA foreign_keys = ON");
    this.db.exec("PRAGMA busy_timeout = 5000");
    this.migrate();
  }

  version(): number {
    return (this.sql("PRAGMA user_version").get() as { user_version: number }).user_version;
  }

  migrate() {
    const version = this.version();
    for (let i = version; i < MIGRATIONS.length; i++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[i]!);
        this.db.exec(`PRAGMA user_version = ${i + 1}`);
      });
    }
  }

  close() {
    this.db.close();
  }

  /** A prepared statement for `text`, compiled once (texts are fixed or built from fixed parts). */
  sql(text: string): StatementSync {
    let statement = this.#statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.#statements.set(text, statement);
    }
    return statement;
  }

  /**
   * A transaction. `durable` ones (commits, forgetting, hosts) are fsync'd before they
   * return (synchronous=FULL). Chunk records and holds use synchronous=NORMAL: in WAL mode
   * a later durable transaction makes every earlier one durable too, so a commit never
   * refers to a chunk row a power failure could lose; a chunk row lost on its own only
   * leaves a blob file that verify reports and prune removes.
   */
  transaction<T>(fn: () => T, durable = true): T {
    this.db.exec(`PRAGMA synchronous = ${durable ? "FULL" : "NORMAL"}`);
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (error) {
      this.db.exec("ROLLBACK");
      throw error;
    }
  }

  // --- tokens and hosts ---------------------------------------------------------------

  /** A transaction that need not be on disk before it returns (see `transaction`). */
  quickTransaction<T>(fn: () => T): T {
    return this.transaction(fn, false);
  }

  hasAdmin(): boolean {
    return this.sql("SELECT 1 FROM admin_tokens LIMIT 1").get() !== undefined;
  }

  addAdminToken(hash: string) {
    this.transaction(() =>
      this.sql("INSERT INTO admin_tokens (token_hash, created_at) VALUES (?, ?)").run(
        hash,
        new Date().toISOString(),
      ),
    );
  }

  isAdminToken(hash: string): boolean {
    return this.sql("SELECT 1 FROM admin_tokens WHERE token_hash = ?").get(hash) !== undefined;
  }

  hostForToken(hash: string): string | null {
    const row = this.sql("SELECT name FROM hosts WHERE token_hash = ?").get(hash) as
      { name: string } | undefined;
    return row?.name ?? null;
  }

  hostExists(name: string): boolean {
    return this.sql("SELECT 1 FROM hosts WHERE name = ?").get(name) !== undefined;
  }

  addHost(name: string, tokenHash: string) {
    // Durable before the token is shown: it is shown only once.
    this.transaction(() =>
      this.sql("INSERT INTO hosts (name, token_hash, created_at) VALUES (?, ?, ?)").run(
        name,
        tokenHash,
        new Date().toISOString(),
      ),
    );
  }

  listHosts() {
    return this.sql(
      `SELECT h.name, h.created_at AS createdAt,
           (SELECT COUNT(*) FROM snapshots s WHERE s.host = h.name AND s.state = 'committed') AS snapshots,
           (SELECT MAX(committed_at) FROM snapshots s WHERE s.host = h.name AND s.state = 'committed') AS lastBackup
         FROM hosts h ORDER BY h.name`,
    ).all() as { name: string; createdAt: string; snapshots: number; lastBackup: string | null }[];
  }

  // --- snapshots ------------------------------------------------------------------------

  createSnapshot(row: {
    id: string;
    host: string;
    keyId: string | null;
    parent: string | null;
    expiresAt: number;
  }) {
    this.sql(
      `INSERT INTO snapshots (id, host, state, created_at, expires_at, key_id, parent)
         VALUES (?, ?, 'pending', ?, ?, ?, ?)`,
    ).run(row.id, row.host, new Date().toISOString(), row.expiresAt, row.keyId, row.parent);
  }

  snapshot(id: string): SnapshotRow | null {
    return (
      (this.sql("SELECT * FROM snapshots WHERE id = ?").get(id) as SnapshotRow | undefined) ?? null
    );
  }

  touchSnapshot(id: string, expiresAt: number) {
    this.sql("UPDATE snapshots SET expires_at = ? WHERE id = ? AND state = 'pending'").run(
      expiresAt,
      id,
    );
  }

  setManifest(id: string, size: number, hash: string) {
    this.sql("UPDATE snapshots SET manifest_size = ?, manifest_hash = ? WHERE id = ?").run(
      size,
      hash,
      id,
    );
  }

  listSnapshots(host: string | null): SnapshotRow[] {
    return (host
      ? this.sql(
          "SELECT * FROM snapshots WHERE state = 'committed' AND host = ? ORDER BY committed_at DESC, id DESC",
        ).all(host)
      : this.sql(
          "SELECT * FROM snapshots WHERE state = 'committed' ORDER BY committed_at DESC, id DESC",
        ).all()) as unknown as SnapshotRow[];
  }

  /**
   * Ids among `ids` that are not present (missing or being deleted). Each id is looked up
   * in the primary key; `NOT IN (SELECT id FROM chunks ...)` would scan every chunk of the
   * repository on each call.
   */
  absentChunks(ids: string[]): string[] {
    const rows = this.sql(
      `SELECT value AS id FROM json_each(?) WHERE NOT EXISTS
           (SELECT 1 FROM chunks c WHERE c.id = value AND c.state = 'present')`,
    ).all(JSON.stringify(ids)) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /** Which ids are missing; every present one gets a hold for the snapshot. One transaction. */
  missingAndHold(snapshotId: string, ids: string[]): string[] {
    return this.quickTransaction(() => {
      const json = JSON.stringify(ids);
      this.sql(
        `INSERT OR IGNORE INTO holds (snapshot_id, chunk_id)
           SELECT ?, value FROM json_each(?) WHERE EXISTS
             (SELECT 1 FROM chunks c WHERE c.id = value AND c.state = 'present')`,
      ).run(snapshotId, json);
      return this.absentChunks(ids);
    });
  }

  chunk(id: string): ChunkRow | null {
    return (this.sql("SELECT * FROM chunks WHERE id = ?").get(id) as ChunkRow | undefined) ?? null;
  }

  recordChunk(snapshotId: string, id: string, size: number, blobHash: string) {
    this.quickTransaction(() => {
      this.sql(
        `INSERT INTO chunks (id, size, blob_hash, state, created_at) VALUES (?, ?, ?, 'present', ?)
           ON CONFLICT (id) DO UPDATE SET size = excluded.size, blob_hash = excluded.blob_hash,
             state = 'present', created_at = excluded.created_at`,
      ).run(id, size, blobHash, Date.now());
      this.sql("INSERT OR IGNORE INTO holds (snapshot_id, chunk_id) VALUES (?, ?)").run(
        snapshotId,
        id,
      );
    });
  }

  holdChunk(snapshotId: string, id: string) {
    this.sql("INSERT OR IGNORE INTO holds (snapshot_id, chunk_id) VALUES (?, ?)").run(
      snapshotId,
      id,
    );
  }

  /** The visibility point: references, committed state and dropped holds, in one transaction. */
  commitSnapshot(id: string, chunkIds: string[], stats: unknown, summary: unknown): string {
    const committedAt = new Date().toISOString();
    this.transaction(() => {
      this.sql(
        "INSERT OR IGNORE INTO refs (snapshot_id, chunk_id) SELECT ?, value FROM json_each(?)",
      ).run(id, JSON.stringify(chunkIds));
      this.sql(
        `UPDATE snapshots SET state = 'committed', committed_at = ?, expires_at = NULL, stats = ?, summary = ?
           WHERE id = ?`,
      ).run(committedAt, JSON.stringify(stats), JSON.stringify(summary ?? null), id);
      this.sql("DELETE FROM holds WHERE snapshot_id = ?").run(id);
    });
    return committedAt;
  }

  /** May this host read this chunk: referenced by its snapshots or held by its upload? */
  hostMayRead(host: string, chunkId: string): boolean {
    return (
      this.sql(
        `SELECT 1 FROM refs r JOIN snapshots s ON s.id = r.snapshot_id
             WHERE r.chunk_id = ? AND s.host = ? AND s.state = 'committed'
           UNION ALL
           SELECT 1 FROM holds h JOIN snapshots s ON s.id = h.snapshot_id
             WHERE h.chunk_id = ? AND s.host = ?
           LIMIT 1`,
      ).get(chunkId, host, chunkId, host) !== undefined
    );
  }

  /** Forget committed snapshots: their references and rows, in one transaction. */
  forgetSnapshots(ids: string[]) {
    this.transaction(() => {
      for (const id of ids) {
        this.sql("DELETE FROM refs WHERE snapshot_id = ?").run(id);
        this.sql("DELETE FROM holds WHERE snapshot_id = ?").run(id);
        this.sql("DELETE FROM snapshots WHERE id = ?").run(id);
      }
    });
  }

  /** Pending snapshots whose agent went away: their holds and rows go. Returns their ids. */
  expirePending(now: number): string[] {
    return this.transaction(() => {
      const ids = (
        this.sql("SELECT id FROM snapshots WHERE state = 'pending' AND expires_at <= ?").all(
          now,
        ) as {
          id: string;
        }[]
      ).map((r) => r.id);
      for (const id of ids) {
        this.sql("DELETE FROM holds WHERE snapshot_id = ?").run(id);
        this.sql("DELETE FROM snapshots WHERE id = ?").run(id);
      }
      return ids;
    });
  }

  /** GC phase 1: mark unreferenced, unheld chunks older than `before` as deleting. */
  markGarbage(before: number): number {
    const result = this.sql(
      `UPDATE chunks SET state = 'deleting'
         WHERE state = 'present' AND created_at < ?
           AND NOT EXISTS (SELECT 1 FROM refs WHERE refs.chunk_id = chunks.id)
           AND NOT EXISTS (SELECT 1 FROM holds WHERE holds.chunk_id = chunks.id)`,
    ).run(before);
    return Number(result.changes);
  }

  deletingChunks(): ChunkRow[] {
    return this.sql("SELECT * FROM chunks WHERE state = 'deleting'").all() as unknown as ChunkRow[];
  }

  dropChunkRow(id: string) {
    this.sql("DELETE FROM chunks WHERE id = ? AND state = 'deleting'").run(id);
  }

  /** Every chunk id referenced by the given committed snapshots, with the snapshots. */
  referencesOf(snapshotIds: string[]): Map<string, string[]> {
    const rows = this.sql(
      "SELECT chunk_id AS chunk, snapshot_id AS snapshot FROM refs WHERE snapshot_id IN (SELECT value FROM json_each(?))",
    ).all(JSON.stringify(snapshotIds)) as { chunk: string; snapshot: string }[];
    const map = new Map<string, string[]>();
    for (const row of rows) map.set(row.chunk, [...(map.get(row.chunk) ?? []), row.snapshot]);
    return map;
  }

  allChunks(): ChunkRow[] {
    return this.sql("SELECT * FROM chunks").all() as unknown as ChunkRow[];
  }

  // --- recovery reports ----------------------------------------------------------------

  addRecovery(host: string, report: Omit<RecoveryReport, "host">): number {
    return this.transaction(() =>
      Number(
        this.sql(
          `INSERT INTO recoveries (host, snapshot_id, received_at, ok, seconds, steps, error, log)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          host,
          report.snapshot,
          new Date().toISOString(),
          report.ok ? 1 : 0,
          report.seconds,
          JSON.stringify(report.steps),
          report.error ? JSON.stringify(report.error) : null,
          report.log,
        ).lastInsertRowid,
      ),
    );
  }

  listRecoveries(host: string | null): RecoveryInfo[] {
    const sql = `SELECT id, host, snapshot_id, received_at, ok, seconds, steps, error FROM recoveries
                 ${host ? "WHERE host = ?" : ""} ORDER BY id DESC`;
    const rows = (host ? this.sql(sql).all(host) : this.sql(sql).all()) as {
      id: number;
      host: string;
      snapshot_id: string | null;
      received_at: string;
      ok: number;
      seconds: number;
      steps: string;
      error: string | null;
    }[];
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      snapshot: r.snapshot_id,
      receivedAt: r.received_at,
      ok: r.ok === 1,
      seconds: r.seconds,
      steps: JSON.parse(r.steps) as RecoveryInfo["steps"],
      error: r.error ? (JSON.parse(r.error) as RecoveryInfo["error"]) : null,
    }));
  }

  recoveryLog(id: number): { host: string; log: string } | null {
    return (
      (this.sql("SELECT host, log FROM recoveries WHERE id = ?").get(id) as
        { host: string; log: string } | undefined) ?? null
    );
  }

  // --- restore drills ------------------------------------------------------------------

  /** Inserts or replaces a drill's record (durable: a drill's outcome is evidence). */
  saveDrill(drill: Drill) {
    this.transaction(() =>
      this.sql(
        `INSERT INTO drills (id, host, state, created_at, started_at, record) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(id) DO UPDATE SET state = excluded.state, started_at = excluded.started_at,
             record = excluded.record`,
      ).run(
        drill.id,
        drill.host,
        drill.state,
        drill.createdAt,
        drill.startedAt,
        JSON.stringify(drill),
      ),
    );
  }

  drill(id: string): Drill | null {
    const row = this.sql("SELECT record FROM drills WHERE id = ?").get(id) as
      { record: string } | undefined;
    return row ? DrillSchema.parse(JSON.parse(row.record)) : null;
  }

  /** Newest first; `since` compares with the creation time (ISO 8601). */
  listDrills(
    filter: { host?: string | null; state?: Drill["state"]; since?: string } = {},
  ): Drill[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.host) (where.push("host = ?"), args.push(filter.host));
    if (filter.state) (where.push("state = ?"), args.push(filter.state));
    if (filter.since) (where.push("created_at >= ?"), args.push(filter.since));
    const rows = this.sql(
      `SELECT record FROM drills ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY created_at DESC, id DESC`,
    ).all(...args) as { record: string }[];
    return rows.map((r) => DrillSchema.parse(JSON.parse(r.record)));
  }

  /** When the host's latest drill started (or was queued), for the scheduler. */
  lastDrillAt(host: string): string | null {
    const row = this.sql("SELECT max(created_at) AS at FROM drills WHERE host = ?").get(host) as {
      at: string | null;
    };
    return row.at;
  }

  drillSettings(host: string): DrillSettings {
    const row = this.sql("SELECT settings FROM drill_settings WHERE host = ?").get(host) as
      { settings: string } | undefined;
    return DrillSettingsSchema.parse(row ? JSON.parse(row.settings) : {});
  }

  setDrillSettings(host: string, settings: DrillSettings) {
    this.transaction(() =>
      this.sql(
        `INSERT INTO drill_settings (host, settings, updated_at) VALUES (?, ?, ?)
           ON CONFLICT(host) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
      ).run(host, JSON.stringify(settings), new Date().toISOString()),
    );
  }

  /** Hosts whose drill schedule is not off, with when they were enrolled. */
  scheduledHosts(): { host: string; settings: DrillSettings; createdAt: string }[] {
    const rows = this.sql(
      `SELECT d.host, d.settings, h.created_at FROM drill_settings d JOIN hosts h ON h.name = d.host`,
    ).all() as { host: string; settings: string; created_at: string }[];
    return rows
      .map((r) => ({
        host: r.host,
        settings: DrillSettingsSchema.parse(JSON.parse(r.settings)),
        createdAt: r.created_at,
      }))
      .filter((r) => r.settings.schedule !== "off");
  }

  audit(actor: string, action: string, target: string | null, result: string) {
    this.sql("INSERT INTO audit (at, actor, action, target, result) VALUES (?, ?, ?, ?, ?)").run(
      new Date().toISOString(),
      actor,
      action,
      target,
      result,
    );
  }
}
