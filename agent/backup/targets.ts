// What a backup covers: every mounted local filesystem in the layout, or the paths given with
// --path. Each becomes one tar stream (-C MOUNTPOINT .), and --one-file-system keeps every
// stream to its own filesystem.

import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import { inputError, usageError } from "../../common/errors.ts";
import type { Layout } from "../../layouts/schema.ts";

export interface BackupTarget {
  mountPoint: string;
  device: string | null;
  fsType: string | null;
  /** Swap files the layout lists inside this filesystem (absolute paths); never backed up. */
  swapFiles?: string[];
}

/** Filesystems whose files a backup keeps. Swap, pseudo, memory, network and FUSE ones not. */
const LOCAL_FILESYSTEMS = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "f2fs", "jfs"]);

/**
 * Paths a restore must not bring back, or that are pure cache (absolute; excludesFor makes
 * them relative to each target):
 * - /tmp and /var/tmp contents: temporary by definition (the directories themselves stay,
 *   with their 1777 modes);
 * - apt's downloaded packages and package caches: apt fetches or rebuilds them;
 * - /var/lib/lifeboat: the agent's own state (chain state, tar snapshot files being written
 *   by this very backup, the lock). Restored, it would describe backups of another time.
 * Swap files named in the layout are excluded per target (BackupTarget.swapFiles).
 * lost+found is NOT excluded: its contents are what fsck saved of damaged files, possibly
 * the only copy of something, and usually nothing at all.
 */
export const DEFAULT_EXCLUDES = [
  "/tmp/*",
  "/var/tmp/*",
  "/var/cache/apt/archives/*.deb",
  "/var/cache/apt/archives/partial/*",
  "/var/cache/apt/*.bin",
  "/var/lib/lifeboat/*",
];

/** btrfs subvolumes under these names are snapshots (snapper, timeshift), not data. */
const SNAPSHOT_DIRS = new Set([".snapshots", "timeshift-btrfs"]);

export async function backupTargets(
  layout: Layout | null,
  options: { paths?: string[] },
): Promise<BackupTarget[]> {
  if (options.paths && options.paths.length > 0) return pathTargets(options.paths);
  if (!layout) {
    throw inputError(
      "LB_BACKUP_NO_LAYOUT",
      "A whole-machine backup needs the disk layout, and none was captured.",
      "Drop --no-layout, or back up chosen directories with --path.",
    );
  }
  return layoutTargets(layout);
}

/** Every mounted local filesystem, once; nested btrfs subvolumes that are not mounted too. */
export function layoutTargets(layout: Layout): BackupTarget[] {
  const excluded = new Set(layout.mounts.excluded.map((m) => m.target));
  const fsOf = (device: string) =>
    layout.filesystems.find(
      (fs) => fs.device === device || ("devices" in fs && fs.devices.includes(device)),
    );
  const mounts = layout.mounts.entries
    .filter((m) => LOCAL_FILESYSTEMS.has(m.fsType) && !excluded.has(m.target))
    .sort((a, b) => depth(a.target) - depth(b.target) || a.target.localeCompare(b.target));
  const chosen: { target: BackupTarget; source: string; fsRoot: string }[] = [];
  for (const mount of mounts) {
    const fs = fsOf(mount.source);
    const subvolumes = fs?.type === "btrfs" ? fs.subvolumes.map((s) => `/${s.path}`) : [];
    const covered = chosen.some(
      (c) =>
        c.source === mount.source &&
        (c.fsRoot === mount.fsRoot ||
          // A bind mount of a directory inside a filesystem already streamed; a btrfs
          // subvolume is its own st_dev, which --one-file-system does not enter.
          (within(mount.fsRoot, c.fsRoot) && !subvolumes.includes(mount.fsRoot))),
    );
    if (covered || chosen.some((c) => c.target.mountPoint === mount.target)) continue;
    chosen.push({
      target: { mountPoint: mount.target, device: mount.source, fsType: mount.fsType },
      source: mount.source,
      fsRoot: mount.fsRoot,
    });
  }
  // Subvolumes below a mounted one that are not mounted themselves: the parent's stream
  // stops at them, so each is a stream of its own.
  for (const { target, fsRoot } of [...chosen]) {
    const fs = target.device ? fsOf(target.device) : undefined;
    if (fs?.type !== "btrfs") continue;
    for (const subvolume of fs.subvolumes) {
      const root = `/${subvolume.path}`;
      if (!within(root, fsRoot) || root === fsRoot) continue;
      if (subvolume.path.split("/").some((part) => SNAPSHOT_DIRS.has(part))) continue;
      if (layout.mounts.entries.some((m) => m.source === target.device && m.fsRoot === root))
        continue;
      const mountPoint = path.posix.join(target.mountPoint, path.posix.relative(fsRoot, root));
      if (chosen.some((c) => c.target.mountPoint === mountPoint)) continue;
      chosen.push({
        target: { mountPoint, device: target.device, fsType: "btrfs" },
        source: target.device!,
        fsRoot: root,
      });
    }
  }
  const targets = chosen.map((c) => c.target);
  for (const swap of layout.swapFiles) {
    const owner = targets
      .filter((t) => within(swap.path, t.mountPoint))
      .sort((a, b) => depth(b.mountPoint) - depth(a.mountPoint))[0];
    if (owner) owner.swapFiles = [...(owner.swapFiles ?? []), swap.path];
  }
  return targets.sort((a, b) => a.mountPoint.localeCompare(b.mountPoint));
}

async function pathTargets(paths: string[]): Promise<BackupTarget[]> {
  const targets: BackupTarget[] = [];
  for (const raw of paths) {
    if (!path.isAbsolute(raw)) {
      throw usageError(
        "LB_BACKUP_PATH",
        `--path ${raw} is not an absolute path.`,
        `Give the full path, e.g. --path ${path.resolve(raw)}`,
      );
    }
    const info = await stat(raw).catch(() => null);
    if (!info?.isDirectory()) {
      throw inputError(
        "LB_BACKUP_PATH",
        `--path ${raw} is ${info ? "not a directory" : "missing"}.`,
        "Back up existing directories; a single file is restored from the directory that holds it.",
      );
    }
    // The real path: a restore recreates directories, not the symlinks that led to them.
    const real = await realpath(raw);
    if (targets.some((t) => t.mountPoint === real)) continue;
    const overlap = targets.find((t) => within(real, t.mountPoint) || within(t.mountPoint, real));
    if (overlap) {
      const [outer, inner] = within(real, overlap.mountPoint)
        ? [overlap.mountPoint, real]
        : [real, overlap.mountPoint];
      throw usageError(
        "LB_BACKUP_PATH",
        `--path ${inner} is inside --path ${outer}, so it would be backed up twice.`,
        `Give only --path ${outer}.`,
      );
    }
    targets.push({ mountPoint: real, device: null, fsType: null });
  }
  return targets;
}

// Exclude patterns for one target, as GNU tar sees its members ("./etc/hosts", anchored;
// see tar.ts). Absolute patterns are taken relative to the target and dropped when they lie
// outside it (they must spell out the mount point literally: "/srv/cache/*" for /srv).
// Patterns without a leading "/" match at any depth: "*.tmp" becomes "*/*.tmp", which
// --anchored matches against "./a.tmp" and "./x/y/a.tmp" alike.
export function excludesFor(target: BackupTarget, configured: string[]): string[] {
  const base = target.mountPoint === "/" ? "" : target.mountPoint.replace(/\/+$/, "");
  const out: string[] = [];
  const patterns = [
    ...DEFAULT_EXCLUDES,
    ...(target.swapFiles ?? []).map(escapeGlob),
    ...configured,
  ];
  for (const raw of patterns) {
    const pattern = raw.length > 1 ? raw.replace(/\/+$/, "") : raw;
    if (!pattern.startsWith("/")) {
      out.push(`*/${pattern.replace(/^(\.\/)+/, "")}`);
      continue;
    }
    if (base && !pattern.startsWith(`${base}/`)) continue;
    out.push(`.${pattern.slice(base.length)}`);
  }
  return [...new Set(out)];
}

/** A literal path as a tar --exclude pattern. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[\\*?[\]]/g, "\\$&");
}

/** Is `inner` the same as or below `outer` (both absolute)? */
function within(inner: string, outer: string): boolean {
  return outer === "/" || inner === outer || inner.startsWith(`${outer}/`);
}

function depth(p: string): number {
  return p === "/" ? 0 : p.split("/").length - 1;
}
