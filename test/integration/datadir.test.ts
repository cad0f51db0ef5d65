// Restore straight from a server's data directory (agent/client/datadir.ts): backed up
// through a real server on loopback, then read without it, while it runs and after it
// stopped. The directory must come out of it unchanged.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../agent/backup/backup.ts";
import { DataDirSource } from "../../agent/client/datadir.ts";
import { openDirectorySource } from "../../agent/client/local.ts";
import { backupOptions, quietProgress as quiet } from "../helpers/backup.ts";
import { runRestore } from "../../agent/restore/restore.ts";
import { deriveKeys } from "../../common/repository/keys.ts";
import { startServer } from "../helpers/server.ts";

const keys = deriveKeys(Buffer.alloc(32, 9));
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-datadir-"));
const dataDir = path.join(work, "data");
const src = path.join(work, "src");
const snapshots: Record<string, string> = {};
let pending = "";

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Every file under a tree with its content hash, by path relative to the tree. */
function contents(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(root, file)] = sha(file);
  }
  return out;
}

/**
 * Every entry of the data directory with its size and mtime: what must not change. SQLite's
 * shared-memory index is left out: every WAL reader writes its read marks there.
 */
function fingerprint(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.name.endsWith("-shm"))
    .map((entry) => {
      const file = path.join(entry.parentPath, entry.name);
      const info = statSync(file);
      return `${path.relative(dir, file)} ${entry.isFile() ? info.size : "-"} ${info.mtimeMs}`;
    })
    .sort();
}

async function restoreFrom(source: DataDirSource, snapshot: string, paths: string[] = []) {
  const target = mkdtempSync(path.join(work, "restore-"));
  await runRestore({ client: source, keys, snapshot, target, paths, progress: quiet });
  return target;
}

beforeAll(async () => {
  mkdirSync(path.join(src, "etc"), { recursive: true });
  for (let i = 0; i < 40; i++)
    writeFileSync(path.join(src, "etc", `conf${i}`), `setting ${i}\n`.repeat(i * 50 + 1));
  writeFileSync(
    path.join(src, "random.bin"),
    Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 7919) % 251)),
  );
  mkdirSync(dataDir);
  const server = await startServer({ dataDir });
  try {
    for (const host of ["web1", "db1"]) {
      const { client } = await server.host(host);
      const snap = await runBackup(
        backupOptions({
          client,
          host,
          keys,
          paths: [src],
          stateDir: path.join(work, `state-${host}`),
        }),
      );
      snapshots[host] = snap.id;
      if (host === "web1") {
        pending = (await client.createSnapshot({ keyId: null, parent: null })).id;
      }
    }
    // Read while the server is up and holds the catalog open.
    const live = DataDirSource.open(dataDir);
    try {
      const target = await restoreFrom(live, snapshots.web1!);
      expect(contents(path.join(target, src))).toEqual(contents(src));
    } finally {
      live.close();
    }
  } finally {
    await server.close();
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("restore from a server's data directory, without the server", () => {
  it("lists every host's committed snapshots, and no pending one", async () => {
    const source = await openDirectorySource(dataDir);
    expect(source).toBeInstanceOf(DataDirSource);
    const listed = await source.listSnapshots();
    expect(listed.map((s) => s.id).sort()).toEqual(Object.values(snapshots).sort());
    expect((await source.listSnapshots("db1")).map((s) => s.host)).toEqual(["db1"]);
    expect(listed.every((s) => s.manifestId !== null && s.keyId !== null)).toBe(true);
    await expect(source.getSnapshot(pending)).rejects.toMatchObject({
      code: "LB_RECOVER_NO_SNAPSHOT",
    });
    (source as DataDirSource).close();
  });

  it("restores a whole tree and single files, and leaves the directory as it was", async () => {
    const before = fingerprint(dataDir);
    const source = DataDirSource.open(dataDir);
    try {
      const whole = await restoreFrom(source, snapshots.db1!);
      expect(contents(path.join(whole, src))).toEqual(contents(src));
      const one = await restoreFrom(source, snapshots.web1!, [path.join(src, "etc", "conf7")]);
      expect(contents(one)).toEqual({
        [path.relative("/", path.join(src, "etc", "conf7"))]: sha(path.join(src, "etc", "conf7")),
      });
    } finally {
      source.close();
    }
    expect(fingerprint(dataDir)).toEqual(before);
  });

  it("refuses a damaged chunk by name and writes no wrong data", async () => {
    const copy = path.join(work, "damaged");
    copyTree(dataDir, copy);
    const chunkFiles = readdirSync(path.join(copy, "chunks"), {
      recursive: true,
      withFileTypes: true,
    })
      .filter((d) => d.isFile())
      .map((d) => path.join(d.parentPath, d.name));
    for (const file of chunkFiles) {
      const bytes = readFileSync(file);
      bytes[0] = bytes[0]! ^ 0xff;
      writeFileSync(file, bytes);
    }
    const source = DataDirSource.open(copy);
    try {
      const target = mkdtempSync(path.join(work, "restore-"));
      const failure = runRestore({
        client: source,
        keys,
        snapshot: snapshots.web1!,
        target,
        paths: [],
        progress: quiet,
      });
      await expect(failure).rejects.toMatchObject({ code: "LB_REPO_CORRUPT_CHUNK" });
      await expect(failure).rejects.toThrow(/is damaged: its SHA-256 no longer matches/);
      // Whatever was written before the error is a prefix of the truth, never other bytes.
      const restored = path.join(target, src);
      for (const entry of readdirSync(restored, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        const original = readFileSync(path.join(src, path.relative(restored, file)));
        const partial = readFileSync(file);
        expect(original.subarray(0, partial.length).equals(partial)).toBe(true);
      }
    } finally {
      source.close();
    }
  });

  it.runIf(process.getuid?.() === 0)(
    "reads a data directory on a read-only mount, where SQLite can't make its index (root)",
    async () => {
      const copy = path.join(work, "stopped");
      copyTree(dataDir, copy);
      for (const name of readdirSync(copy)) {
        if (/-(shm|wal)$/.test(name)) rmSync(path.join(copy, name));
      }
      const mount = path.join(work, "readonly");
      mkdirSync(mount);
      execFileSync("mount", ["--bind", copy, mount]);
      try {
        execFileSync("mount", ["-o", "remount,ro,bind", mount]);
        const source = DataDirSource.open(mount);
        try {
          const target = await restoreFrom(source, snapshots.web1!);
          expect(contents(path.join(target, src))).toEqual(contents(src));
        } finally {
          source.close();
        }
      } finally {
        execFileSync("umount", [mount]);
      }
    },
  );

  it("refuses a directory that is neither an export nor a data directory, naming both", async () => {
    const empty = mkdtempSync(path.join(work, "empty-"));
    await expect(openDirectorySource(empty)).rejects.toThrow(
      /neither a complete snapshot export .* nor a server's catalog/,
    );
  });

  it("refuses a catalog of another version instead of misreading it", () => {
    const copy = path.join(work, "newer");
    copyTree(dataDir, copy);
    const db = new DatabaseSync(path.join(copy, "catalog.sqlite"));
    const { user_version: version } = db.prepare("PRAGMA user_version").get() as {
      user_version: number;
    };
    db.exec(`PRAGMA user_version = ${version + 1}`);
    db.close();
    expect(() => DataDirSource.open(copy)).toThrow(
      expect.objectContaining({
        code: "LB_CATALOG_VERSION",
        hint: expect.stringMatching(/newer Lifeboat/),
      }),
    );
  });
});

function copyTree(from: string, to: string) {
  for (const entry of readdirSync(from, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const dest = path.join(to, path.relative(from, file));
    if (entry.isDirectory()) mkdirSync(dest, { recursive: true });
    else if (entry.isFile()) {
      mkdirSync(path.dirname(dest), { recursive: true });
      copyFileSync(file, dest);
    }
  }
}
