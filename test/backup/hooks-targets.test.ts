import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { withHooks } from "../../agent/backup/hooks.ts";
import { backupTargets, excludesFor } from "../../agent/backup/targets.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-hooks-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const log = path.join(work, "log");

describe("hooks", () => {
  it("runs pre-hooks, the backup, then post-hooks, and records each", async () => {
    const records = await withHooks(
      { pre: [`echo pre-$LIFEBOAT_PHASE >> ${log}`], post: [`echo post >> ${log}`] },
      async () => {
        expect(readFileSync(log, "utf8")).toBe("pre-pre\n");
      },
    );
    expect(readFileSync(log, "utf8")).toBe("pre-pre\npost\n");
    expect(records.map((r) => [r.phase, r.exitCode])).toEqual([
      ["pre", 0],
      ["post", 0],
    ]);
  });

  it("aborts on a failing pre-hook, naming it, and still runs the post-hooks", async () => {
    rmSync(log, { force: true });
    let ran = false;
    const error = await withHooks(
      { pre: ["echo cannot dump >&2; exit 7"], post: [`echo post >> ${log}`] },
      async () => {
        ran = true;
      },
    ).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toMatchObject({ code: "LB_BACKUP_PRE_HOOK_FAILED" });
    expect((error as Error).message).toMatch(/exit 7.*exit 7|exit 7[\s\S]*cannot dump/);
    expect(readFileSync(log, "utf8")).toBe("post\n");
  });

  it("runs post-hooks after a failed backup and passes the failure on", async () => {
    rmSync(log, { force: true });
    await expect(
      withHooks({ pre: [], post: [`echo post >> ${log}`] }, async () => {
        throw new Error("upload failed");
      }),
    ).rejects.toThrow("upload failed");
    expect(readFileSync(log, "utf8")).toBe("post\n");
  });

  it("reports a failing post-hook in its record without failing the backup", async () => {
    const records = await withHooks({ pre: [], post: ["exit 3"] }, async () => {});
    expect(records).toEqual([expect.objectContaining({ phase: "post", exitCode: 3 })]);
  });
});

describe("backup targets", () => {
  it("takes every mounted local filesystem of a layout, not swap or pseudo ones", async () => {
    const layout = loadLayout("vm/c-raid1-luks-lvm-xfs.json");
    const targets = await backupTargets(layout, {});
    expect(targets).toEqual([
      { mountPoint: "/", device: "/dev/mapper/vg0-root", fsType: "xfs" },
      { mountPoint: "/boot", device: "/dev/md0", fsType: "ext4" },
      { mountPoint: "/boot/efi", device: "/dev/vda1", fsType: "vfat" },
    ]);
  });

  it("keeps btrfs subvolume mounts as their own targets", async () => {
    const targets = await backupTargets(loadLayout("vm/d-btrfs-subvols.json"), {});
    expect(targets.map((t) => t.mountPoint)).toEqual(["/", "/home"]);
  });

  it("refuses relative or missing --path values", async () => {
    await expect(backupTargets(null, { paths: ["relative/dir"] })).rejects.toMatchObject({
      code: "LB_BACKUP_PATH",
    });
    await expect(backupTargets(null, { paths: [path.join(work, "none")] })).rejects.toMatchObject({
      code: "LB_BACKUP_PATH",
    });
    expect(await backupTargets(null, { paths: [work] })).toEqual([
      { mountPoint: work, device: null, fsType: null },
    ]);
  });

  it("turns absolute excludes into patterns relative to each target", () => {
    const root = { mountPoint: "/", device: null, fsType: null };
    const srv = { mountPoint: "/srv", device: null, fsType: null };
    expect(excludesFor(root, ["/srv/cache/*", "*.tmp"])).toEqual(
      expect.arrayContaining(["./tmp/*", "./var/lib/lifeboat/*", "./srv/cache/*", "*/*.tmp"]),
    );
    const forSrv = excludesFor(srv, ["/srv/cache/*"]);
    expect(forSrv).toContain("./cache/*");
    expect(forSrv).not.toContain("./tmp/*");
  });
});

describe("excludes in GNU tar", () => {
  it("drops what the patterns name and nothing else", async () => {
    const { spawnTarCreate } = await import("../../agent/backup/tar.ts");
    const { execFileSync } = await import("node:child_process");
    const dir = path.join(work, "tree");
    execFileSync("bash", [
      "-c",
      `mkdir -p ${dir}/tmp/a ${dir}/keep/tmp ${dir}/c && touch ${dir}/tmp/a/f ${dir}/keep/tmp/g ${dir}/c/x.tmp ${dir}/y.tmp ${dir}/c/z`,
    ]);
    const target = { mountPoint: dir, device: null, fsType: null };
    const tar = spawnTarCreate({
      dir,
      excludes: excludesFor(target, [`${dir}/tmp/*`, "*.tmp"]),
      snarFile: path.join(work, "snar"),
    });
    const parts: Buffer[] = [];
    for await (const data of tar.stdout) parts.push(data as Buffer);
    await tar.done;
    const listed = execFileSync("tar", ["-t", "-f", "-"], { input: Buffer.concat(parts) })
      .toString()
      .split("\n")
      .filter(Boolean)
      .sort();
    expect(listed).toEqual([
      "./",
      "./c/",
      "./c/z",
      "./keep/",
      "./keep/tmp/",
      "./keep/tmp/g",
      "./tmp/",
    ]);
  });
});
