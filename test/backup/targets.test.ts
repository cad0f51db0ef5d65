// Backup targets from recorded layouts, --path targets, and exclude patterns as GNU tar
// applies them.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  backupTargets,
  DEFAULT_EXCLUDES,
  excludesFor,
  type BackupTarget,
} from "../../agent/backup/targets.ts";
import type { Layout } from "../../layouts/schema.ts";
import { loadLayout, vmFixtures } from "../helpers/fixtures.ts";
import { readTarStream } from "../helpers/tarstream.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-targets-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const target = (mountPoint: string, extra: Partial<BackupTarget> = {}): BackupTarget => ({
  mountPoint,
  device: null,
  fsType: null,
  ...extra,
});

describe("targets from a layout", () => {
  it("takes every mounted local filesystem of a layout, not swap or pseudo ones", async () => {
    const targets = await backupTargets(loadLayout("vm/c-raid1-luks-lvm-xfs.json"), {});
    expect(targets).toEqual([
      { mountPoint: "/", device: "/dev/mapper/vg0-root", fsType: "xfs" },
      { mountPoint: "/boot", device: "/dev/md0", fsType: "ext4" },
      { mountPoint: "/boot/efi", device: "/dev/vda1", fsType: "vfat" },
    ]);
  });

  it.each(vmFixtures())("%s: one target per local mount, none of the excluded", async (name) => {
    const layout = loadLayout(`vm/${name}.json`);
    const targets = await backupTargets(layout, {});
    expect(targets.map((t) => t.mountPoint)).toEqual(
      layout.mounts.entries.map((m) => m.target).sort(),
    );
    const excluded = new Set(layout.mounts.excluded.map((m) => m.target));
    expect(targets.filter((t) => excluded.has(t.mountPoint))).toEqual([]);
  });

  it("keeps btrfs subvolume mounts as their own targets", async () => {
    const targets = await backupTargets(loadLayout("vm/d-btrfs-subvols.json"), {});
    expect(targets.map((t) => t.mountPoint)).toEqual(["/", "/home"]);
  });

  it("adds nested btrfs subvolumes that are not mounted, but not snapshots", async () => {
    const layout = structuredClone(loadLayout("vm/d-btrfs-subvols.json"));
    const fs = layout.filesystems[0]!;
    if (fs.type !== "btrfs") throw new Error("fixture changed");
    const sub = (id: number, p: string) => ({ id, parentId: 256, path: p, uuid: `u${id}` });
    fs.subvolumes.push(
      sub(300, "@/var/lib/machines"),
      sub(301, "@/.snapshots"),
      sub(302, "@/.snapshots/1/snapshot"),
      sub(303, "@home/alice/vm"),
      sub(304, "@srv"), // a sibling of @, not mounted: nothing reaches it
    );
    const targets = await backupTargets(layout, {});
    expect(targets).toEqual([
      { mountPoint: "/", device: "/dev/vda2", fsType: "btrfs" },
      { mountPoint: "/home", device: "/dev/vda2", fsType: "btrfs" },
      { mountPoint: "/home/alice/vm", device: "/dev/vda2", fsType: "btrfs" },
      { mountPoint: "/var/lib/machines", device: "/dev/vda2", fsType: "btrfs" },
    ]);
  });

  it("skips bind mounts, repeated mounts, excluded and non-local mounts, and places swap files", async () => {
    const layout: Layout = structuredClone(loadLayout("vm/a-bios-gpt-ext4.json"));
    const root = layout.mounts.entries.find((m) => m.target === "/")!;
    layout.mounts.entries.push(
      { ...root, target: "/var/www", fsRoot: "/srv/www" }, // bind of a directory of /
      { ...root, target: "/mnt/again" }, // the same filesystem mounted twice
      { ...root, target: "/mnt/odd", source: "/dev/vdz1" }, // marked excluded below
      { ...root, target: "/mnt/nfs", source: "/dev/vdz2", fsType: "nfs4" },
    );
    layout.mounts.excluded.push({
      target: "/mnt/odd",
      source: "/dev/vdz1",
      fsType: "ext4",
      reason: "read-only image",
    });
    layout.swapFiles.push(
      { path: "/swapfile", sizeBytes: 1 << 30, uuid: null, label: null, priority: -2 },
      { path: "/boot/swap[1]", sizeBytes: 1 << 20, uuid: null, label: null, priority: -3 },
    );
    const targets = await backupTargets(layout, {});
    expect(targets).toEqual([
      { mountPoint: "/", device: "/dev/vda4", fsType: "ext4", swapFiles: ["/swapfile"] },
      { mountPoint: "/boot", device: "/dev/vda2", fsType: "ext4", swapFiles: ["/boot/swap[1]"] },
    ]);
    expect(excludesFor(targets[0]!, [])).toContain("./swapfile");
    expect(excludesFor(targets[1]!, [])).toContain("./swap\\[1\\]");
  });

  it("needs a layout for a whole-machine backup", async () => {
    await expect(backupTargets(null, {})).rejects.toMatchObject({ code: "LB_BACKUP_NO_LAYOUT" });
  });
});

describe("--path targets", () => {
  it("takes absolute, existing directories by their real path", async () => {
    const dir = path.join(work, "data");
    mkdirSync(path.join(dir, "inner"), { recursive: true });
    symlinkSync(dir, path.join(work, "via-link"));
    expect(await backupTargets(null, { paths: [path.join(work, "via-link"), dir] })).toEqual([
      { mountPoint: dir, device: null, fsType: null },
    ]);
  });

  it.each([
    ["relative/dir", /not an absolute path/],
    ["/nonexistent-lifeboat-path", /is missing/],
    ["/etc/hostname", /is not a directory/],
  ])("refuses %s", async (given, message) => {
    const error = await backupTargets(null, { paths: [given] }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "LB_BACKUP_PATH" });
    expect((error as Error).message).toMatch(message);
  });

  it("refuses a path inside another, naming both", async () => {
    const outer = path.join(work, "outer");
    mkdirSync(path.join(outer, "in"), { recursive: true });
    await expect(backupTargets(null, { paths: [path.join(outer, "in"), outer] })).rejects.toThrow(
      `--path ${outer}/in is inside --path ${outer}`,
    );
  });
});

describe("excludesFor", () => {
  it("turns absolute excludes into anchored patterns relative to each target", () => {
    const root = excludesFor(target("/"), ["/srv/cache/*", "*.tmp", "node_modules/", "/data/"]);
    expect(root).toEqual([
      ...DEFAULT_EXCLUDES.map((p) => `.${p}`),
      "./srv/cache/*",
      "*/*.tmp",
      "*/node_modules",
      "./data",
    ]);
    const srv = excludesFor(target("/srv"), ["/srv/cache/*", "/srv", "/srvx/y", "*.tmp"]);
    expect(srv).toEqual(["./cache/*", "*/*.tmp"]);
  });
});

describe("excludes in GNU tar", () => {
  it("drops exactly what the patterns name", async () => {
    const dir = path.join(work, "tree");
    execFileSync("bash", [
      "-c",
      `mkdir -p ${dir}/tmp/a ${dir}/keep/tmp ${dir}/c ${dir}/var/lib/lifeboat/backup
       touch ${dir}/tmp/a/f ${dir}/keep/tmp/g ${dir}/c/x.tmp ${dir}/y.tmp ${dir}/c/z \
             ${dir}/var/lib/lifeboat/backup/snar '${dir}/swap[1]' ${dir}/swap1 '${dir}/with space'`,
    ]);
    const t = target(dir, { swapFiles: [`${dir}/swap[1]`] });
    const { stream } = await readTarStream({
      dir,
      // As the default "/var/lib/lifeboat/*" for "/": "*" spans directories.
      excludes: excludesFor(t, [
        `${dir}/tmp/*`,
        "*.tmp",
        `${dir}/with space`,
        `${dir}/var/lib/lifeboat/*`,
      ]),
      snarFile: path.join(work, "snar"),
    });
    const listed = execFileSync("tar", ["-t", "-f", "-"], { input: stream })
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
      "./keep/tmp/g", // only the top-level tmp is excluded: anchoring works
      "./swap1", // the swap file's name was escaped, not taken as a pattern
      "./tmp/",
      "./var/",
      "./var/lib/",
      "./var/lib/lifeboat/", // its contents are not restored; the directory is
    ]);
    // Unanchored, the same relative pattern would also take keep/tmp/g.
    const unanchored = execFileSync("tar", ["-c", "-f", "-", "--exclude=tmp/*", "-C", dir, "."]);
    const all = execFileSync("tar", ["-t", "-f", "-"], { input: unanchored }).toString();
    expect(all).not.toContain("./keep/tmp/g");
  });
});
