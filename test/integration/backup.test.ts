// Backup and restore end to end, against a real server on loopback: the attribute round
// trip, incremental chains, single-file restore, damage, and several agents at once.
import { execFileSync } from "node:child_process";
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup, type BackupOptions } from "../../agent/backup/backup.ts";
import type { ApiClient } from "../../agent/client/api.ts";
import { backupOptions, quietProgress as quiet } from "../helpers/backup.ts";
import { ChunkFetcher } from "../../agent/restore/fetch.ts";
import { extractPieces, planPieces, streamZeroOffsets } from "../../agent/restore/parallel.ts";
import { loadManifest, runRestore, type RestoreOptions } from "../../agent/restore/restore.ts";
import { deriveKeys, type RepoKeys } from "../../common/repository/keys.ts";
import { buildAttributeTree, compareTrees, recordTree } from "../helpers/treecheck.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-backup-"));
let server: TestServer;
const keys: RepoKeys = deriveKeys(Buffer.alloc(32, 7));

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

function options(
  client: ApiClient,
  host: string,
  src: string,
  extra: Partial<BackupOptions> = {},
): BackupOptions {
  return backupOptions(
    { client, host, keys, paths: [src], stateDir: path.join(work, `state-${host}`) },
    extra,
  );
}

async function restore(
  client: ApiClient,
  snapshot: string,
  paths: string[] = [],
  k: RepoKeys | null = keys,
  extra: Partial<RestoreOptions> = {},
) {
  const target = mkdtempSync(path.join(work, "restore-"));
  await runRestore({ client, keys: k, snapshot, target, paths, progress: quiet, ...extra });
  return target;
}

/** Cut even a small stream into pieces for several tars (parallel.ts). */
const inPieces: Partial<RestoreOptions> = { extractors: 3, parallelMinBytes: 1 };

describe.runIf(root)("backup and restore through the server (root)", () => {
  it("restores a tree with every attribute identically, then an incremental chain, then single files", async () => {
    const { client } = await server.host("roundtrip");
    const src = path.join(work, "src");
    mkdirSync(src);
    buildAttributeTree(src);
    const first = await runBackup(options(client, "roundtrip", src));
    expect(first.filesystems[0]!.level).toBe(0);
    const full = await restore(client, first.id);
    expect(compareTrees(recordTree(src), recordTree(path.join(full, src)))).toEqual([]);
    const pieces = await restore(client, first.id, [], keys, inPieces);
    expect(compareTrees(recordTree(src), recordTree(path.join(pieces, src)))).toEqual([]);

    appendFileSync(path.join(src, "big-owner"), "changed");
    unlinkSync(path.join(src, "fifo"));
    writeFileSync(path.join(src, "dir/new.txt"), "new\n");
    const second = await runBackup(options(client, "roundtrip", src));
    expect(second.filesystems[0]!.level).toBe(1);
    // Unchanged files are not read again.
    expect(second.bytes).toBeLessThan(first.bytes / 2);
    expect(second.snapshotBytes).toBeGreaterThan(first.bytes);
    const chain = await restore(client, second.id);
    expect(compareTrees(recordTree(src), recordTree(path.join(chain, src)))).toEqual([]);
    const chainPieces = await restore(client, second.id, [], keys, inPieces);
    expect(compareTrees(recordTree(src), recordTree(path.join(chainPieces, src)))).toEqual([]);

    // One file whose bytes are in stream 0, one in stream 1, and a hard link with its target.
    const some = await restore(client, second.id, [
      path.join(src, "file.txt"),
      path.join(src, "dir/new.txt"),
      path.join(src, "dir/sub/hardlink-b"),
    ]);
    const got = recordTree(path.join(some, src)).filter((e) => e.type === "file");
    expect(got.map((e) => e.path).sort()).toEqual([
      "dir/new.txt",
      "dir/sub/hardlink-b",
      "file.txt",
    ]);
    expect(readFileSync(path.join(some, src, "dir/sub/hardlink-b"), "utf8")).toBe("hello\n");
    await expect(
      restore(client, second.id, [path.join(src, "no-such-file")]),
    ).rejects.toMatchObject({
      code: "LB_RESTORE_PATH_NOT_IN_SNAPSHOT",
    });
  }, 120_000);

  it("extracts a stream in pieces in the worst order: links before targets, files before their directories", async () => {
    const { client } = await server.host("pieces");
    const src = path.join(work, "pieces-src");
    mkdirSync(src);
    buildAttributeTree(src);
    const snap = await runBackup(options(client, "pieces", src));
    const manifest = await loadManifest(client, snap.id, keys);
    const fs = manifest.filesystems[0]!;
    const fetcher = new ChunkFetcher({ client, keys, progress: quiet }, { bytes: 0, chunks: 0 });
    const offsets = streamZeroOffsets(await fetcher.whole(fs.index.chunks));
    expect(offsets).not.toBeNull();
    // A piece per entry, extracted one tar at a time. Last to first, every hard link meets
    // no target and every file no directory; first to last, every file lands in a directory
    // whose time was already set. Only the replay can make either right.
    const pieces = planPieces(offsets!, fs.streams[0]!.size, 10_000, 1);
    expect(pieces.length).toBeGreaterThan(20);
    for (const order of [[...pieces].reverse(), pieces]) {
      const target = mkdtempSync(path.join(work, "pieces-"));
      const dir = path.join(target, fs.mountPoint);
      mkdirSync(dir, { recursive: true });
      await extractPieces({
        fetcher,
        chunks: fs.streams[0]!.chunks,
        pieces: order,
        extractors: 1,
        lastStream: true,
        target: dir,
        within: target,
        item: fs.mountPoint,
        parallel: 4,
      });
      expect(compareTrees(recordTree(src), recordTree(dir))).toEqual([]);
    }
  }, 120_000);
});

describe("backup and restore, any user", () => {
  const src = path.join(work, "plain");

  beforeAll(() => {
    mkdirSync(path.join(src, "docs"), { recursive: true });
    for (let i = 0; i < 50; i++)
      writeFileSync(path.join(src, "docs", `f${i}.txt`), `file ${i}\n`.repeat(i * 100));
    writeFileSync(path.join(src, "big.bin"), Buffer.alloc(3 * 1048576, 1));
  });

  it("refuses the wrong key, or none, with a hint", async () => {
    const { client } = await server.host("keys");
    const snap = await runBackup(options(client, "keys", src));
    await expect(
      restore(client, snap.id, [], deriveKeys(Buffer.alloc(32, 8))),
    ).rejects.toMatchObject({
      code: "LB_RESTORE_WRONG_KEY",
    });
    await expect(restore(client, snap.id, [], null)).rejects.toMatchObject({
      code: "LB_RESTORE_WRONG_KEY",
    });
  });

  it("stops with an error naming a damaged chunk, and writes no wrong data", async () => {
    const { client } = await server.host("damaged");
    const snap = await runBackup(options(client, "damaged", src, { keys: null }));
    const chunks = readdirSync(path.join(server.dataDir, "chunks"), {
      recursive: true,
      withFileTypes: true,
    })
      .filter((d) => d.isFile())
      .map((d) => path.join(d.parentPath, d.name));
    for (const file of chunks) {
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x55;
      writeFileSync(file, bytes);
    }
    const target = mkdtempSync(path.join(work, "damaged-"));
    await expect(
      runRestore({ client, keys: null, snapshot: snap.id, target, paths: [], progress: quiet }),
    ).rejects.toMatchObject({ code: "LB_REPO_CORRUPT_CHUNK" });
    // Whatever was written before the error is a prefix of the truth, never altered content.
    const restored = path.join(target, src, "big.bin");
    let partial: Buffer | null = null;
    try {
      partial = readFileSync(restored);
    } catch {
      partial = null;
    }
    if (partial) expect(partial.equals(Buffer.alloc(partial.length, 1))).toBe(true);
    for (const file of chunks) {
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x55;
      writeFileSync(file, bytes);
    }
  });

  it("runs four agents at once; every snapshot verifies and restores", async () => {
    const agents = await Promise.all(["w1", "w2", "w3", "w4"].map((name) => server.host(name)));
    const trees = agents.map((_, i) => {
      const dir = path.join(work, `agent-${i}`);
      mkdirSync(dir);
      writeFileSync(path.join(dir, "shared.bin"), Buffer.alloc(2 * 1048576, 9));
      writeFileSync(path.join(dir, "own.txt"), `agent ${i}\n`.repeat(10000));
      return dir;
    });
    const results = await Promise.all(
      agents.map(({ client }, i) => runBackup(options(client, `w${i + 1}`, trees[i]!))),
    );
    const events = [];
    for await (const event of server.admin.verify(true)) events.push(event);
    expect(events.at(-1)).toMatchObject({ type: "result", ok: true });
    for (const [i, { client }] of agents.entries()) {
      const target = await restore(client, results[i]!.id);
      expect(readFileSync(path.join(target, trees[i]!, "own.txt"), "utf8")).toBe(
        `agent ${i}\n`.repeat(10000),
      );
    }
  });

  it("refuses to run beside another backup of the same host, and takes over a stale lock", async () => {
    const { spawn } = await import("node:child_process");
    const { client } = await server.host("locked");
    const opts = options(client, "locked", src);
    const lock = path.join(opts.stateDir, "backup", "locked", "lock");
    mkdirSync(path.dirname(lock), { recursive: true });
    const sleeper = spawn("sleep", ["30"]);
    try {
      writeFileSync(lock, `${sleeper.pid}\n`);
      await expect(runBackup(opts)).rejects.toMatchObject({ code: "LB_BACKUP_RUNNING" });
    } finally {
      sleeper.kill();
    }
    await new Promise((resolve) => sleeper.on("exit", resolve));
    const done = await runBackup(opts);
    expect((await client.listSnapshots()).map((s) => s.id)).toEqual([done.id]);
    expect(() => readFileSync(lock)).toThrow();
  });

  it("runs hooks around the backup and aborts on a failing pre-hook", async () => {
    const { client } = await server.host("hooks");
    const marker = path.join(work, "hook-marker");
    await expect(
      runBackup(
        options(client, "hooks", src, { hooks: { pre: ["exit 4"], post: [`touch ${marker}`] } }),
      ),
    ).rejects.toMatchObject({ code: "LB_BACKUP_PRE_HOOK_FAILED" });
    expect(await client.listSnapshots()).toEqual([]);
    expect(execFileSync("ls", [marker]).toString().trim()).toBe(marker);
  });
});

describe.runIf(root)("a whole-machine backup on a captured layout (root, loop devices)", () => {
  it("backs up every mounted filesystem the layout names, with the layout in the manifest, and restores them", async () => {
    const { Scratch, sh } = await import("../helpers/loop.ts");
    const { captureLayout } = await import("../../layouts/capture/capture.ts");
    const { liveSource } = await import("../../agent/capture/live-source.ts");
    const { loadManifest } = await import("../../agent/restore/restore.ts");
    const scratch = await Scratch.create();
    try {
      const image = await scratch.image(
        "disk.img",
        160 * 1048576,
        "label: gpt\nsize=64M, type=L, name=root\nsize=64M, type=L, name=data\n",
      );
      const disk = await scratch.attach(image);
      await sh(["mkfs.ext4", "-q", "-L", "root", disk.partition(1)]);
      await sh(["mkfs.ext4", "-q", "-L", "data", disk.partition(2)]);
      const rootMount = await scratch.mount(disk.partition(1), "root");
      mkdirSync(path.join(rootMount, "srv"));
      const dataMount = await scratch.mount(disk.partition(2), "root/srv");
      writeFileSync(path.join(rootMount, "etc-hostname"), "machine\n");
      writeFileSync(path.join(dataMount, "report.csv"), "a,b\n1,2\n");
      const { client } = await server.host("whole");
      const capture = () =>
        captureLayout(liveSource, { disks: [disk.device], now: new Date(), capturedBy: "test" });
      const summary = await runBackup(
        options(client, "whole", "", { paths: [], captureLayout: capture }),
      );
      expect(summary.filesystems.map((f) => f.mountPoint).sort()).toEqual([rootMount, dataMount]);
      const manifest = await loadManifest(client, summary.id, keys);
      expect(manifest.layout?.disks.map((d) => d.device)).toEqual([disk.device]);
      expect(manifest.filesystems.map((f) => f.fsType)).toEqual(["ext4", "ext4"]);
      const target = await restore(client, summary.id);
      expect(readFileSync(path.join(target, rootMount, "etc-hostname"), "utf8")).toBe("machine\n");
      expect(readFileSync(path.join(target, dataMount, "report.csv"), "utf8")).toBe("a,b\n1,2\n");
      // The data filesystem is its own stream: the root stream stops at the mount point.
      expect(summary.filesystems.find((f) => f.mountPoint === rootMount)!.files).toBeLessThan(8);
    } finally {
      await scratch.cleanup();
    }
  }, 60_000);
});

describe.runIf(root)("LUKS header backups (root, loop devices)", () => {
  it("stores a header backup of every LUKS device in the layout, byte for byte", async () => {
    const { Scratch, sh } = await import("../helpers/loop.ts");
    const { captureLayout } = await import("../../layouts/capture/capture.ts");
    const { liveSource } = await import("../../agent/capture/live-source.ts");
    const { loadManifest } = await import("../../agent/restore/restore.ts");
    const { decodeBlob } = await import("../../common/repository/blob.ts");
    const scratch = await Scratch.create();
    try {
      const image = await scratch.image(
        "luks.img",
        96 * 1048576,
        "label: gpt\nsize=40M, type=L, name=crypt\nsize=40M, type=L, name=plain\n",
      );
      const disk = await scratch.attach(image);
      const keyFile = path.join(scratch.dir, "key");
      writeFileSync(keyFile, "not a real secret\n");
      await sh([
        "cryptsetup",
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        keyFile,
        disk.partition(1),
      ]);
      await sh(["mkfs.ext4", "-q", disk.partition(2)]);
      const mount = await scratch.mount(disk.partition(2), "plain");
      writeFileSync(path.join(mount, "file"), "x\n");
      const { client } = await server.host("luks");
      const summary = await runBackup(
        options(client, "luks", "", {
          paths: [],
          captureLayout: () =>
            captureLayout(liveSource, {
              disks: [disk.device],
              now: new Date(),
              capturedBy: "test",
            }),
        }),
      );
      const manifest = await loadManifest(client, summary.id, keys);
      expect(manifest.luksHeaders.map((h) => h.device)).toEqual([disk.partition(1)]);
      const header = manifest.luksHeaders[0]!;
      const parts = [];
      for (const [id] of header.chunks)
        parts.push(await decodeBlob(await client.getChunk(id), id, keys));
      const stored = Buffer.concat(parts);
      const fresh = path.join(scratch.dir, "fresh.img");
      await sh([
        "cryptsetup",
        "luksHeaderBackup",
        disk.partition(1),
        "--header-backup-file",
        fresh,
      ]);
      expect(stored.equals(readFileSync(fresh))).toBe(true);
      expect(stored.length).toBe(header.sizeBytes);
      expect(summary.warnings).toEqual([]);
    } finally {
      await scratch.cleanup();
    }
  }, 60_000);
});
