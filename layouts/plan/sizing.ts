// Fitting a captured layout onto target disks of another size. The rules (also stated in
// ARCHITECTURE.md):
//
// Same size: every partition keeps its exact start and size. No "migration mode".
//
// Larger target: the disk's growth (in usable bytes, rounded down to 1 MiB) goes to ONE
// partition, the "growable" one, and partitions after it move back by the same amount:
//   - the last partition that holds an LVM PV (directly or inside LUKS); the VG gains free
//     extents and the LVs keep their sizes;
//   - otherwise the last partition holding an ext2/3/4, xfs or btrfs filesystem (directly
//     or inside LUKS), which is then made at the bigger size;
//   - otherwise nothing grows and the space stays free at the end.
// Free space the captured disk had after its last partition stays free.
//
// Smaller target: only as much is taken as the partitions need beyond the trailing free
// space. It is taken from the growable partition first, then from other shrinkable
// partitions from the last to the first, each down to its minimum:
//   - a filesystem: its used bytes + 10% + 64 MiB, never below the filesystem's own minimum
//     (xfs 300 MiB, btrfs 256 MiB, ext 16 MiB); a filesystem whose usage was not captured
//     (it was not mounted) does not shrink;
//   - an LVM PV of a single-PV VG: first the VG's free space, then the LVs with the most
//     slack first, each LV down to the minimum of the filesystem on it; swap, raid and
//     internal LVs keep their size; a thin pool keeps its used data + 10% + 64 MiB;
//   - swap, ESP, BIOS boot, md members and partitions with unknown contents do not shrink.
// If that is not enough, the plan is refused with the numbers for every partition.

import { inputError } from "../../common/errors.ts";
import { alignDown, alignUp, formatBytes, MiB } from "../../common/units.ts";
import type { Disk, Filesystem, Layout, Lv, Partition, Vg } from "../schema.ts";
import type { DiskAssignment, Resize, TargetDisk } from "./types.ts";

export const ALIGN = MiB;
const MARGIN_RATIO = 0.1;
const MARGIN_FIXED = 64 * MiB;
const FS_FLOOR: Record<string, number> = {
  xfs: 300 * MiB,
  btrfs: 256 * MiB,
  ext2: 16 * MiB,
  ext3: 16 * MiB,
  ext4: 16 * MiB,
};

export interface Geometry {
  startBytes: number;
  sizeBytes: number;
}

export interface SizingResult {
  /** New geometry per captured partition device. */
  partitions: Map<string, Geometry>;
  /** New size per LV, keyed "vg/lv"; LVs not listed keep their size. */
  lvSizes: Map<string, number>;
  resizes: Resize[];
}

interface Minimum {
  bytes: number;
  why: string;
  shrinkable: boolean;
}

/** Compute the geometry of every partition and the size of every LV on the targets. */
export function fitLayout(
  layout: Layout,
  assignments: DiskAssignment[],
  targets: TargetDisk[],
): SizingResult {
  const result: SizingResult = { partitions: new Map(), lvSizes: new Map(), resizes: [] };
  const model = new ContentModel(layout);
  for (const assignment of assignments) {
    const disk = layout.disks.find((d) => d.device === assignment.from)!;
    const target = targets.find((t) => t.device === assignment.to)!;
    if (disk.partitionTable) fitPartitions(disk, target, model, result);
    else fitWholeDisk(disk, target, model, result);
  }
  return result;
}

function fitWholeDisk(disk: Disk, target: TargetDisk, model: ContentModel, result: SizingResult) {
  if (target.sizeBytes >= disk.sizeBytes) return;
  const minimum = model.minimumFor(disk.device, disk.sizeBytes);
  if (minimum.bytes > target.sizeBytes) {
    throw tooSmall(disk, target, minimum.bytes, [
      `  ${disk.device}  ${formatBytes(minimum.bytes)}  ${minimum.why}`,
    ]);
  }
  model.shrinkInside(disk.device, disk.sizeBytes - target.sizeBytes, result);
}

function fitPartitions(disk: Disk, target: TargetDisk, model: ContentModel, result: SizingResult) {
  const table = disk.partitionTable!;
  const parts = [...table.partitions].sort((a, b) => a.startBytes - b.startBytes);
  const geometry = new Map(
    parts.map((p) => [p.device, { startBytes: p.startBytes, sizeBytes: p.sizeBytes }]),
  );
  const capturedUsableEnd = usableEnd(table.type, disk.sizeBytes, disk.logicalSectorSize);
  const targetUsableEnd = usableEnd(table.type, target.sizeBytes, target.logicalSectorSize);
  const end = Math.max(0, ...parts.map((p) => p.startBytes + p.sizeBytes));
  const growable = chooseGrowable(parts, model);

  if (targetUsableEnd >= capturedUsableEnd) {
    let growth = alignDown(targetUsableEnd - capturedUsableEnd, ALIGN);
    if (table.type === "dos") growth = Math.min(growth, MBR_LIMIT(target.logicalSectorSize) - end);
    if (growable && growth > 0) resizePartition(parts, geometry, growable, growth);
  } else {
    let need = alignUp(end - targetUsableEnd, ALIGN);
    if (need > 0) {
      const minimums = new Map(parts.map((p) => [p.device, model.minimumForPartition(p)]));
      const order = shrinkOrder(parts, growable, minimums);
      for (const part of order) {
        if (need <= 0) break;
        const slack = alignDown(part.sizeBytes - minimums.get(part.device)!.bytes, ALIGN);
        const take = Math.min(need, slack);
        if (take <= 0) continue;
        resizePartition(parts, geometry, part, -take);
        model.shrinkInside(part.device, take, result);
        need -= take;
      }
      if (need > 0) {
        const lines = parts
          .filter((p) => p.kind !== "extended")
          .map((p) => {
            const m = minimums.get(p.device)!;
            return `  ${p.device}  ${formatBytes(m.bytes)}  ${m.why}`;
          });
        const slack = order.reduce(
          (sum, p) => sum + alignDown(p.sizeBytes - minimums.get(p.device)!.bytes, ALIGN),
          0,
        );
        // The smallest end of the last partition, plus what the table keeps after it.
        const needed = end - slack + (target.sizeBytes - targetUsableEnd);
        throw tooSmall(disk, target, needed, lines);
      }
    }
  }

  for (const part of parts) {
    const g = geometry.get(part.device)!;
    result.partitions.set(part.device, g);
    if (g.sizeBytes !== part.sizeBytes && part.kind !== "extended") {
      result.resizes.push({
        what: part.device,
        fromBytes: part.sizeBytes,
        toBytes: g.sizeBytes,
        why:
          g.sizeBytes > part.sizeBytes
            ? "grows into the larger disk"
            : "shrinks to fit the smaller disk",
      });
    }
  }
}

function tooSmall(disk: Disk, target: TargetDisk, neededBytes: number, lines: string[]) {
  return inputError(
    "LB_TARGET_TOO_SMALL",
    `Target disk ${target.device} (${formatBytes(target.sizeBytes)}) is too small for the layout's ${disk.device} (${formatBytes(disk.sizeBytes)}): ` +
      `it needs at least ${formatBytes(neededBytes)} even with every filesystem shrunk to its used space plus margin.\n` +
      lines.join("\n"),
    `Use a disk of at least ${formatBytes(neededBytes)}: pass --map ${disk.device}=NEW.`,
  );
}

/** Where partitions may end: GPT keeps a backup header and entry array at the end. */
export function usableEnd(type: "gpt" | "dos", sizeBytes: number, sectorSize: number): number {
  if (type === "dos") return Math.min(sizeBytes, MBR_LIMIT(sectorSize));
  const sectors = Math.floor(sizeBytes / sectorSize);
  const entrySectors = Math.ceil((128 * 128) / sectorSize);
  const lastUsable = sectors - 2 - entrySectors;
  return (lastUsable + 1) * sectorSize;
}

const MBR_LIMIT = (sectorSize: number) => 2 ** 32 * sectorSize;

/** Grow (positive) or shrink (negative) one partition; move what follows; stretch containers. */
function resizePartition(
  parts: Partition[],
  geometry: Map<string, Geometry>,
  part: Partition,
  delta: number,
) {
  const self = geometry.get(part.device)!;
  const selfStart = self.startBytes;
  const selfEnd = self.startBytes + self.sizeBytes;
  for (const other of parts) {
    if (other.device === part.device) continue;
    const g = geometry.get(other.device)!;
    const contains = g.startBytes <= selfStart && g.startBytes + g.sizeBytes >= selfEnd;
    if (contains) g.sizeBytes += delta;
    else if (g.startBytes > selfStart) g.startBytes += delta;
  }
  self.sizeBytes += delta;
}

function chooseGrowable(parts: Partition[], model: ContentModel): Partition | null {
  const candidates = parts.filter((p) => p.kind !== "extended" && !p.roles.includes("esp"));
  const pvs = candidates.filter((p) => model.innermost(p.device).kind === "pv");
  if (pvs.length > 0) return pvs[pvs.length - 1]!;
  const data = candidates.filter((p) => {
    const inner = model.innermost(p.device);
    return inner.kind === "fs" && ["ext2", "ext3", "ext4", "xfs", "btrfs"].includes(inner.fs.type);
  });
  return data[data.length - 1] ?? null;
}

function shrinkOrder(
  parts: Partition[],
  growable: Partition | null,
  minimums: Map<string, Minimum>,
) {
  const rest = parts
    .filter((p) => p !== growable && p.kind !== "extended" && minimums.get(p.device)!.shrinkable)
    .reverse();
  return growable ? [growable, ...rest] : rest;
}

type Content =
  | { kind: "fs"; fs: Filesystem }
  | { kind: "pv"; vg: Vg | null }
  | { kind: "md-member" }
  | { kind: "none" };

/** What sits on each device, and how small each device could be. */
class ContentModel {
  readonly layout: Layout;

  constructor(layout: Layout) {
    this.layout = layout;
  }

  /** The content of a device, looking through LUKS. Also returns the LUKS overhead. */
  innermost(device: string): Content & { overhead: number; inner: string } {
    let overhead = 0;
    let current = device;
    for (;;) {
      const luks = this.layout.luks.find((l) => l.device === current);
      if (!luks || !luks.mapperName) break;
      overhead += luks.dataOffsetBytes;
      current = `/dev/mapper/${luks.mapperName}`;
    }
    return { ...this.direct(current), overhead, inner: current };
  }

  direct(device: string): Content {
    const fs = this.layout.filesystems.find(
      (f) => f.device === device || (f.type === "btrfs" && f.devices.includes(device)),
    );
    if (fs) return { kind: "fs", fs };
    const pv = this.layout.lvm.pvs.find((p) => p.device === device);
    if (pv) return { kind: "pv", vg: this.layout.lvm.vgs.find((v) => v.name === pv.vg) ?? null };
    if (this.layout.md.some((a) => a.members.some((m) => m.device === device))) {
      return { kind: "md-member" };
    }
    return { kind: "none" };
  }

  minimumForPartition(part: Partition): Minimum {
    if (part.roles.includes("bios_grub")) return fixed(part.sizeBytes, "fixed (BIOS boot)");
    if (part.roles.includes("esp")) return fixed(part.sizeBytes, "fixed (EFI system partition)");
    if (part.kind === "extended") return fixed(part.sizeBytes, "extended container");
    return this.minimumFor(part.device, part.sizeBytes);
  }

  minimumFor(device: string, size: number): Minimum {
    const content = this.innermost(device);
    const luks = content.overhead > 0 ? " inside LUKS" : "";
    if (content.kind === "md-member") return fixed(size, "fixed (md RAID member)");
    if (content.kind === "none") return fixed(size, "fixed (contents unknown)");
    if (content.kind === "fs") {
      const m = filesystemMinimum(content.fs, size - content.overhead);
      return { ...m, bytes: m.bytes + content.overhead, why: m.why + luks };
    }
    const vg = content.vg;
    const pv = this.layout.lvm.pvs.find((p) => p.device === content.inner);
    if (!vg || !pv || vg.pvs.length !== 1) {
      return fixed(
        size,
        vg ? `fixed (LVM PV of ${vg.name}, which spans several PVs)` : "fixed (LVM PV)",
      );
    }
    const used = vg.sizeBytes - vg.freeBytes;
    const reducible = this.visibleLvs(vg).reduce((sum, lv) => sum + this.lvSlack(lv, vg), 0);
    const bytes =
      alignUp(pv.peStartBytes + used - reducible + vg.extentSizeBytes, ALIGN) + content.overhead;
    return {
      bytes: Math.min(bytes, size),
      why: `LVM PV of ${vg.name}: ${formatBytes(used - reducible)} of LVs at their minimum${luks}`,
      shrinkable: bytes < size,
    };
  }

  visibleLvs(vg: Vg): Lv[] {
    return vg.lvs.filter((lv) => !lv.hidden);
  }

  /** How much an LV could give up, in whole extents. */
  lvSlack(lv: Lv, vg: Vg): number {
    let minimum = lv.sizeBytes;
    if (lv.role === "normal") {
      const fs = this.layout.filesystems.find((f) => f.device === lv.device);
      if (fs) minimum = filesystemMinimum(fs, lv.sizeBytes).bytes;
    } else if (lv.role === "thin-pool" && lv.thinPool?.dataPercent != null) {
      const used = (lv.sizeBytes * lv.thinPool.dataPercent) / 100;
      minimum = Math.min(lv.sizeBytes, used * (1 + MARGIN_RATIO) + MARGIN_FIXED);
    }
    return alignDown(lv.sizeBytes - alignUp(minimum, vg.extentSizeBytes), vg.extentSizeBytes);
  }

  /** Take `bytes` away from whatever is inside a shrinking device (only LVM cares). */
  shrinkInside(device: string, bytes: number, result: SizingResult) {
    const content = this.innermost(device);
    if (content.kind !== "pv" || !content.vg) return;
    const vg = content.vg;
    // One extent of headroom: the PV's extent count is rounded down on the new size.
    let cut = bytes + vg.extentSizeBytes - vg.freeBytes;
    const lvs = this.visibleLvs(vg)
      .map((lv) => ({ lv, slack: this.lvSlack(lv, vg) }))
      .filter((x) => x.slack > 0)
      .sort((a, b) => b.slack - a.slack);
    for (const { lv, slack } of lvs) {
      if (cut <= 0) break;
      const take = Math.min(slack, alignUp(cut, vg.extentSizeBytes));
      const size = lv.sizeBytes - take;
      result.lvSizes.set(`${vg.name}/${lv.name}`, size);
      result.resizes.push({
        what: `${vg.name}/${lv.name}`,
        fromBytes: lv.sizeBytes,
        toBytes: size,
        why: "shrinks so the VG fits the smaller disk",
      });
      cut -= take;
    }
  }
}

function fixed(bytes: number, why: string): Minimum {
  return { bytes, why, shrinkable: false };
}

/** The smallest size a filesystem can be recreated at and still hold its captured data. */
export function filesystemMinimum(fs: Filesystem, size: number): Minimum {
  const type = fs.type === "other" ? fs.fsType : fs.type;
  if (fs.type === "swap") return fixed(size, "fixed (swap)");
  if (!(type in FS_FLOOR)) return fixed(size, `fixed (${type})`);
  if (!fs.usage) return fixed(size, `fixed (${type} was not mounted, so its usage is unknown)`);
  const wanted = alignUp(fs.usage.usedBytes * (1 + MARGIN_RATIO) + MARGIN_FIXED, ALIGN);
  const bytes = Math.min(size, Math.max(wanted, FS_FLOOR[type]!));
  return {
    bytes,
    why: `${type} uses ${formatBytes(fs.usage.usedBytes)} (+10% +64 MiB margin)`,
    shrinkable: bytes < size,
  };
}
