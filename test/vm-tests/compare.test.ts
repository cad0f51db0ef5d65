// The VM harness's comparison of a restored system with its source (vm-tests/lib/compare.ts),
// on samples cut from real reports of the boot marker unit (test/fixtures/vm-boot/README.md).
import { readFileSync } from "node:fs";
import path from "node:path";
import { zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  compareManifests,
  compareSystems,
  efiDiskEntries,
  findBootMarker,
  findmntRows,
  lsblkRows,
  parseManifest,
  reportFromBlocks,
  type BootReport,
} from "../../vm-tests/lib/compare.ts";

const SAMPLES = path.join(import.meta.dirname, "..", "fixtures", "vm-boot");
const sample = (name: string) => readFileSync(path.join(SAMPLES, name), "utf8");

/** A report from the samples; the UEFI one borrows the BIOS system's disks and files. */
function report(firmware: "bios" | "uefi"): BootReport {
  return {
    lsblk: sample("bios.lsblk.json"),
    findmnt: sample("bios.findmnt.json"),
    efibootmgr: firmware === "uefi" ? sample("uefi.efibootmgr.txt") : undefined,
    manifest: sample("bios.manifest.tsv"),
  };
}

const bios = { migrated: false, firmware: "bios" as const, drill: true };
const uefi = { migrated: false, firmware: "uefi" as const, drill: true };

describe("boot marker", () => {
  it("finds the last OK or FAIL line, with the host or the reason", () => {
    expect(findBootMarker("[  OK  ] Started x\r\nLIFEBOAT-BOOT-OK host=fixture-a\r\n")).toEqual({
      state: "ok",
      host: "fixture-a",
    });
    expect(
      findBootMarker(
        "LIFEBOAT-BOOT-OK host=old\nLIFEBOAT-BOOT-FAIL /home (ext4 from /dev/vg0/home) is not mounted\n",
      ),
    ).toEqual({ state: "failed", reason: "/home (ext4 from /dev/vg0/home) is not mounted" });
    expect(findBootMarker("Debian GNU/Linux 12 fixture-a ttyS0\n")).toEqual({ state: "absent" });
  });
});

describe("report blocks", () => {
  it("decompresses the manifest and names what is missing", () => {
    const blocks = new Map<string, Buffer>([
      ["boot.lsblk.json", Buffer.from("{}")],
      ["boot.findmnt.json", Buffer.from("{}")],
      ["boot.manifest.tsv.zst", zstdCompressSync(Buffer.from("d\t755\t0:0\t\t/etc\n"))],
    ]);
    const got = reportFromBlocks(blocks, "boot");
    expect("missing" in got).toBe(false);
    expect((got as BootReport).manifest).toBe("d\t755\t0:0\t\t/etc\n");
    expect(reportFromBlocks(blocks, "backup")).toEqual({
      missing: ["backup.lsblk.json", "backup.findmnt.json", "backup.manifest.tsv.zst"],
    });
  });
});

describe("lsblk and findmnt", () => {
  it("keeps names and sizes, and drops them after a migration", () => {
    const rows = lsblkRows(sample("bios.lsblk.json"), { migrated: false });
    expect(rows.some((r) => r.startsWith("vda/vda4 type=part fstype=ext4 size="))).toBe(true);
    expect(rows.some((r) => r.includes("mounts=[SWAP]"))).toBe(true);
    const moved = lsblkRows(sample("bios.lsblk.json"), { migrated: true });
    expect(moved.every((r) => !r.includes("size=") && !r.includes("vda"))).toBe(true);
  });

  it("sees a changed UUID, a missing mount and a renamed disk", () => {
    const source = report("bios");
    const uuid = /"uuid": ?"([0-9a-f-]{36})"/.exec(source.lsblk)![1]!;
    const changed = { ...source, lsblk: source.lsblk.replace(uuid, uuid.replace(/^./, "0")) };
    expect(compareSystems(source, changed, bios).problems[0]).toMatch(/^lsblk differs:/);
    const renamed = { ...source, lsblk: source.lsblk.replaceAll('"vda', '"nvme0n1') };
    expect(compareSystems(source, renamed, bios).problems).toHaveLength(1);
    expect(compareSystems(source, renamed, { ...bios, migrated: true }).problems).toEqual([]);
    const unmounted = {
      ...source,
      findmnt: source.findmnt.replace('"target": "/boot"', '"target": "/mnt"'),
    };
    const problems = compareSystems(source, unmounted, bios).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("source only:   /boot ext4");
  });

  it("keeps a btrfs subvolume in the source, without the device after a migration", () => {
    const json = JSON.stringify({
      filesystems: [
        {
          target: "/",
          source: "/dev/vda2[/@]",
          fstype: "btrfs",
          uuid: "u1",
          children: [{ target: "/proc", source: "proc", fstype: "proc", uuid: null }],
        },
      ],
    });
    expect(findmntRows(json, { migrated: false })).toEqual([
      "/ btrfs uuid=u1 source=/dev/vda2[/@]",
    ]);
    expect(findmntRows(json, { migrated: true })).toEqual(["/ btrfs uuid=u1 source=DISK[/@]"]);
  });
});

describe("efibootmgr", () => {
  it("keeps the entries that boot a file from a GPT partition, in boot order", () => {
    const entries = efiDiskEntries(sample("uefi.efibootmgr.txt"));
    expect(entries.map((e) => [e.label, e.partition, e.file])).toEqual([
      ["debian", 1, "\\EFI\\DEBIAN\\GRUBX64.EFI"],
    ]);
    expect(entries[0]!.partUuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("fails when the restored machine has no such entry, or another order", () => {
    const source = report("uefi");
    const none = {
      ...source,
      efibootmgr: source.efibootmgr!.replace(/^Boot\S+ debian.*$/m, ""),
    };
    expect(compareSystems(source, none, uefi).problems[0]).toMatch(/^efibootmgr entries/);
    expect(compareSystems(source, source, uefi).problems).toEqual([]);
    const second = `${source.efibootmgr!}Boot0009* debian2\tHD(2,GPT,00000000-0000-0000-0000-000000000002,0x800,0x800)/File(\\EFI\\debian\\shimx64.efi)\n`;
    const reordered = {
      ...source,
      efibootmgr: second.replace(/^BootOrder: (\S+)/m, "BootOrder: 0009,$1"),
    };
    expect(
      compareSystems({ ...source, efibootmgr: second }, reordered, uefi).problems,
    ).toHaveLength(1);
  });
});

describe("file manifest", () => {
  it("joins types, modes, owners and hashes by path", () => {
    const manifest = parseManifest(sample("bios.manifest.tsv"));
    const fstab = manifest.get("/etc/fstab")!;
    expect(fstab.type).toBe("f");
    expect(fstab.content).toMatch(/^[0-9a-f]{64}$/);
    expect([...manifest.values()].some((e) => e.type === "l" && e.content !== "")).toBe(true);
    expect([...manifest.values()].some((e) => e.type === "d")).toBe(true);
    expect([...manifest.values()].every((e) => e.content !== "unhashed" || e.type !== "f")).toBe(
      true,
    );
  });

  it("reports changed content, modes, owners, links, and entries on one side only", () => {
    const source = parseManifest(sample("bios.manifest.tsv"));
    const restored = new Map([...source].map(([k, v]) => [k, { ...v }]));
    restored.get("/etc/fstab")!.content = "0".repeat(64);
    restored.get("/etc/hostname")!.mode = "600";
    const link = [...restored].find(([, e]) => e.type === "l")!;
    link[1].content = "/elsewhere";
    restored.delete("/etc/hosts");
    restored.set("/etc/new-file", { type: "f", mode: "644", owner: "0:0", content: "ab" });
    const result = compareManifests(source, restored, bios);
    expect(result.unexpected).toEqual(
      [
        "/etc/fstab: content differs",
        `/etc/hostname: mode ${source.get("/etc/hostname")!.mode} -> 600`,
        `${link[0]}: link ${source.get(link[0])!.content} -> /elsewhere`,
        "/etc/hosts: missing on the restored system",
        "/etc/new-file: only on the restored system",
      ].sort(),
    );
    expect(compareManifests(source, source, bios).unexpected).toEqual([]);
  });

  it("lists what recovery changes on purpose, only where it does", () => {
    const source = parseManifest(sample("bios.manifest.tsv"));
    const restored = new Map(source);
    restored.set("/etc/systemd/system/lifeboat-drill-check.service", {
      type: "f",
      mode: "644",
      owner: "0:0",
      content: "cd",
    });
    const drill = compareManifests(source, restored, bios);
    expect(drill.unexpected).toEqual([]);
    expect(drill.expected[0]).toContain("drill check");
    // Without a drill the same file is a failure.
    expect(compareManifests(source, restored, { ...bios, drill: false }).unexpected).toHaveLength(
      1,
    );
    const initrd = [...source.keys()].find((k) => k.startsWith("/boot/initrd.img-"))!;
    const rebuilt = new Map(source);
    rebuilt.set(initrd, { ...source.get(initrd)!, content: "f".repeat(64) });
    expect(compareManifests(source, rebuilt, bios).unexpected).toEqual([
      `${initrd}: content differs`,
    ]);
    expect(compareManifests(source, rebuilt, { ...bios, migrated: true }).unexpected).toEqual([]);
  });
});
