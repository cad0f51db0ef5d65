// A fresh ext4 filesystem for each restore, on a loop device over an image file.
//
// Restoring into a directory of the shared disk made the restore figures swing by a factor
// of three: that disk is mounted with online discard, and an extraction that follows the
// deletion of a previous 800 MiB tree waits behind the discards (35-40 s against 4-6 s,
// measured with GNU tar alone). A bare-metal recovery writes onto a freshly made
// filesystem, so that is what each tool gets here: the same size, made the same way, with
// its inode tables and journal written out by mkfs (no lazy initialisation running in the
// background during the restore) and mounted without discard.

import { open, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { runTool } from "../../common/exec.ts";
import { mountPointsBelow } from "../../common/fs.ts";

export interface ScratchFilesystem {
  image: string;
  /** Unmounts the filesystem, keeping its image; safe to call twice. */
  unmount(): Promise<void>;
  /** Unmounts the filesystem and deletes its image; safe to call twice. */
  release(): Promise<void>;
}

/**
 * Makes an ext4 filesystem of `bytes` in `${mountPoint}.img` and mounts it on mountPoint
 * (which must exist and be empty). The image is sparse, so it costs only what is written.
 */
export async function mountScratch(mountPoint: string, bytes: number): Promise<ScratchFilesystem> {
  const image = `${mountPoint}.img`;
  const handle = await open(image, "wx");
  try {
    await handle.truncate(bytes);
  } finally {
    await handle.close();
  }
  let mounted = false;
  const unmount = async () => {
    if (mounted) {
      await runTool(["umount", mountPoint]);
      mounted = false;
    }
  };
  const release = async () => {
    await unmount();
    await rm(image, { force: true });
  };
  try {
    await runTool([
      "mkfs.ext4",
      "-q",
      "-F",
      "-m",
      "0",
      // One inode per 8 KiB: the dataset holds tens of thousands of small files.
      "-i",
      "8192",
      "-E",
      "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
      image,
    ]);
    await runTool(["mount", "-o", "loop,nodiscard", image, mountPoint]);
    mounted = true;
    // The target must start empty, as the tools get it elsewhere.
    await rmdir(path.join(mountPoint, "lost+found"));
  } catch (error) {
    await release();
    throw error;
  }
  return { image, unmount, release };
}

/**
 * Unmounts scratch filesystems that an interrupted run left mounted below `dir` (deepest
 * first), so that deleting or reusing the run folders never reaches into them. Returns the
 * mount points it unmounted.
 */
export async function unmountLeftovers(dir: string): Promise<string[]> {
  const targets = mountPointsBelow(dir);
  for (const target of targets) await runTool(["umount", target]);
  return targets;
}
