import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runCli } from "../../agent/cli/main.ts";
import { LifeboatError } from "../../common/errors.ts";
import { parseLayout } from "../../layouts/document.ts";
import { importRearLayout, UNRECORDED, type RearImport } from "../../layouts/rear.ts";
import {
  LayoutSchema,
  type BtrfsFs,
  type ExtFs,
  type Filesystem,
  type Layout,
  type Lv,
  type Partition,
  type XfsFs,
} from "../../layouts/schema.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/rear/", import.meta.url));
const NOW = new Date("2026-11-22T10:00:00Z");
const MiB = 1024 * 1024;

const GPT = {
  esp: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
  biosBoot: "21686148-6449-6E6F-744E-656564454649",
  linuxFs: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
  swap: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
  lvm: "E6D6D379-F507-44C2-A23C-238F2A3DF928",
  raid: "A19D880F-05FC-4D3B-A006-743F0F84911E",
};

function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

function load(name: string): RearImport {
  return importRearLayout(readFileSync(fixture(name), "utf8"), { source: name, now: NOW });
}

function parse(text: string): RearImport {
  return importRearLayout(text, { source: "inline.conf", now: NOW });
}

function partitions(layout: Layout, device: string): Partition[] {
  const owner = [...layout.disks, ...layout.md].find((d) => d.device === device);
  if (!owner?.partitionTable) throw new Error(`no partition table on ${device}`);
  return owner.partitionTable.partitions;
}

function fs<T extends Filesystem["type"]>(layout: Layout, device: string, type: T) {
  const found = layout.filesystems.find((f) => f.device === device);
  if (found?.type !== type) throw new Error(`no ${type} filesystem on ${device}`);
  return found as Filesystem & { type: T };
}

function lv(layout: Layout, vg: string, name: string): Lv {
  const found = layout.lvm.vgs.find((v) => v.name === vg)?.lvs.find((l) => l.name === name);
  if (!found) throw new Error(`no LV ${vg}/${name}`);
  return found;
}

/** [line, reason pattern] pairs, in order. */
function reasons(result: RearImport): [number, string][] {
  return result.unmapped.map((u) => [u.line, u.reason]);
}

describe("every fixture", () => {
  const names = readdirSync(FIXTURES).filter((name) => name.endsWith(".conf"));

  it("has at least the seven layouts the importer must cover", () => {
    expect(names.length).toBeGreaterThanOrEqual(7);
  });

  it.each(names)("%s becomes a valid layout that keeps the input verbatim", (name) => {
    const { layout } = load(name);
    expect(() => LayoutSchema.parse(layout)).not.toThrow();
    expect(layout.capturedBy).toBe("lifeboat import-rear");
    expect(layout.capturedAt).toBe("2026-11-22T10:00:00.000Z");
    expect(layout.scope.wholeMachine).toBe(true);
    expect(layout.scope.disks).toEqual(layout.disks.map((d) => d.device));
    expect(layout.disks.length).toBeGreaterThan(0);
    const input = readFileSync(fixture(name), "utf8");
    if (!input.includes("password=")) expect(layout.raw.files["disklayout.conf"]).toBe(input);
  });
});

describe("BIOS, GPT with bios_grub, ext4 and swap", () => {
  const { layout, unmapped } = load("bios-gpt-ext4-swap.conf");

  it("maps every line", () => {
    expect(unmapped).toEqual([]);
  });

  it("keeps the partition geometry, types and PARTUUIDs", () => {
    const disk = layout.disks[0];
    expect(disk?.sizeBytes).toBe(21474836480);
    expect(disk?.partitionTable?.type).toBe("gpt");
    expect(partitions(layout, "/dev/sda")).toMatchObject([
      { number: 1, startBytes: MiB, sizeBytes: MiB, type: GPT.biosBoot, roles: ["bios_grub"] },
      { number: 2, startBytes: 2 * MiB, sizeBytes: 2147483648, type: GPT.swap, roles: ["swap"] },
      {
        number: 3,
        device: "/dev/sda3",
        startBytes: 2149580800,
        sizeBytes: 19324207104,
        type: GPT.linuxFs,
        roles: [],
        name: null,
        kind: "primary",
        partUuid: "7A6B5C4D-3E2F-4A1B-9C8D-7E6F5A4B3C2D",
      },
    ]);
  });

  it("generates a valid disk GUID, the same on every import", () => {
    const id = layout.disks[0]?.partitionTable?.id;
    expect(id).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
    expect(load("bios-gpt-ext4-swap.conf").layout.disks[0]?.partitionTable?.id).toBe(id);
  });

  it("derives the ext4 block, inode and reserved counts from the partition size", () => {
    const root = fs(layout, "/dev/sda3", "ext4");
    expect(root).toMatchObject({
      uuid: "3c1e2a0b-6d5f-4e7c-9b8a-0f1e2d3c4b5a",
      label: null,
      blockSize: 4096,
      blockCount: 4717824,
      inodeCount: 1179456,
      reservedBlockCount: 235891,
    } satisfies Partial<ExtFs>);
    // ReaR records no features; an empty list would make mkfs.ext4 -O none drop the journal.
    expect(root.features).toEqual(expect.arrayContaining(["has_journal", "extent", "flex_bg"]));
    expect(root.features).not.toContain("metadata_csum");
  });

  it("recreates swap with its UUID and boots with GRUB on the disk", () => {
    expect(fs(layout, "/dev/sda2", "swap").uuid).toBe("0d3f5c44-8f83-4b7e-a3d1-2a8b51f3f9c2");
    expect(layout.boot).toMatchObject({ firmware: "bios", grubBiosDisks: ["/dev/sda"], esp: null });
    expect(layout.mounts.entries).toEqual([
      {
        target: "/",
        source: "/dev/sda3",
        fsType: "ext4",
        options: ["rw", "relatime", "errors=remount-ro"],
        fsRoot: "/",
        uuid: "3c1e2a0b-6d5f-4e7c-9b8a-0f1e2d3c4b5a",
      },
    ]);
  });
});

describe("UEFI, ESP and LVM (ReaR 2.8 byte sizes)", () => {
  const { layout, unmapped } = load("uefi-esp-lvm.conf");

  it("maps every line", () => {
    expect(unmapped).toEqual([]);
  });

  it("decodes the ESP's percent-encoded name and boots UEFI from it", () => {
    expect(partitions(layout, "/dev/vda")[0]).toMatchObject({
      name: "EFI System Partition",
      type: GPT.esp,
      roles: ["esp"],
    });
    expect(layout.boot).toMatchObject({
      firmware: "uefi",
      secureBoot: "unknown",
      grubBiosDisks: [],
      esp: { devices: ["/dev/vda1"], mountPoint: "/boot/efi", files: [] },
    });
    expect(layout.disks[0]?.transport).toBe("virtio");
  });

  it("reads PV sizes as bytes and VG sizes as KiB", () => {
    expect(layout.lvm.pvs).toEqual([
      {
        device: "/dev/vda3",
        uuid: "kZh27S-6mqH-ijVd-xYfl-vYfM-LfaX-bUfide",
        vg: "rhel",
        sizeBytes: 41244082176,
        deviceSizeBytes: 41245130752,
        peStartBytes: MiB,
      },
    ]);
    const vg = layout.lvm.vgs[0];
    expect(vg).toMatchObject({
      name: "rhel",
      uuid: UNRECORDED,
      extentSizeBytes: 4 * MiB,
      sizeBytes: 40275968 * 1024,
      freeBytes: 4 * MiB,
      pvs: ["/dev/vda3"],
    });
    expect(vg?.lvs.map((l) => [l.name, l.device, l.sizeBytes, l.segments[0]?.type])).toEqual([
      ["swap", "/dev/mapper/rhel-swap", 4294967296, "linear"],
      ["home", "/dev/mapper/rhel-home", 10737418240, "linear"],
      ["root", "/dev/mapper/rhel-root", 26206011392, "linear"],
    ]);
  });

  it("sizes xfs from its LV and keeps the vfat volume id", () => {
    const root: XfsFs = fs(layout, "/dev/mapper/rhel-root", "xfs");
    expect(root.uuid).toBe("140256a4-357a-4a77-9875-54c768a09e1b");
    expect(root.geometry.dataBlocks).toBe(26206011392 / 4096);
    expect(fs(layout, "/dev/vda1", "vfat").uuid).toBe("6C81-19BE");
  });
});

describe("md RAID1, LUKS2 and LVM with xfs (ReaR 2.7)", () => {
  const { layout, unmapped } = load("md-raid1-luks-lvm-xfs.conf");

  it("maps every line, including raiddisk lines without a label", () => {
    expect(unmapped).toEqual([]);
  });

  it("recreates both arrays with their UUIDs, members and raiddisk sizes", () => {
    expect(layout.md).toMatchObject([
      {
        device: "/dev/md126",
        name: "boot",
        uuid: "3a1f2c4d:5e6f7a8b:9c0d1e2f:3a4b5c6d",
        level: "raid1",
        metadata: "1.2",
        raidDevices: 2,
        members: [
          { device: "/dev/sda2", slot: 0, state: "active" },
          { device: "/dev/sdb2", slot: 1, state: "active" },
        ],
        spares: 0,
        sizeBytes: 1072693248,
        partitionTable: null,
      },
      { device: "/dev/md127", name: "pv00", sizeBytes: 106163077120 },
    ]);
    expect(partitions(layout, "/dev/sdb").map((p) => p.roles)).toEqual([
      ["bios_grub"],
      ["raid"],
      ["raid"],
    ]);
    expect(partitions(layout, "/dev/sdb")[1]?.type).toBe(GPT.raid);
  });

  it("keeps the LUKS2 parameters ReaR records", () => {
    expect(layout.luks).toEqual([
      expect.objectContaining({
        device: "/dev/md127",
        mapperName: "luks-md127",
        version: 2,
        uuid: "40c4eca5-5b90-48aa-b46b-141cb2574452",
        cipher: "aes-xts-plain64",
        keySizeBits: 512,
        dataOffsetBytes: 16 * MiB,
        pbkdf: expect.objectContaining({ type: "argon2id", hash: "sha256" }),
        headerBackup: null,
      }),
    ]);
  });

  it("reads the pre-2.8 PV size as 512-byte sectors", () => {
    expect(layout.lvm.pvs[0]).toMatchObject({
      device: "/dev/mapper/luks-md127",
      sizeBytes: 207316992 * 512,
    });
    expect(lv(layout, "vg0", "root").sizeBytes).toBe(53687091200);
  });

  it("puts /boot on the array and GRUB on both disks", () => {
    expect(fs(layout, "/dev/md126", "ext4")).toMatchObject({ label: "boot", blockCount: 261888 });
    expect(fs(layout, "/dev/mapper/vg0-root", "xfs").label).toBe("root");
    expect(layout.boot.grubBiosDisks).toEqual(["/dev/sda", "/dev/sdb"]);
  });
});

describe("btrfs with SLES subvolumes and a snapper default subvolume", () => {
  const { layout, unmapped } = load("btrfs-sles-subvolumes.conf");
  const root: BtrfsFs = fs(layout, "/dev/sda2", "btrfs");

  it("keeps the default subvolume by id and path", () => {
    expect(root.defaultSubvolume).toEqual({ id: 268, path: "@/.snapshots/1/snapshot" });
    expect(root.devices).toEqual(["/dev/sda2"]);
  });

  it("lists the normal subvolumes with parents inferred from their paths", () => {
    const byPath = Object.fromEntries(root.subvolumes.map((s) => [s.path, [s.id, s.parentId]]));
    expect(byPath).toEqual({
      "@": [256, 5],
      "@/home": [257, 256],
      "@/opt": [258, 256],
      "@/root": [259, 256],
      "@/srv": [260, 256],
      "@/usr/local": [261, 256],
      "@/var": [262, 256],
      "@/var/lib/machines": [263, 262],
      "@/boot/grub2/x86_64-efi": [264, 256],
    });
  });

  it("mounts / from the snapshot and the rest from their subvolumes", () => {
    const roots = Object.fromEntries(layout.mounts.entries.map((m) => [m.target, m.fsRoot]));
    expect(roots["/"]).toBe("/@/.snapshots/1/snapshot");
    expect(roots["/home"]).toBe("/@/home");
    expect(roots["/var"]).toBe("/@/var");
    expect(layout.mounts.entries.find((m) => m.target === "/var")?.options).toContain(
      "subvol=/@/var",
    );
    // The commented-out btrfsmountedsubvol line for / is the snapshot, not an exclusion.
    expect(layout.mounts.excluded).toEqual([]);
  });

  it("keeps GPT names and the legacy_boot attribute", () => {
    expect(partitions(layout, "/dev/sda")[1]).toMatchObject({
      name: "primary",
      attrs: "LegacyBIOSBootable",
      roles: [],
    });
  });

  it("reports the snapper subvolume mount and the no-copy-on-write attribute", () => {
    expect(reasons({ layout, unmapped })).toEqual([
      [42, expect.stringContaining("subvolume @/.snapshots is mounted but no btrfsnormalsubvol")],
      [52, expect.stringContaining("no-copy-on-write")],
    ]);
    expect(unmapped[1]?.text).toBe("btrfsnocopyonwrite @/var");
  });
});

describe("MBR with extended and logical partitions, pre-2.4 LVM and LUKS1 lines", () => {
  const { layout, unmapped } = load("mbr-logical-old-format.conf");

  it("numbers logical partitions from 5 and types the extended one as LBA", () => {
    expect(
      partitions(layout, "/dev/sda").map((p) => [p.number, p.kind, p.type, p.bootable, p.roles]),
    ).toEqual([
      [1, "primary", "0x83", true, ["boot"]],
      [2, "primary", "0x83", false, []],
      [3, "extended", "0x0f", false, ["extended"]],
      [5, "logical", "0x82", false, ["swap"]],
      [6, "logical", "0x8e", false, ["lvm"]],
    ]);
    expect(layout.disks[0]?.partitionTable?.type).toBe("dos");
    expect(partitions(layout, "/dev/sda")[3]?.startBytes).toBe(21684588544);
  });

  it("reads a crypt line without type= as LUKS1", () => {
    expect(layout.luks[0]).toMatchObject({
      device: "/dev/sda6",
      mapperName: "disk",
      version: 1,
      cipher: "aes-xts-plain",
      pbkdf: { type: "pbkdf2", hash: "sha1" },
      dataOffsetBytes: 2 * MiB,
    });
  });

  it("reads sector PV sizes and extent-count LVs", () => {
    expect(layout.lvm.pvs[0]?.sizeBytes).toBe(261836192 * 512);
    expect(lv(layout, "system", "root")).toMatchObject({
      sizeBytes: 2560 * 4 * MiB,
      role: "normal",
      segments: [{ type: "linear", stripes: 1, sizeBytes: 10737418240 }],
    });
    expect(lv(layout, "system", "home").sizeBytes).toBe(41943040 * 512);
  });

  it("keeps absolute reserved block counts from before 2012", () => {
    const boot = fs(layout, "/dev/sda1", "ext3");
    expect(boot).toMatchObject({
      blockSize: 1024,
      blockCount: 204768,
      reservedBlockCount: 10238,
      // No bytes_per_inode in old files: mke2fs's ratio of 16384 applies.
      inodeCount: Math.floor((204768 * 1024) / 16384),
    });
    expect(boot.features).toContain("has_journal");
    expect(boot.features).not.toContain("extent");
  });

  it("generates an MBR disk signature", () => {
    expect(layout.disks[0]?.partitionTable?.id).toMatch(/^0x[0-9a-f]{8}$/);
  });

  it("records the filesystem ReaR excluded", () => {
    expect(layout.mounts.excluded).toEqual([
      {
        target: "/backup",
        source: "/dev/mapper/backup-backup",
        fsType: "ext4",
        reason: "excluded by ReaR (commented out in disklayout.conf)",
      },
    ]);
  });

  it("reports tune2fs settings that differ from mke2fs defaults", () => {
    expect(reasons({ layout, unmapped })).toEqual([
      [17, "values with no place in the layout were dropped: max_mounts=21 check_interval=180d"],
      [20, "values with no place in the layout were dropped: max_mounts=35 check_interval=180d"],
    ]);
  });
});

describe("LVM thin pool with thin volumes", () => {
  const { layout, unmapped } = load("lvm-thin-pool.conf");

  it("maps every line", () => {
    expect(unmapped).toEqual([]);
  });

  it("keeps the pool's chunk and metadata sizes", () => {
    expect(lv(layout, "rhel", "pool00")).toMatchObject({
      role: "thin-pool",
      sizeBytes: 48318382080,
      segments: [{ type: "thin-pool" }],
      thinPool: { chunkSizeBytes: 65536, metadataSizeBytes: 50331648 },
      thinVolume: null,
    });
  });

  it("puts the thin volumes in their pool with their virtual sizes", () => {
    expect(lv(layout, "rhel", "root")).toMatchObject({
      role: "thin",
      sizeBytes: 42949672960,
      segments: [{ type: "thin" }],
      thinVolume: { pool: "pool00" },
      thinPool: null,
    });
    expect(lv(layout, "rhel", "home").thinVolume).toEqual({ pool: "pool00" });
  });

  it("keeps ReaR's order (pool last) and counts free space without thin volumes", () => {
    const vg = layout.lvm.vgs[0];
    expect(vg?.lvs.map((l) => l.name)).toEqual(["swap", "home", "root", "pool00"]);
    expect(vg?.freeBytes).toBe(12543 * 4 * MiB - 2147483648 - 48318382080);
  });
});

describe("NVMe disks, a whole-disk filesystem and a whole-disk PV", () => {
  const { layout, unmapped } = load("nvme-uefi.conf");

  it("maps every line", () => {
    expect(unmapped).toEqual([]);
  });

  it("names NVMe partitions with a p and keeps their PARTUUIDs", () => {
    expect(partitions(layout, "/dev/nvme0n1").map((p) => [p.device, p.name, p.partUuid])).toEqual([
      ["/dev/nvme0n1p1", "EFI System Partition", "C3B9A2D1-4E5F-4A6B-8C7D-9E0F1A2B3C4D"],
      ["/dev/nvme0n1p2", null, "D4C0B3E2-5F6A-4B7C-9D8E-0F1A2B3C4D5E"],
      ["/dev/nvme0n1p3", "root", "E5D1C4F3-6A7B-4C8D-AE9F-1A2B3C4D5E6F"],
    ]);
    expect(layout.disks.map((d) => d.transport)).toEqual(["nvme", "nvme", "nvme"]);
  });

  it("leaves disks labelled loop or unknown without a partition table", () => {
    expect(layout.disks.map((d) => [d.device, d.partitionTable === null])).toEqual([
      ["/dev/nvme0n1", false],
      ["/dev/nvme1n1", true],
      ["/dev/nvme2n1", true],
    ]);
    expect(fs(layout, "/dev/nvme1n1", "xfs").label).toBe("data");
    expect(layout.lvm.pvs[0]).toMatchObject({
      device: "/dev/nvme2n1",
      sizeBytes: 21470642176,
      deviceSizeBytes: 21474836480,
    });
  });

  it("boots UEFI from the NVMe ESP", () => {
    expect(layout.boot.esp?.devices).toEqual(["/dev/nvme0n1p1"]);
  });
});

describe("lines that cannot be mapped", () => {
  const result = load("unmappable.conf");
  const { layout, unmapped } = result;

  it("reports each one with its line number and why", () => {
    expect(reasons(result)).toEqual([
      [6, "partition start 'junk' is not a whole number"],
      [7, expect.stringContaining("expected 6 or 7 values after 'part'")],
      [8, "TCG Opal self-encrypting disks are not modelled in the layout schema"],
      [9, "multipath devices are not modelled in the layout schema"],
      [10, "no mapped disk, raidarray or raiddisk line for /dev/mapper/mpatha"],
      [11, expect.stringContaining("password= was dropped")],
      [14, expect.stringContaining("LV layout 'cache,pool' is not supported")],
      [18, expect.stringContaining("not a keyword ReaR writes")],
      [19, "unknown keyword 'frobnicate'"],
      [20, "DRBD devices are not modelled in the layout schema"],
    ]);
  });

  it("never lets a password into the result", () => {
    expect(JSON.stringify(result)).not.toContain("s3cret");
    expect(unmapped.find((u) => u.line === 8)?.text).toBe(
      "opaldisk /dev/sda boot=y password=XXXXX",
    );
    expect(layout.raw.files["disklayout.conf"]).toContain("password=XXXXX");
  });

  it("still maps the lines around them", () => {
    expect(partitions(layout, "/dev/sda").map((p) => p.number)).toEqual([1, 2]);
    expect(layout.luks[0]?.mapperName).toBe("cr_data");
    expect(layout.lvm.vgs[0]?.lvs.map((l) => l.name)).toEqual(["plain"]);
    // blkid writes blanks in vfat labels as "\b".
    expect(fs(layout, "/dev/sda1", "vfat").label).toBe("EFI SYSTEM");
  });

  it("carries the same report in the layout's warnings", () => {
    expect(layout.warnings).toContain(
      "disklayout.conf line 19: unknown keyword 'frobnicate': frobnicate /dev/sda",
    );
    expect(layout.warnings).toHaveLength(unmapped.length + 1);
  });
});

describe("format variants", () => {
  it("reads pre-2.7 'raid' lines and sizes an array without raiddisk from its members", () => {
    const { layout, unmapped } = parse(
      [
        "disk /dev/sda 400088457216 gpt",
        "disk /dev/sdb 400088457216 gpt",
        "part /dev/sda 400087408640 1048576 rear-noname raid /dev/sda1",
        "part /dev/sdb 400087408640 1048576 rear-noname raid /dev/sdb1",
        "raid /dev/md127 metadata=0.90 level=raid1 raid-devices=2 uuid=baad6a94:8c86c5c3:720bbfe8:1cc4b06b name=126_0 devices=/dev/sda1,/dev/sdb1",
        "part /dev/md127 163577856 1048576 primary none /dev/md127p1",
      ].join("\n"),
    );
    expect(unmapped).toEqual([]);
    expect(layout.md[0]).toMatchObject({
      metadata: "0.90",
      sizeBytes: 400087408640,
      partitionTable: { type: "dos", partitions: [{ device: "/dev/md127p1", kind: "primary" }] },
    });
  });

  it("reports firmware RAID containers and their member arrays", () => {
    const { layout, unmapped } = parse(
      [
        "disk /dev/sda 400088457216 gpt",
        "disk /dev/sdb 400088457216 gpt",
        "raidarray /dev/md127 metadata=imsm level=container raid-devices=2 uuid=4d5cf215:80024c95:e19fdff4:2fba35a8 name=imsm0 devices=/dev/sda,/dev/sdb",
        "raidarray /dev/md126 level=raid1 raid-devices=2 uuid=ffb80762:127807b3:3d7e4f4d:4532022f name=Volume0_0 devices=/dev/md127 size=390706176",
      ].join("\n"),
    );
    expect(layout.md).toEqual([]);
    expect(unmapped.map((u) => u.line)).toEqual([3, 4]);
    expect(unmapped[1]?.reason).toContain("IMSM/DDF");
  });

  it("reports a negative partition size as ReaR leaves it after a failed resize", () => {
    const { unmapped } = parse(
      [
        "disk /dev/sdb 160041885696 msdos",
        "part /dev/sdb -20916822016 209719296 primary lvm /dev/sdb2",
      ].join("\n"),
    );
    expect(reasons({ unmapped } as RearImport)).toEqual([
      [2, "partition size '-20916822016' is negative"],
    ]);
  });

  it("refuses a partition name that breaks the kernel's naming rule", () => {
    const { layout, unmapped } = parse(
      [
        "disk /dev/nvme0n1 512110190592 gpt",
        "part /dev/nvme0n1 629145600 1048576 rear-noname boot,esp /dev/nvme0n11",
      ].join("\n"),
    );
    expect(unmapped[0]?.reason).toContain("expected /dev/nvme0n1p1");
    expect(layout.disks[0]?.partitionTable?.partitions).toEqual([]);
  });

  it("generates LUKS and PV UUIDs that are missing, and says so", () => {
    const { layout, unmapped } = parse(
      [
        "disk /dev/sda 10737418240 gpt",
        "part /dev/sda 10735321088 1048576 rear-noname none /dev/sda1",
        "crypt /dev/mapper/cr /dev/sda1 type=luks2 uuid=",
        "lvmdev /dev/vg /dev/mapper/cr",
        "lvmgrp /dev/vg 4096 2554 10461184",
      ].join("\n"),
    );
    expect(layout.luks[0]?.uuid).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(layout.lvm.pvs[0]?.uuid).toMatch(/^[0-9A-Za-z]{6}(-[0-9A-Za-z]{4}){5}-[0-9A-Za-z]{6}$/);
    // The PV's size is not written either: it is its device's, the LUKS data area.
    expect(layout.lvm.pvs[0]?.sizeBytes).toBe(10735321088 - 16 * MiB);
    expect(unmapped.map((u) => [u.line, u.reason.split(",")[0]])).toEqual([
      [3, `uuid= is missing`],
      [4, "the PV UUID is missing"],
    ]);
  });

  it("gives big xfs filesystems allocation groups of at most 1 TiB", () => {
    const { layout } = parse(
      [
        "disk /dev/sdb 10995116277760 gpt",
        "part /dev/sdb 10995114180608 1048576 rear-noname none /dev/sdb1",
        "fs /dev/sdb1 /srv xfs uuid=0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9 label= options=rw",
      ].join("\n"),
    );
    const { geometry } = fs(layout, "/dev/sdb1", "xfs");
    expect(geometry.agCount).toBe(10);
    expect(geometry.agSizeBlocks * geometry.blockSize).toBeLessThanOrEqual(1024 ** 4);
  });

  it("reports a thin volume whose pool is not in the file", () => {
    const { unmapped } = parse(
      [
        "lvmdev /dev/vg /dev/sda2 aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg 10733223936",
        "lvmgrp /dev/vg 4096 2559 10481664",
        "lvmvol /dev/vg data 21474836480b thin,sparse thinpool:missing",
        "lvmvol /dev/vg orphan 1073741824b thin,sparse",
      ].join("\n"),
    );
    expect(reasons({ unmapped } as RearImport)).toEqual([
      [1, "/dev/sda2: no line of this file creates it"],
      [3, "thin pool vg/missing is not in this file"],
      [4, "a thin volume without thinpool:"],
    ]);
  });

  it("maps striped and RAID1 LVs", () => {
    const { layout } = parse(
      [
        "lvmdev /dev/vg /dev/sdb 11111111-2222-3333-4444-5555-6666-777777 10733223936",
        "lvmdev /dev/vg /dev/sdc 11111111-2222-3333-4444-5555-6666-888888 10733223936",
        "lvmgrp /dev/vg 4096 5118 20963328",
        "lvmvol /dev/vg fast 4294967296b striped stripes:2 stripesize:65536b",
        "lvmvol /dev/vg safe 2147483648b raid,raid1",
      ].join("\n"),
    );
    expect(lv(layout, "vg", "fast")).toMatchObject({
      role: "normal",
      segments: [{ type: "striped", stripes: 2, stripeSizeBytes: 65536 }],
    });
    expect(lv(layout, "vg", "safe")).toMatchObject({
      role: "raid",
      segments: [{ type: "raid1" }],
      raid: { mirrors: 1 },
    });
  });

  it("reports second lines for the same thing and options nothing reads", () => {
    const { layout, unmapped } = parse(
      [
        "disk /dev/vda 10737418240 gpt",
        "disk /dev/vda 21474836480 gpt",
        "lvmdev /dev/vg /dev/vda 11111111-2222-3333-4444-5555-6666-777777 10733223936",
        "lvmgrp /dev/vg 4096 2559 10481664",
        "lvmvol /dev/vg data 1073741824b linear cachemode:writeback",
        "lvmvol /dev/vg data 2147483648b linear",
        "fs /dev/mapper/vg-data /data xfs uuid=0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9 label= crc=1 options=rw",
      ].join("\n"),
    );
    expect(reasons({ layout, unmapped })).toEqual([
      [2, "a second line for /dev/vda; the first one was used"],
      [5, "unknown options were dropped: cachemode=writeback"],
      [6, "a second line for vg/data; the first one was used"],
      [7, "unknown options were dropped: crc=1"],
    ]);
    expect(layout.disks.map((d) => d.sizeBytes)).toEqual([10737418240]);
    expect(lv(layout, "vg", "data").sizeBytes).toBe(1073741824);
  });

  it("rejects a file with no ReaR lines at all", () => {
    let error: unknown;
    try {
      parse("# just a comment\n/dev/sda1 / ext4 defaults 0 1\n");
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LifeboatError);
    expect((error as LifeboatError).code).toBe("LB_REAR_INVALID");
    expect((error as LifeboatError).message).toContain("inline.conf");
  });
});

describe("lifeboat layout import-rear", () => {
  async function cli(...argv: string[]) {
    let stdout = "";
    let stderr = "";
    const code = await runCli(["layout", "import-rear", ...argv], {
      stdout: { write: (text) => void (stdout += text), isTTY: false },
      stderr: { write: (text) => void (stderr += text), isTTY: false },
    });
    return { code, stdout, stderr };
  }

  it("prints a valid layout and exits 0 when every line maps", async () => {
    const result = await cli(fixture("lvm-thin-pool.conf"));
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("");
    const layout = parseLayout(JSON.parse(result.stdout), "stdout");
    expect(layout.lvm.vgs[0]?.name).toBe("rhel");
  });

  it("exits 2 with LB_REAR_UNREADABLE for a missing file", async () => {
    const result = await cli(fixture("no-such.conf"));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_REAR_UNREADABLE");
    expect(result.stderr).toContain("no such file");
    expect(result.stdout).toBe("");
  });

  it("lists unmapped lines as FILE:LINE and still exits 0 without --strict", async () => {
    const file = fixture("unmappable.conf");
    const result = await cli(file);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(
      `${file}:19: unknown keyword 'frobnicate': frobnicate /dev/sda\n`,
    );
    expect(result.stderr).toContain("warning: 10 lines of");
    expect(() => parseLayout(JSON.parse(result.stdout), "stdout")).not.toThrow();
  });

  it("exits 1 with --strict when lines are unmapped, after writing the layout", async () => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), "lifeboat-rear-")), "layout.json");
    const result = await cli(fixture("unmappable.conf"), "--strict", "--out", out);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("LB_REAR_UNMAPPED");
    expect(parseLayout(JSON.parse(readFileSync(out, "utf8")), out).disks).toHaveLength(1);
  });

  it("prints the unmapped lines as JSON with --json and --out", async () => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), "lifeboat-rear-")), "layout.json");
    const result = await cli(fixture("btrfs-sles-subvolumes.conf"), "--json", "--out", out);
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { unmapped: { line: number }[] };
    expect(printed.unmapped.map((u) => u.line)).toEqual([42, 52]);
    expect(Object.keys(printed)).toEqual(["unmapped"]);
    expect(parseLayout(JSON.parse(readFileSync(out, "utf8")), out).filesystems).toHaveLength(2);
  });
});
