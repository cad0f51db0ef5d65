// Parsers against output recorded from the real tools on loop devices (test/fixtures/host).
import { describe, expect, it } from "vitest";
import { parseBlkidExport } from "../../../layouts/parse/blkid.ts";
import {
  parseFilesystemDf,
  parseGetDefault,
  parseSubvolumeList,
} from "../../../layouts/parse/btrfs.ts";
import { parseDumpe2fs } from "../../../layouts/parse/ext.ts";
import { parseFindmnt } from "../../../layouts/parse/findmnt.ts";
import { descendants, parseLsblk } from "../../../layouts/parse/lsblk.ts";
import { parseSfdiskJson } from "../../../layouts/parse/sfdisk.ts";
import { parseXfsInfo } from "../../../layouts/parse/xfs.ts";
import { loadLayout, rawOutput } from "../../helpers/fixtures.ts";

const gpt = loadLayout("host/gpt-mixed.json").raw;
const mbr = loadLayout("host/mbr-logical.json").raw;

describe("sfdisk --json", () => {
  it("reads a GPT table in bytes, with types, PARTUUIDs, names and roles", () => {
    const table = parseSfdiskJson(rawOutput(gpt, "sfdisk", "--json"));
    expect(table.type).toBe("gpt");
    expect(table.id).toMatch(/^[0-9A-F-]{36}$/);
    expect(table.firstLba).toBe(2048);
    expect(table.partitions.map((p) => [p.number, p.startBytes, p.sizeBytes, p.name])).toEqual([
      [1, 1048576, 1048576, "bios"],
      [2, 2097152, 209715200, "root"],
      [3, 211812352, 335544320, "data"],
      [4, 547356672, 314572800, "pool"],
      [5, 861929472, 104857600, "swap"],
    ]);
    expect(table.partitions[0]!.roles).toEqual(["bios_grub"]);
    expect(table.partitions[4]!.roles).toEqual(["swap"]);
    expect(table.partitions[1]!.type).toBe("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    expect(table.partitions[1]!.partUuid).toMatch(/^[0-9A-F-]{36}$/);
  });

  it("reads an MBR table with an extended partition, logical partitions and the boot flag", () => {
    const table = parseSfdiskJson(rawOutput(mbr, "sfdisk", "--json"));
    expect(table.type).toBe("dos");
    expect(table.id).toBe("0x5eed1234");
    expect(
      table.partitions.map((p) => `${p.number}:${p.kind}:${p.type}:${p.roles.join("+")}`),
    ).toEqual([
      "1:primary:0x83:boot",
      "2:extended:0x5:extended",
      "5:logical:0x83:",
      "6:logical:0x82:swap",
      "7:logical:0x83:",
    ]);
    expect(table.partitions.map((p) => p.partUuid)).toEqual([
      "5eed1234-01",
      "5eed1234-02",
      "5eed1234-05",
      "5eed1234-06",
      "5eed1234-07",
    ]);
  });
});

describe("blkid -p -o export", () => {
  it("reads filesystem signatures and partition-table facts", () => {
    const root = parseBlkidExport(
      "/dev/loop0p2",
      rawOutput(gpt, "blkid", "-p", "-o", "export", "/dev/loop0p2"),
    );
    expect(root).toMatchObject({ type: "ext4", label: "root", usage: "filesystem" });
    expect(root.uuid).toMatch(/^[0-9a-f-]{36}$/);
    const disk = parseBlkidExport(
      "/dev/loop0",
      rawOutput(gpt, "blkid", "-p", "-o", "export", "/dev/loop0"),
    );
    expect(disk.ptType).toBe("gpt");
    expect(disk.type).toBeNull();
    const swap = parseBlkidExport(
      "/dev/loop1p6",
      rawOutput(mbr, "blkid", "-p", "-o", "export", "/dev/loop1p6"),
    );
    expect(swap).toMatchObject({ type: "swap", label: "swap" });
  });

  it("treats empty output (nothing found) as no signature", () => {
    expect(parseBlkidExport("/dev/x", "")).toMatchObject({
      device: "/dev/x",
      type: null,
      uuid: null,
    });
  });
});

describe("lsblk -J -O -b", () => {
  it("flattens the tree and links partitions to their disk", () => {
    const nodes = parseLsblk(rawOutput(gpt, "lsblk"));
    const disk = nodes.get("loop0")!;
    expect(disk.type).toBe("loop");
    expect(disk.sizeBytes).toBe(1200 * 1048576);
    expect(descendants(nodes, "loop0").sort()).toEqual([
      "loop0p1",
      "loop0p2",
      "loop0p3",
      "loop0p4",
      "loop0p5",
    ]);
    expect(nodes.get("loop0p3")!.parents).toEqual(["loop0"]);
  });
});

describe("findmnt -J -b -l", () => {
  it("reads mounts with options, subtree and usage", () => {
    const mounts = parseFindmnt(rawOutput(gpt, "findmnt"));
    const pool = mounts.find((m) => m.device === "/dev/loop0p4")!;
    expect(pool.fsType).toBe("btrfs");
    expect(pool.options).toContain("subvolid=5");
    expect(pool.fsRoot).toBe("/");
    expect(pool.sizeBytes).toBeGreaterThan(0);
    const proc = mounts.find((m) => m.target === "/proc")!;
    expect(proc.fsType).toBe("proc");
  });
});

describe("filesystem tools", () => {
  it("dumpe2fs -h: geometry and features of ext4", () => {
    const sb = parseDumpe2fs(rawOutput(gpt, "dumpe2fs", "-h"));
    expect(sb).toMatchObject({
      label: "root",
      blockSize: 1024,
      inodeSize: 256,
      blockCount: 204800,
    });
    expect(sb.reservedBlockCount).toBe(10240);
    expect(sb.features).toEqual(expect.arrayContaining(["has_journal", "extent", "metadata_csum"]));
  });

  it("xfs_info: geometry and feature flags", () => {
    const g = parseXfsInfo(rawOutput(gpt, "xfs_info"));
    expect(g).toMatchObject({
      blockSize: 4096,
      sectorSize: 512,
      inodeSize: 512,
      agCount: 4,
      dataBlocks: 81920,
      logInternal: true,
      logBlocks: 16384,
    });
    expect(g.features).toMatchObject({ crc: 1, reflink: 1, rmapbt: 0, bigtime: 1 });
  });

  it("btrfs: subvolumes, default subvolume and profiles", () => {
    const subvolumes = parseSubvolumeList(rawOutput(gpt, "btrfs", "subvolume", "list"));
    expect(subvolumes.map((s) => [s.id, s.parentId, s.path])).toEqual([
      [256, 5, "@"],
      [257, 5, "@home"],
    ]);
    expect(subvolumes[0]!.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(parseGetDefault(rawOutput(gpt, "btrfs", "subvolume", "get-default"))).toEqual({
      id: 256,
      path: "@",
    });
    expect(parseGetDefault("ID 5 (FS_TREE)\n")).toEqual({ id: 5, path: "" });
    expect(parseFilesystemDf(rawOutput(gpt, "btrfs", "--format", "json"))).toEqual({
      data: "single",
      metadata: "dup",
      system: "dup",
    });
  });
});
