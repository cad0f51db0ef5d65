// What a backup covers: every mounted local filesystem in the layout, or the paths given.
// Each becomes one tar stream, so --one-file-system keeps every stream to its filesystem.

import { stat } from "node:fs/promises";
import path from "node:path";
import { inputError } from "../../common/errors.ts";
import type { Layout } from "../../layouts/schema.ts";

export interface BackupTarget {
  mountPoint: string;
  device: string | null;
  fsType: string | null;
}

/** Filesystems whose files a backup keeps. Swap, pseudo, memory and network ones are not. */
const LOCAL_FILESYSTEMS = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "f2fs", "jfs"]);

/**
 * Paths never worth restoring: temporary files, package caches that apt refills, the
 * agent's own state (it describes the backups, not the machine) and the contents of
 * lost+found (fsck's leftovers). Absolute; excludesFor makes them relative to each target.
 */
export const DEFAULT_EXCLUDES = [
  "/tmp/*",
  "/var/tmp/*",
  "/var/cache/apt/archives/*.deb",
  "/var/cache/apt/*.bin",
  "/var/lib/lifeboat/*",
  "/lost+found/*",
  "/swapfile",
];

export async function backupTargets(
  layout: Layout | null,
  options: { paths?: string[] },
): Promise<BackupTarget[]> {
  if (options.paths && options.paths.length > 0) {
    const targets: BackupTarget[] = [];
    for (const raw of options.paths) {
      if (!path.isAbsolute(raw)) {
        throw inputError(
          "LB_BACKUP_PATH",
          `--path ${raw} is not an absolute path.`,
          `Give the full path, e.g. --path ${path.resolve(raw)}`,
        );
      }
      const info = await stat(raw).catch(() => null);
      if (!info?.isDirectory()) {
        throw inputError(
          "LB_BACKUP_PATH",
          `--path ${raw} is not an existing directory.`,
          "Back up directories; a single file is restored from the directory that holds it.",
        );
      }
      targets.push({ mountPoint: path.resolve(raw), device: null, fsType: null });
    }
    return targets;
  }
  if (!layout) {
    throw inputError(
      "LB_BACKUP_NO_LAYOUT",
      "A whole-machine backup needs the disk layout, and none was captured.",
      "Drop --no-layout, or back up chosen directories with --path.",
    );
  }
  const typeOf = new Map(layout.filesystems.map((fs) => [fs.device, fs.type as string]));
  const seen = new Set<string>();
  const targets: BackupTarget[] = [];
  for (const mount of layout.mounts.entries) {
    const fsType = mount.fsType ?? typeOf.get(mount.source) ?? null;
    if (!fsType || !LOCAL_FILESYSTEMS.has(fsType) || seen.has(mount.target)) continue;
    seen.add(mount.target);
    targets.push({ mountPoint: mount.target, device: mount.source, fsType });
  }
  return targets.sort((a, b) => a.mountPoint.localeCompare(b.mountPoint));
}

/**
 * Exclude patterns for one target, relative to its directory as tar sees it ("./etc/...").
 * Absolute patterns outside the target are dropped; patterns without a slash match a name
 * anywhere in the tree.
 */
export function excludesFor(target: BackupTarget, configured: string[]): string[] {
  const out: string[] = [];
  for (const pattern of [...DEFAULT_EXCLUDES, ...configured]) {
    if (!pattern.startsWith("/")) {
      out.push(`*/${pattern}`);
      continue;
    }
    const base = target.mountPoint === "/" ? "" : target.mountPoint;
    if (base && pattern !== base && !pattern.startsWith(`${base}/`)) continue;
    const relative = pattern.slice(base.length);
    if (relative === "" || relative === "/") continue;
    out.push(`.${relative}`);
  }
  return [...new Set(out)];
}
