// Target-disk inventories for planner tests: blank disks of chosen sizes.
import type { Layout } from "../../layouts/schema.ts";
import type { PlanOptions, TargetDisk } from "../../layouts/plan/types.ts";

export function blankDisk(device: string, sizeBytes: number, sectorSize = 512): TargetDisk {
  return {
    device,
    sizeBytes,
    logicalSectorSize: sectorSize,
    mountpoints: [],
    holders: [],
    partitions: [],
    contents: [],
  };
}

/** Blank disks with the same names and sizes as the layout's, scaled by `factor`. */
export function sameDisks(layout: Layout, factor = 1): TargetDisk[] {
  const MiB = 1048576;
  return layout.disks.map((d) =>
    blankDisk(
      d.device,
      factor === 1 ? d.sizeBytes : Math.round((d.sizeBytes * factor) / MiB) * MiB,
    ),
  );
}

export function options(extra: Partial<PlanOptions> = {}): PlanOptions {
  return { maps: {}, protect: [], targetRoot: "/mnt/lifeboat", keyFiles: {}, ...extra };
}
