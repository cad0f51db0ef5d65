// The VM a drill restores onto, shaped from the snapshot's layout: as many disks as were
// captured, each at least the captured size; BIOS or UEFI, with Secure Boot if the machine
// had it; memory from the config. A migration rehearsal changes the disks on purpose (NVMe
// instead of virtio, bigger or smaller).

import { usageError } from "../../common/errors.ts";
import type { Layout } from "../../layouts/schema.ts";

const MiB = 1024 * 1024;

export interface DrillDisk {
  sizeBytes: number;
  bus: "virtio" | "nvme";
  /** The captured disk it stands in for. */
  stands: string;
}

export interface VmShape {
  firmware: "bios" | "uefi";
  secureBoot: boolean;
  memoryMiB: number;
  disks: DrillDisk[];
}

export interface ShapeOptions {
  memoryMiB: number;
  /** Rehearse a migration: another disk bus, and/or every disk scaled (1.5 = 50% larger). */
  migrate?: { bus?: "virtio" | "nvme"; scale?: number };
}

export function shapeVm(layout: Layout, options: ShapeOptions): VmShape {
  if (layout.disks.length === 0) {
    throw usageError(
      "LB_DRILL_NO_DISKS",
      `The layout of ${layout.host.hostname} has no disks; a drill has nothing to restore onto.`,
      "Back the host up with its layout (lifeboat backup without --no-layout).",
    );
  }
  const scale = options.migrate?.scale ?? 1;
  if (!(scale > 0.1 && scale <= 16)) {
    throw usageError("LB_DRILL_SCALE", `Disk scale ${scale} is out of range (0.1 to 16).`);
  }
  const captured = (d: Layout["disks"][number]) =>
    d.transport === "nvme" || d.device.startsWith("/dev/nvme") ? "nvme" : "virtio";
  return {
    firmware: layout.boot.firmware,
    secureBoot: layout.boot.secureBoot === "enabled",
    memoryMiB: options.memoryMiB,
    disks: layout.disks.map((disk) => ({
      // Whole MiB, never below the captured size unless shrinking is asked for.
      sizeBytes: Math.ceil((disk.sizeBytes * scale) / MiB) * MiB,
      bus: options.migrate?.bus ?? captured(disk),
      stands: disk.device,
    })),
  };
}
