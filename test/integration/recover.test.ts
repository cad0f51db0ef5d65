// The recovery engine end to end on the host: a loop disk is captured and backed up to a
// real server, then `runRecovery` rebuilds it on a blank loop disk (wipe, partition, mkfs
// with the same UUIDs, mount, restore) in automatic mode, and again over its own result.
// The layout covers only those disks (--disk), so there is no boot path to install; GRUB
// and the initramfs are proven by the QEMU scenarios in vm-tests/.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../agent/backup/backup.ts";
import { liveSource } from "../../agent/capture/live-source.ts";
import { exportSnapshot, LocalSnapshotSource } from "../../agent/client/local.ts";
import { loadManifest } from "../../agent/restore/restore.ts";
import { backupOptions, quietProgress as quiet } from "../helpers/backup.ts";
import { LifeboatError } from "../../common/errors.ts";
import { deriveKeys } from "../../common/repository/keys.ts";
import { captureLayout } from "../../layouts/capture/capture.ts";
import { parseBlkidExport } from "../../layouts/parse/blkid.ts";
import { RecoveryLog, parseStepMarkers } from "../../rescue/recover/log.ts";
import { runRecovery, type RecoverOptions } from "../../rescue/recover/recover.ts";
import { Scratch, sh } from "../helpers/loop.ts";
import { startServer, type TestServer } from "../helpers/server.ts";
import { buildAttributeTree, compareTrees, recordTree } from "../helpers/treecheck.ts";

const root = process.getuid?.() === 0;
const keys = deriveKeys(Buffer.alloc(32, 9));
let server: TestServer;

beforeAll(async () => {
  if (root) server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

async function uuidOf(device: string) {
  const { stdout } = await sh(["blkid", "-p", "-o", "export", device]);
  return parseBlkidExport(device, stdout).uuid;
}

describe.runIf(root)("lifeboat recover on loop devices (root)", () => {
  it("rebuilds captured disks on a blank one, restores the data with every attribute, and can run again", async () => {
    const scratch = await Scratch.create();
    try {
      const image = await scratch.image(
        "source.img",
        200 * 1048576,
        "label: gpt\nsize=96M, type=L, name=root\nsize=64M, type=L, name=data\n",
      );
      const source = await scratch.attach(image);
      await sh(["mkfs.ext4", "-q", "-L", "root", source.partition(1)]);
      await sh(["mkfs.ext4", "-q", "-L", "data", source.partition(2)]);
      const rootMount = await scratch.mount(source.partition(1), "src");
      mkdirSync(path.join(rootMount, "srv"));
      const dataMount = await scratch.mount(source.partition(2), "src/srv");
      mkdirSync(path.join(rootMount, "tree"));
      buildAttributeTree(path.join(rootMount, "tree"));
      writeFileSync(path.join(dataMount, "orders.csv"), "id,total\n1,20\n");

      const { client } = await server.host("recover-loop");
      const backup = await runBackup(
        backupOptions(
          {
            client,
            host: "recover-loop",
            keys,
            paths: [],
            stateDir: path.join(scratch.dir, "agent-state"),
          },
          {
            captureLayout: () =>
              captureLayout(liveSource, {
                disks: [source.device],
                now: new Date(),
                capturedBy: "test",
              }),
          },
        ),
      );
      const expectedTree = recordTree(path.join(rootMount, "tree"));
      const uuids = [await uuidOf(source.partition(1)), await uuidOf(source.partition(2))];
      await scratch.unmountAll();

      const target = await scratch.attach(await scratch.image("target.img", 256 * 1048576));
      const targetRoot = path.join(scratch.dir, "recovered");
      const consoleText: string[] = [];
      const recover = (extra: Partial<RecoverOptions> = {}) =>
        runRecovery({
          auto: true,
          client,
          keys,
          host: null,
          snapshot: null,
          fallbackLayout: null,
          maps: { [source.device]: target.device },
          keyFiles: {},
          keyUrls: {},
          targetRoot,
          stateDir: path.join(scratch.dir, "state"),
          console: { write: (t) => void consoleText.push(t), isTTY: false },
          log: new RecoveryLog({ write: (t) => void consoleText.push(t) }, null),
          verbose: false,
          drill: null,
          ...extra,
        });

      // The source disk must never be touched, even though it is attached and unmounted.
      const result = await recover();
      expect(result.snapshot).toBe(backup.id);
      expect(result.steps.map((s) => s.name)).toEqual([
        "connect",
        "plan",
        "layout",
        "data",
        "finish",
      ]);
      const marks = parseStepMarkers(consoleText.join(""));
      expect(marks.filter((m) => m.state === "done").map((m) => m.name)).toEqual([
        "connect",
        "plan",
        "layout",
        "data",
        "finish",
      ]);
      // Everything is unmounted at the end, and the filesystems kept their UUIDs.
      const { stdout: mounts } = await sh(["findmnt", "-rn", "-o", "TARGET"]);
      expect(mounts.split("\n").filter((t) => t.startsWith(targetRoot))).toEqual([]);
      expect([await uuidOf(target.partition(1)), await uuidOf(target.partition(2))]).toEqual(uuids);

      const check = async () => {
        const back = await scratch.mount(target.partition(1), "check");
        await scratch.mount(target.partition(2), "check/srv");
        expect(compareTrees(expectedTree, recordTree(path.join(back, "tree")))).toEqual([]);
        expect(readFileSync(path.join(back, "srv", "orders.csv"), "utf8")).toBe("id,total\n1,20\n");
        await scratch.unmountAll();
      };
      await check();

      // Again, over its own result (an operator rerunning after a reboot): same outcome.
      const again = await recover();
      expect(again.snapshot).toBe(backup.id);
      await check();
      expect(await uuidOf(source.partition(1))).toBe(uuids[0]);

      // Offline, from a snapshot export (what a rescue medium with --embed carries).
      const exported = path.join(scratch.dir, "export");
      const { chunks } = await exportSnapshot({ client, keys, snapshot: backup.id, dir: exported });
      expect(chunks).toBeGreaterThan(0);
      const offline = await recover({ client: await LocalSnapshotSource.open(exported) });
      expect(offline.snapshot).toBe(backup.id);
      await check();
      const chunkDir = path.join(exported, "chunks");
      // A chunk of the first stream, which a full recovery can't do without.
      const manifest = await loadManifest(client, backup.id, keys);
      const victim = manifest.filesystems[0]!.streams[0]!.chunks[0]![0];
      expect(readdirSync(chunkDir)).toContain(victim);
      const bytes = readFileSync(path.join(chunkDir, victim));
      bytes[bytes.length - 1]! ^= 1;
      writeFileSync(path.join(chunkDir, victim), bytes);
      await expect(recover({ client: await LocalSnapshotSource.open(exported) })).rejects.toThrow(
        LifeboatError,
      );
      rmSync(path.join(exported, "export.json"));
      await expect(LocalSnapshotSource.open(exported)).rejects.toThrow(
        /neither a complete snapshot export/,
      );

      // A failed run says why, and the outcomes are on the server with their logs.
      await expect(recover({ snapshot: "0".repeat(28) })).rejects.toThrow(/not on the server/);
      const reports = await client.listRecoveries();
      expect(reports.map((r) => [r.ok, r.snapshot, r.error?.code ?? null])).toEqual([
        [false, "0".repeat(28), "LB_RECOVER_NO_SNAPSHOT"],
        [true, backup.id, null],
        [true, backup.id, null],
      ]);
      expect(reports[1]!.steps.map((s) => s.name)).toContain("data");
      expect(await client.recoveryLog(reports[1]!.id)).toMatch(/LIFEBOAT-STEP data done \d+/);
    } finally {
      await scratch.cleanup();
    }
  }, 180_000);
});
