// The programs the rescue image carries, why, and which Debian package has each.
//
// "essential" programs are what the recovery engine runs outside the restored system: a
// missing one is an error naming the package. Tools for a storage feature are essential
// only when the host's layout uses that feature (mdadm for md, lvm for LVM, mkfs.xfs for
// xfs, ...), so a plain ext4 host can still build its ISO without btrfs-progs; otherwise
// they are optional. A missing optional program is a warning in the build output.

import type { Layout } from "../layouts/schema.ts";

export type Feature = "md" | "lvm" | "thin" | "luks" | "ext" | "xfs" | "btrfs" | "vfat" | "uefi";

export interface RescueProgram {
  /** A tool name looked up on PATH, or an absolute path. */
  name: string;
  package: string;
  why: string;
  /** Always needed, needed when the layout uses one of these features, or optional. */
  essential: boolean | Feature;
  /** Extra names in the image that point at this program (lvm's pvcreate, vgs, ...). */
  links?: readonly string[];
}

const LVM_COMMANDS = [
  "pvcreate",
  "pvremove",
  "pvs",
  "pvscan",
  "pvdisplay",
  "pvchange",
  "pvresize",
  "vgcreate",
  "vgremove",
  "vgs",
  "vgscan",
  "vgchange",
  "vgdisplay",
  "vgcfgbackup",
  "vgcfgrestore",
  "vgextend",
  "vgreduce",
  "vgmknodes",
  "lvcreate",
  "lvremove",
  "lvs",
  "lvscan",
  "lvchange",
  "lvdisplay",
  "lvextend",
  "lvresize",
  "lvreduce",
  "lvrename",
  "lvconvert",
];

export const RESCUE_PROGRAMS: readonly RescueProgram[] = [
  // The shells. busybox gives the init, udhcpc and the small tools (dd, chroot, sync...).
  { name: "busybox", package: "busybox-static", why: "init, shell, udhcpc", essential: true },
  { name: "bash", package: "bash", why: "plan steps run with bash", essential: true },
  // util-linux and mount: the real ones, because the planner relies on their options.
  { name: "mount", package: "mount", why: "mounting the target tree", essential: true },
  { name: "umount", package: "mount", why: "unmounting", essential: true },
  { name: "losetup", package: "mount", why: "loop devices (manual work)", essential: false },
  { name: "lsblk", package: "util-linux", why: "the target inventory", essential: true },
  { name: "blkid", package: "util-linux", why: "signatures and UUIDs", essential: true },
  { name: "findmnt", package: "util-linux", why: "mounts", essential: true },
  { name: "mountpoint", package: "util-linux", why: "plan guards", essential: true },
  { name: "wipefs", package: "util-linux", why: "wiping old signatures", essential: true },
  { name: "partx", package: "util-linux", why: "re-reading partition tables", essential: true },
  { name: "blockdev", package: "util-linux", why: "re-reading partition tables", essential: true },
  { name: "mkswap", package: "util-linux", why: "swap with its UUID", essential: true },
  { name: "swapon", package: "util-linux", why: "swap (manual work)", essential: false },
  { name: "unshare", package: "util-linux", why: "confined restore mounts", essential: true },
  { name: "sfdisk", package: "fdisk", why: "partition tables", essential: true },
  { name: "sgdisk", package: "gdisk", why: "GPT repair (manual work)", essential: false },
  { name: "partprobe", package: "parted", why: "manual work", essential: false },
  // Stacked storage.
  { name: "mdadm", package: "mdadm", why: "md RAID", essential: "md" },
  { name: "lvm", package: "lvm2", why: "LVM", essential: "lvm", links: LVM_COMMANDS },
  { name: "dmsetup", package: "dmsetup", why: "device-mapper cleanup", essential: "lvm" },
  { name: "thin_check", package: "thin-provisioning-tools", why: "thin pools", essential: "thin" },
  { name: "cryptsetup", package: "cryptsetup-bin", why: "LUKS", essential: "luks" },
  // Filesystems.
  { name: "mkfs.ext4", package: "e2fsprogs", why: "ext2/3/4", essential: "ext" },
  { name: "mke2fs", package: "e2fsprogs", why: "ext2/3/4", essential: "ext" },
  { name: "tune2fs", package: "e2fsprogs", why: "ext UUIDs and features", essential: "ext" },
  { name: "dumpe2fs", package: "e2fsprogs", why: "ext parameters", essential: false },
  { name: "e2fsck", package: "e2fsprogs", why: "checking ext (manual work)", essential: false },
  { name: "resize2fs", package: "e2fsprogs", why: "manual work", essential: false },
  { name: "mkfs.xfs", package: "xfsprogs", why: "xfs", essential: "xfs" },
  { name: "xfs_admin", package: "xfsprogs", why: "xfs UUIDs and labels", essential: "xfs" },
  { name: "xfs_db", package: "xfsprogs", why: "xfs_admin and xfs_info run it", essential: "xfs" },
  { name: "xfs_info", package: "xfsprogs", why: "xfs geometry", essential: false },
  { name: "xfs_spaceman", package: "xfsprogs", why: "xfs_info runs it", essential: false },
  { name: "xfs_repair", package: "xfsprogs", why: "manual work", essential: false },
  { name: "mkfs.btrfs", package: "btrfs-progs", why: "btrfs", essential: "btrfs" },
  { name: "btrfs", package: "btrfs-progs", why: "btrfs subvolumes", essential: "btrfs" },
  {
    name: "mkfs.fat",
    package: "dosfstools",
    why: "the ESP",
    essential: "vfat",
    links: ["mkfs.vfat", "mkdosfs"],
  },
  { name: "fsck.fat", package: "dosfstools", why: "manual work", essential: false },
  // Boot.
  { name: "efibootmgr", package: "efibootmgr", why: "UEFI boot entries", essential: "uefi" },
  {
    name: "grub-install",
    package: "grub2-common",
    why: "manual bootloader work",
    essential: false,
  },
  { name: "grub-mkimage", package: "grub-common", why: "manual bootloader work", essential: false },
  { name: "grub-probe", package: "grub-common", why: "manual bootloader work", essential: false },
  { name: "grub-editenv", package: "grub-common", why: "manual bootloader work", essential: false },
  // Data and network.
  { name: "tar", package: "tar", why: "GNU tar extracts the backup", essential: true },
  { name: "zstd", package: "zstd", why: "the init unpacks Node with it", essential: true },
  { name: "ip", package: "iproute2", why: "network setup", essential: true },
];

/** The storage and boot features a layout uses. */
export function layoutFeatures(layout: Layout | null): Set<Feature> {
  const features = new Set<Feature>();
  if (layout === null) return features;
  if (layout.md.length > 0) features.add("md");
  if (layout.luks.length > 0) features.add("luks");
  if (layout.lvm.vgs.length > 0 || layout.lvm.pvs.length > 0) features.add("lvm");
  if (layout.lvm.vgs.some((vg) => vg.lvs.some((lv) => lv.role === "thin-pool")))
    features.add("thin");
  for (const fs of layout.filesystems) {
    if (fs.type === "ext2" || fs.type === "ext3" || fs.type === "ext4") features.add("ext");
    if (fs.type === "xfs" || fs.type === "btrfs" || fs.type === "vfat") features.add(fs.type);
  }
  if (layout.boot.firmware === "uefi") features.add("uefi");
  return features;
}

export function isEssential(program: RescueProgram, features: Set<Feature>): boolean {
  if (typeof program.essential === "boolean") return program.essential;
  return features.has(program.essential);
}

/** GRUB's platform directories (grub-install needs them; monolithic/ signed images are left out). */
export const GRUB_PLATFORM_DIRS = ["/usr/lib/grub/i386-pc", "/usr/lib/grub/x86_64-efi"];
