import { describe, expect, it } from "vitest";
import { GiB, MiB } from "../../common/units.ts";
import { compareLayouts } from "../../layouts/drift.ts";
import type { Layout } from "../../layouts/schema.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const saved = loadLayout("host/gpt-mixed.json");
const clone = (): Layout => structuredClone(saved);
const messages = (live: Layout) => compareLayouts(saved, live).map((c) => c.message);

describe("compareLayouts", () => {
  it("finds nothing between a layout and itself", () => {
    expect(compareLayouts(saved, clone())).toEqual([]);
  });

  it("ignores noise: usage, mount option order, capture time, raw output, BOOT_IMAGE, runtime ext features", () => {
    const live = clone();
    live.capturedAt = "2030-01-01T00:00:00.000Z";
    live.filesystems[0]!.usage = { sizeBytes: 1, usedBytes: 1 };
    live.mounts.entries[0]!.options.reverse();
    live.raw.commands = [];
    live.boot.kernelCmdline = `BOOT_IMAGE=/vmlinuz-9.9 ${saved.boot.kernelCmdline.replace(/BOOT_IMAGE=\S+ ?/, "")}`;
    const ext = live.filesystems[0]!;
    if (ext.type === "ext4") ext.features.push("needs_recovery");
    expect(messages(live)).toEqual([]);
  });

  it("says how a partition changed, in sizes people read", () => {
    const live = clone();
    const p3 = live.disks[0]!.partitionTable!.partitions[2]!;
    p3.sizeBytes = 20 * GiB;
    expect(messages(live)).toEqual(["partition /dev/loop0p3 grew from 320.0 MiB to 20.0 GiB"]);
  });

  it("reports new and removed partitions, filesystems and mounts", () => {
    const live = clone();
    const table = live.disks[0]!.partitionTable!;
    table.partitions.push({
      ...table.partitions[4]!,
      number: 6,
      device: "/dev/loop0p6",
      sizeBytes: 64 * MiB,
    });
    live.filesystems = live.filesystems.filter((f) => f.type !== "xfs");
    live.mounts.entries = live.mounts.entries.filter((m) => m.source !== "/dev/loop0p3");
    const out = messages(live);
    expect(out).toContain("new partition /dev/loop0p6 (64.0 MiB)");
    expect(out).toContain("filesystem on /dev/loop0p3 was removed");
    expect(out.some((m) => /^mount .*\/data was removed$/.test(m))).toBe(true);
  });

  it("reports a new LV and a grown LV", () => {
    const base = clone();
    base.lvm.vgs = [
      {
        name: "vg0",
        uuid: "u",
        extentSizeBytes: 4 * MiB,
        sizeBytes: 10 * GiB,
        freeBytes: GiB,
        pvs: ["/dev/loop0p3"],
        metadataBackup: null,
        lvs: [
          {
            name: "root",
            vg: "vg0",
            uuid: "r",
            device: "/dev/mapper/vg0-root",
            sizeBytes: 4 * GiB,
            hidden: false,
            active: true,
            role: "normal",
            segments: [],
            thinPool: null,
            thinVolume: null,
            raid: null,
          },
        ],
      },
    ];
    const live = structuredClone(base);
    live.lvm.vgs[0]!.lvs[0]!.sizeBytes = 6 * GiB;
    live.lvm.vgs[0]!.lvs.push({
      ...live.lvm.vgs[0]!.lvs[0]!,
      name: "data",
      uuid: "d",
      sizeBytes: GiB,
    });
    expect(compareLayouts(base, live).map((c) => c.message)).toEqual([
      "new LV vg0/data (normal, 1.0 GiB)",
      "LV vg0/root grew from 4.0 GiB to 6.0 GiB",
    ]);
  });

  it("shows fstab lines that were added and removed", () => {
    const base = clone();
    base.configFiles.fstab = "UUID=a / ext4 defaults 0 1\nUUID=b /data xfs defaults 0 2\n";
    const live = structuredClone(base);
    live.configFiles.fstab =
      "# comment\nUUID=a  /  ext4 defaults 0 1\nUUID=c /srv xfs defaults 0 2\n";
    const out = compareLayouts(base, live);
    expect(out).toHaveLength(1);
    expect(out[0]!.message).toBe(
      "fstab changed:\n    - UUID=b /data xfs defaults 0 2\n    + UUID=c /srv xfs defaults 0 2",
    );
  });

  it("says once that btrfs subvolumes can't be compared when the filesystem is not mounted", () => {
    const live = clone();
    const btrfs = live.filesystems.find((f) => f.type === "btrfs")!;
    if (btrfs.type !== "btrfs") throw new Error("fixture changed");
    Object.assign(btrfs, {
      dataProfile: null,
      metadataProfile: null,
      systemProfile: null,
      subvolumes: [],
      defaultSubvolume: { id: 5, path: "" },
    });
    expect(messages(live)).toEqual([
      "filesystem on /dev/loop0p4: btrfs was not mounted now, so its subvolumes can't be compared",
    ]);
  });
});
