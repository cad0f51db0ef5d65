// Which target disk each captured disk goes to. Rules, in order:
//   1. An explicit --map OLD=NEW always wins.
//   2. The same device, when it exists and is at least as big.
//   3. The smallest unused disk that is at least as big (the same size is the best fit).
//   4. The largest unused disk, even if smaller: the sizing step then decides whether the
//      data still fits, and refuses with the numbers when it does not.
// Then safety: a protected disk (backup source, rescue medium) or a disk with a mounted
// filesystem is refused, and no target is used twice. Devices merely active on a target
// (an old md array, an open LUKS mapping) are stopped by the wipe step.

import { inputError } from "../../common/errors.ts";
import { formatBytes } from "../../common/units.ts";
import type { Disk } from "../schema.ts";
import type { DiskAssignment, PlanOptions, TargetDisk } from "./types.ts";

export function mapDisks(
  disks: Disk[],
  targets: TargetDisk[],
  options: Pick<PlanOptions, "maps" | "protect" | "targetRoot">,
): DiskAssignment[] {
  const byDevice = new Map(targets.map((t) => [t.device, t]));
  for (const [from, to] of Object.entries(options.maps)) {
    if (!disks.some((d) => d.device === from)) {
      throw inputError(
        "LB_MAP_UNKNOWN_SOURCE",
        `--map ${from}=${to}: the layout has no disk ${from}.`,
        `The layout's disks are: ${disks.map((d) => d.device).join(", ") || "none"}.`,
      );
    }
    if (!byDevice.has(to)) {
      throw inputError(
        "LB_MAP_TARGET_MISSING",
        `--map ${from}=${to}: there is no disk ${to} on this machine.`,
        `Disks found: ${describeTargets(targets)}. Check the name with lsblk.`,
      );
    }
  }

  const used = new Set<string>();
  const assignments: DiskAssignment[] = [];
  // Explicit maps first, so automatic choices never take a disk the user asked for.
  const ordered = [...disks].sort(
    (a, b) => Number(b.device in options.maps) - Number(a.device in options.maps),
  );
  for (const disk of ordered) {
    const assignment = chooseTarget(disk, targets, byDevice, used, options.maps);
    if (used.has(assignment.to)) {
      throw inputError(
        "LB_MAP_DUPLICATE",
        `Two layout disks would both go to ${assignment.to}.`,
        "Give each layout disk its own target with --map OLD=NEW.",
      );
    }
    used.add(assignment.to);
    assignments.push(assignment);
  }
  for (const assignment of assignments)
    checkSafe(assignment, byDevice.get(assignment.to)!, options);
  return disks.map((d) => assignments.find((a) => a.from === d.device)!);
}

function chooseTarget(
  disk: Disk,
  targets: TargetDisk[],
  byDevice: Map<string, TargetDisk>,
  used: Set<string>,
  maps: Record<string, string>,
): DiskAssignment {
  const assign = (target: TargetDisk, reason: DiskAssignment["reason"]): DiskAssignment => ({
    from: disk.device,
    to: target.device,
    fromBytes: disk.sizeBytes,
    toBytes: target.sizeBytes,
    reason,
  });
  const explicit = maps[disk.device];
  if (explicit !== undefined) return assign(byDevice.get(explicit)!, "explicit --map");

  const reserved = new Set(Object.values(maps));
  const free = targets.filter((t) => !used.has(t.device) && !reserved.has(t.device));
  const same = free.find((t) => t.device === disk.device && t.sizeBytes >= disk.sizeBytes);
  if (same) return assign(same, "same device");

  const bigEnough = free
    .filter((t) => t.sizeBytes >= disk.sizeBytes)
    .sort((a, b) => a.sizeBytes - b.sizeBytes);
  if (bigEnough[0]) return assign(bigEnough[0], "matched by size");

  const largest = [...free].sort((a, b) => b.sizeBytes - a.sizeBytes)[0];
  if (largest) return assign(largest, "largest remaining disk");

  throw inputError(
    "LB_NO_TARGET_DISK",
    `No disk is left for ${disk.device} (${formatBytes(disk.sizeBytes)}).`,
    targets.length === 0
      ? "No disks were found on this machine. Attach a disk, or check that its driver is loaded."
      : `Disks found: ${describeTargets(targets)}. Attach another disk or map explicitly with --map ${disk.device}=NEW.`,
  );
}

function checkSafe(
  assignment: DiskAssignment,
  target: TargetDisk,
  options: Pick<PlanOptions, "protect" | "targetRoot">,
) {
  const how =
    assignment.reason === "explicit --map"
      ? "--map"
      : `the automatic mapping (${assignment.reason})`;
  const guard = options.protect.find((p) => p.device === target.device);
  if (guard) {
    throw inputError(
      "LB_TARGET_PROTECTED",
      `Refusing to write to ${target.device}: it ${guard.reason}. ${how} chose it for ${assignment.from}.`,
      `Choose another disk with --map ${assignment.from}=NEW.`,
    );
  }
  const root = options.targetRoot;
  const foreignMounts = target.mountpoints.filter(
    (m) => root === null || (m !== root && !m.startsWith(`${root}/`)),
  );
  if (foreignMounts.length > 0) {
    throw inputError(
      "LB_TARGET_MOUNTED",
      `Refusing to write to ${target.device}: it has mounted filesystems (${foreignMounts.join(", ")}). ${how} chose it for ${assignment.from}.`,
      "Unmount them first, or choose another disk with --map.",
    );
  }
}

function describeTargets(targets: TargetDisk[]): string {
  if (targets.length === 0) return "none";
  return targets.map((t) => `${t.device} (${formatBytes(t.sizeBytes)})`).join(", ");
}
