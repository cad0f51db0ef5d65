// The host round trip on loop devices: build real disk images, capture them, apply the
// plan to blank images of the same size and 50% larger, capture again, and compare. The
// layouts must match except for the sizes that are expected to change.
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { MiB } from "../../common/units.ts";
import { parseLayout } from "../../layouts/document.ts";
import { compareLayouts } from "../../layouts/drift.ts";
import type { Layout } from "../../layouts/schema.ts";
import { cli } from "../helpers/cli.ts";
import { isRoot, Scratch, sh, sha256File, type LoopDisk } from "../helpers/loop.ts";

const GPT_TABLE = `label: gpt
size=1M, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=200M, type=L, name=root
size=320M, type=L, name=data
size=300M, type=L, name=pool
size=100M, type=S, name=swap
`;
const GPT_SIZE = 1200 * MiB;

const MBR_TABLE = `label: dos
label-id: 0x5eed1234
,64M,83,*
,,5
,100M,83
,50M,82
,,83
`;
const MBR_SIZE = 512 * MiB;

let scratch: Scratch;

beforeAll(() => {
  if (!isRoot())
    throw new Error("the loop-device integration tests need root (make test runs as root in CI)");
});

afterEach(async () => {
  await scratch?.cleanup();
});

async function buildGpt(): Promise<LoopDisk> {
  const disk = await scratch.attach(await scratch.image("gpt.img", GPT_SIZE, GPT_TABLE));
  await sh(["mkfs.ext4", "-q", "-L", "root", disk.partition(2)]);
  await sh(["mkfs.xfs", "-q", "-L", "data", disk.partition(3)]);
  await sh(["mkfs.btrfs", "-q", "-L", "pool", disk.partition(4)]);
  await sh(["mkswap", "-q", "-L", "swap", disk.partition(5)]);
  const root = await scratch.mount(disk.partition(2), "root");
  await scratch.mount(disk.partition(3), "data");
  const pool = await scratch.mount(disk.partition(4), "pool");
  await sh(["btrfs", "-q", "subvolume", "create", `${pool}/@`]);
  await sh(["btrfs", "-q", "subvolume", "create", `${pool}/@home`]);
  await sh(["btrfs", "subvolume", "set-default", `${pool}/@`]);
  await sh(["dd", "if=/dev/urandom", `of=${root}/payload`, "bs=1M", "count=20", "status=none"]);
  return disk;
}

async function buildMbr(): Promise<LoopDisk> {
  const disk = await scratch.attach(await scratch.image("mbr.img", MBR_SIZE, MBR_TABLE));
  await sh(["mkfs.ext4", "-q", "-L", "boot", disk.partition(1)]);
  await sh(["mkfs.ext4", "-q", "-L", "root", disk.partition(5)]);
  await sh(["mkswap", "-q", "-L", "swap", disk.partition(6)]);
  await sh(["mkfs.ext4", "-q", "-L", "data", disk.partition(7)]);
  await scratch.mount(disk.partition(5), "mbr-root");
  return disk;
}

async function capture(disk: LoopDisk, name: string): Promise<Layout> {
  const out = path.join(scratch.dir, `${name}.json`);
  const result = await cli("layout", "capture", "--disk", disk.device, "--out", out);
  expect(result.code, result.stderr).toBe(0);
  return parseLayout(JSON.parse(await readFile(out, "utf8")), out);
}

/** Capture the source, then detach it so its twin (same UUIDs) can be mounted. */
async function captureAndDetach(disk: LoopDisk): Promise<{ layout: Layout; file: string }> {
  const layout = await capture(disk, "source");
  await scratch.unmountAll();
  await scratch.detach(disk);
  await sh(["btrfs", "device", "scan", "--forget"]).catch(() => undefined);
  return { layout, file: path.join(scratch.dir, "source.json") };
}

/** The recaptured layout with the target's device names swapped back to the source's. */
function asSource(layout: Layout, from: string, to: string): Layout {
  const json = JSON.stringify(layout).replace(new RegExp(`${to}(?=p\\d|")`, "g"), from);
  return parseLayout(JSON.parse(json), "renamed layout");
}

async function restoreOnto(source: { layout: Layout; file: string }, sizeBytes: number) {
  const target = await scratch.attach(await scratch.image(`target-${sizeBytes}.img`, sizeBytes));
  const root = path.join(scratch.dir, "restore-root");
  const from = source.layout.disks[0]!.device;
  const apply = await cli(
    "layout",
    "apply",
    "--layout",
    source.file,
    "--map",
    `${from}=${target.device}`,
    "--target-root",
    root,
    "--yes",
  );
  expect(apply.code, apply.stderr).toBe(0);
  // Captured while the restore is mounted, so that btrfs subvolumes can be read.
  const again = await capture(target, "restored");
  await scratch.unmountTree(root);
  return asSource(again, from, target.device);
}

/** Drift without the mount table: the restore mounted under another root. */
function layoutChanges(saved: Layout, live: Layout): string[] {
  return compareLayouts(saved, live)
    .filter((c) => !c.subject.startsWith("mount "))
    .map((c) => c.message);
}

describe("host round trip on loop devices", () => {
  it("GPT with ext4, xfs, btrfs subvolumes and swap: identical on a same-size disk", async () => {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildGpt());
    const restored = await restoreOnto(source, GPT_SIZE);
    expect(layoutChanges(source.layout, restored)).toEqual([]);
    const btrfs = restored.filesystems.find((f) => f.type === "btrfs");
    expect(btrfs?.type === "btrfs" && btrfs.subvolumes.map((s) => s.path).sort()).toEqual([
      "@",
      "@home",
    ]);
    expect(btrfs?.type === "btrfs" && btrfs.defaultSubvolume.path).toBe("@");
  });

  it("GPT onto a disk 50% larger: only the disk, the growable partition and what follows it change", async () => {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildGpt());
    const restored = await restoreOnto(source, GPT_SIZE * 1.5);
    const d = source.layout.disks[0]!.device;
    expect(layoutChanges(source.layout, restored)).toEqual([
      `disk ${d} grew from 1.2 GiB to 1.8 GiB`,
      `partition ${d}p4 grew from 300.0 MiB to 900.0 MiB`,
      `partition ${d}p5: start changed from 822.0 MiB to 1.4 GiB`,
    ]);
  });

  it("MBR with logical partitions: identical on a same-size disk", async () => {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildMbr());
    const restored = await restoreOnto(source, MBR_SIZE);
    expect(layoutChanges(source.layout, restored)).toEqual([]);
    const kinds = restored.disks[0]!.partitionTable!.partitions.map((p) => `${p.number}:${p.kind}`);
    expect(kinds).toEqual(["1:primary", "2:extended", "5:logical", "6:logical", "7:logical"]);
  });

  it("MBR onto a disk 50% larger: the last logical partition and its extended container grow", async () => {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildMbr());
    const restored = await restoreOnto(source, MBR_SIZE * 1.5);
    const d = source.layout.disks[0]!.device;
    expect(layoutChanges(source.layout, restored)).toEqual([
      `disk ${d} grew from 512.0 MiB to 768.0 MiB`,
      `partition ${d}p2 grew from 447.0 MiB to 703.0 MiB`,
      `partition ${d}p7 grew from 294.0 MiB to 550.0 MiB`,
      `filesystem on ${d}p7 grew from 294.0 MiB to 550.0 MiB`,
    ]);
  });
});

describe("a failed apply resumes", () => {
  it("skips the finished steps on a rerun and keeps what they made", async () => {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildGpt());
    const target = await scratch.attach(await scratch.image("target.img", GPT_SIZE));
    const root = path.join(scratch.dir, "restore-root");
    process.env.LIFEBOAT_STATE_DIR = path.join(scratch.dir, "state");
    const args = [
      "layout",
      "apply",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=${target.device}`,
      "--target-root",
      root,
      "--yes",
    ];
    // A file where the target root should be: every step up to the first mount succeeds.
    await writeFile(root, "in the way");
    const first = await cli(...args);
    expect(first.code).toBe(3);
    expect(first.stderr).toContain("LB_APPLY_STEP_FAILED");
    expect(first.stderr).toMatch(/Step \d+\/\d+ failed: Mount /);
    // Something written between the runs must survive the rerun: no filesystem is remade.
    const probe = await scratch.mount(target.partition(2), "probe");
    await writeFile(path.join(probe, "written-between-runs"), "still here");
    await scratch.unmountAll();
    await rm(root);
    const second = await cli(...args);
    expect(second.code, second.stderr).toBe(0);
    const done = second.stdout.split("\n").filter((l) => l.includes("already done")).length;
    expect(done).toBe(7); // wipe, partition, 4 x mkfs, btrfs subvolumes
    const rootMount = source.layout.mounts.entries.find((m) => m.source.endsWith("p2"))!.target;
    expect(await readFile(path.join(root, rootMount, "written-between-runs"), "utf8")).toBe(
      "still here",
    );
    delete process.env.LIFEBOAT_STATE_DIR;
  });
});

describe("refusals write nothing", () => {
  async function setup() {
    scratch = await Scratch.create();
    const source = await captureAndDetach(await buildGpt());
    return source;
  }

  async function expectUntouched(image: string, before: string) {
    expect(await sha256File(image)).toBe(before);
  }

  it("refuses --map to a disk that does not exist", async () => {
    const source = await setup();
    const result = await cli(
      "layout",
      "apply",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=/dev/lifeboat-missing`,
      "--yes",
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_MAP_TARGET_MISSING");
    expect(result.stderr).toContain("there is no disk /dev/lifeboat-missing");
  });

  it("refuses a disk that is too small and gives the numbers", async () => {
    const source = await setup();
    const image = await scratch.image("small.img", 400 * MiB);
    const target = await scratch.attach(image);
    const before = await sha256File(image);
    const result = await cli(
      "layout",
      "apply",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=${target.device}`,
      "--yes",
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_TARGET_TOO_SMALL");
    expect(result.stderr).toMatch(/needs at least \d+\.\d MiB/);
    await expectUntouched(image, before);
  });

  it("refuses a disk with a mounted filesystem", async () => {
    const source = await setup();
    // The mount check comes before the size check, so a small disk shows it.
    const image = await scratch.image("busy.img", 64 * MiB, "label: gpt\n,\n");
    const target = await scratch.attach(image);
    await sh(["mkfs.ext4", "-q", target.partition(1)]);
    // Read-only, so that mounting and unmounting write nothing either.
    await scratch.mount(target.partition(1), "busy", ["-o", "ro"]);
    const before = await sha256File(image);
    const result = await cli(
      "layout",
      "apply",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=${target.device}`,
      "--yes",
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_TARGET_MOUNTED");
    await scratch.unmountAll();
    await expectUntouched(image, before);
  });

  it("refuses the disk that holds the backup source", async () => {
    const source = await setup();
    const image = await scratch.image("backup.img", GPT_SIZE, "label: gpt\n,\n");
    const target = await scratch.attach(image);
    await sh(["mkfs.ext4", "-q", target.partition(1)]);
    const backup = await scratch.mount(target.partition(1), "backup");
    const result = await cli(
      "layout",
      "plan",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=${target.device}`,
      "--source",
      backup,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_TARGET_PROTECTED");
    expect(result.stderr).toContain(`holds the backup source ${backup}`);
  });

  it("needs --yes, and without it changes nothing", async () => {
    const source = await setup();
    const image = await scratch.image("blank.img", GPT_SIZE);
    const target = await scratch.attach(image);
    const before = await sha256File(image);
    const result = await cli(
      "layout",
      "apply",
      "--layout",
      source.file,
      "--map",
      `${source.layout.disks[0]!.device}=${target.device}`,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_CONFIRM");
    expect(result.stderr).toContain("This will destroy:");
    await expectUntouched(image, before);
  });
});
