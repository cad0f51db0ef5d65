// The planner's inputs and output. Everything here is plain data: the planner is a pure
// function from (layout, target inventory, options) to a plan, and only the executor
// (agent/layout/apply.ts) touches devices.

import { z } from "zod";

/** A disk the plan may write to, as the inventory found it just before planning. */
export const TargetDiskSchema = z.object({
  device: z.string(),
  sizeBytes: z.number().int().nonnegative(),
  logicalSectorSize: z.number().int().positive(),
  /** Where the disk or anything on it is mounted right now. */
  mountpoints: z.array(z.string()),
  /**
   * Active devices stacked on it (md arrays, dm devices), topmost first. The wipe step
   * stops them, since they would make every write fail.
   */
  holders: z.array(z.object({ device: z.string(), kind: z.enum(["md", "dm"]), name: z.string() })),
  /** Existing partitions, whose old signatures are wiped too. */
  partitions: z.array(z.string()),
  /** What is on it now, in words ("ext4 'root' on /dev/vdb2"); said before anything is wiped. */
  contents: z.array(z.string()),
});
export type TargetDisk = z.infer<typeof TargetDiskSchema>;

export interface ProtectedDevice {
  /** A whole disk that must never be written. */
  device: string;
  reason: string;
}

export interface PlanOptions {
  /** Explicit OLD=NEW disk mappings; they always win. */
  maps: Record<string, string>;
  /** Disks never to touch: the backup source, the running rescue medium. */
  protect: ProtectedDevice[];
  /** Mount the rebuilt tree here; null plans no mounts. */
  targetRoot: string | null;
  /** Key file per LUKS device (by mapper name or UUID); a default path is planned otherwise. */
  keyFiles: Record<string, string>;
  /**
   * A luksHeaderBackup file per LUKS UUID (from the snapshot): the header is restored
   * instead of formatted anew, so every keyslot (passphrases, key files in the initramfs)
   * and the volume key are the captured ones.
   */
  luksHeaders?: Record<string, string>;
}

export type StepKind =
  | "wipe"
  | "partition"
  | "md"
  | "luks-format"
  | "luks-open"
  | "pv"
  | "vg"
  | "lv"
  | "mkfs"
  | "btrfs-subvolumes"
  | "mount";

export interface PlanCommand {
  argv: string[];
  /** Text fed to the command's standard input (an sfdisk script). */
  stdin?: string;
  /** Run only if this test command succeeds (e.g. stop an array only if it is active). */
  onlyIf?: string[];
  /** Skip if this test command succeeds (e.g. don't mount what is already mounted). */
  skipIf?: string[];
}

export interface PlanStep {
  /** Stable id, e.g. "partition:/dev/vdb"; the resume journal is keyed by it. */
  id: string;
  kind: StepKind;
  title: string;
  dependsOn: string[];
  commands: PlanCommand[];
  /** What this step destroys, in words. Empty for steps that only create. */
  destroys: string[];
}

export interface DiskAssignment {
  from: string;
  to: string;
  fromBytes: number;
  toBytes: number;
  reason: "explicit --map" | "same device" | "matched by size" | "largest remaining disk";
}

export interface Resize {
  /** The device as captured (/dev/vda3, vg0/root). */
  what: string;
  fromBytes: number;
  toBytes: number;
  why: string;
}

export interface Plan {
  /** A hash of the steps: the resume journal is only valid for the same plan. */
  planId: string;
  host: string;
  disks: DiskAssignment[];
  /** Captured device path to the path it will have (partitions change with the disk name). */
  deviceMap: Record<string, string>;
  resizes: Resize[];
  warnings: string[];
  targetRoot: string | null;
  steps: PlanStep[];
}
