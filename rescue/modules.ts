// Which kernel modules the rescue image carries. The list is what recovery can meet on a
// server: disk controllers, md, device-mapper, the filesystems the planner can create,
// the ciphers LUKS uses, common NICs and efivarfs. A kernel has each of them as a module,
// built in, or not at all (Debian's cloud kernel has no AHCI, USB or physical NIC drivers);
// resolveModuleNames() sorts the names into those three groups from the kernel's own
// modules.dep, modules.builtin and modules.alias, so the builder copies what exists and
// says what it skipped. Dependencies are added later by modprobe (rescue/initramfs.ts).

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

export interface ModuleGroup {
  name: string;
  why: string;
  /**
   * Loaded before the recovery prompt (the init needs them to find disks, the network and
   * the medium). The other groups load in the background while the network comes up:
   * recovery waits for them before it touches a disk. Under emulation, loading md's RAID6
   * benchmark, xfs and btrfs alone took 3-4 s of the boot.
   */
  boot: boolean;
  modules: readonly string[];
}

export const RESCUE_MODULE_GROUPS: readonly ModuleGroup[] = [
  {
    name: "storage",
    boot: true,
    why: "disk controllers: virtio, NVMe, SATA/AHCI, SCSI disks and CD-ROMs, USB sticks",
    modules: [
      "virtio_pci",
      "virtio_blk",
      "virtio_scsi",
      "nvme",
      "ahci",
      "ata_piix",
      "sd_mod",
      "sr_mod",
      "megaraid_sas",
      "mpt3sas",
      "hpsa",
      "smartpqi",
      "vmw_pvscsi",
      "hv_storvsc",
      "xen_blkfront",
      "xhci_pci",
      "ehci_pci",
      "ohci_pci",
      "uhci_hcd",
      "usb_storage",
      "uas",
      "usbhid",
      "hid_generic",
      "loop",
    ],
  },
  {
    name: "md",
    boot: false,
    why: "software RAID the layout may hold",
    modules: ["md_mod", "linear", "raid0", "raid1", "raid10", "raid456"],
  },
  {
    name: "dm",
    boot: false,
    why: "LVM (linear, thin, snapshots, raid LVs) and LUKS",
    modules: [
      "dm_mod",
      "dm_crypt",
      "dm_thin_pool",
      "dm_snapshot",
      "dm_mirror",
      "dm_raid",
      "dm_integrity",
    ],
  },
  {
    name: "medium",
    boot: true,
    why: "the rescue ISO itself, which may carry an embedded snapshot",
    modules: ["isofs"],
  },
  {
    name: "filesystems",
    boot: false,
    why: "every filesystem the planner creates, the ESP's code pages, and squashfs media",
    modules: [
      "ext4",
      "xfs",
      "btrfs",
      "vfat",
      "nls_cp437",
      "nls_ascii",
      "nls_iso8859_1",
      "nls_utf8",
      "squashfs",
    ],
  },
  {
    name: "crypto",
    boot: false,
    why: "LUKS ciphers and hashes (generic code: AES-NI may be absent, e.g. under emulation)",
    modules: [
      "xts",
      "cbc",
      "ecb",
      "essiv",
      "aes_generic",
      "aesni_intel",
      "sha256_generic",
      "sha512_generic",
      "crc32c_generic",
      "crc32c_intel",
      "algif_skcipher",
      "af_alg",
    ],
  },
  {
    name: "network",
    boot: true,
    why: "NICs to reach the backup server: virtual and the common server ones",
    modules: [
      "virtio_net",
      "e1000",
      "e1000e",
      "igb",
      "ixgbe",
      "i40e",
      "ice",
      "r8169",
      "tg3",
      "bnx2",
      "bnx2x",
      "bnxt_en",
      "mlx4_en",
      "mlx5_core",
      "vmxnet3",
      "hv_netvsc",
      "xen_netfront",
      "ena",
      "af_packet",
    ],
  },
  { name: "efi", boot: true, why: "EFI variables for efibootmgr", modules: ["efivarfs"] },
];

export const DEFAULT_RESCUE_MODULES: readonly string[] = RESCUE_MODULE_GROUPS.flatMap(
  (group) => group.modules,
);

/** The default modules the init loads before the prompt, and those it loads after. */
export const BOOT_RESCUE_MODULES: readonly string[] = RESCUE_MODULE_GROUPS.filter(
  (group) => group.boot,
).flatMap((group) => group.modules);
export const LATER_RESCUE_MODULES: readonly string[] = RESCUE_MODULE_GROUPS.filter(
  (group) => !group.boot,
).flatMap((group) => group.modules);

/** Module names compare with - and _ as the same character, as the kernel does. */
export function normalizeModuleName(name: string): string {
  return name.trim().replace(/-/g, "_");
}

const MODULE_FILE = /([^/]+?)\.ko(?:\.(?:xz|zst|gz))?$/;

/** The module name of a path in modules.dep or modules.builtin (kernel/fs/xfs/xfs.ko → xfs). */
export function moduleNameOfPath(file: string): string | undefined {
  const match = MODULE_FILE.exec(file.trim());
  return match?.[1] === undefined ? undefined : normalizeModuleName(match[1]);
}

export interface KernelModuleIndex {
  /** Loadable modules (names normalized). */
  loadable: Set<string>;
  /** Built into the kernel image. */
  builtin: Set<string>;
  /** alias → module names, from modules.alias (only plain names, no wildcards). */
  aliases: Map<string, string[]>;
}

/** Builds the index from the text of modules.dep, modules.builtin and modules.alias. */
export function parseModuleIndex(files: {
  dep: string;
  builtin?: string;
  alias?: string;
}): KernelModuleIndex {
  const loadable = new Set<string>();
  for (const line of files.dep.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = moduleNameOfPath(line.slice(0, colon));
    if (name !== undefined) loadable.add(name);
  }
  const builtin = new Set<string>();
  for (const line of (files.builtin ?? "").split("\n")) {
    const name = moduleNameOfPath(line);
    if (name !== undefined) builtin.add(name);
  }
  const aliases = new Map<string, string[]>();
  for (const line of (files.alias ?? "").split("\n")) {
    const match = /^alias\s+(\S+)\s+(\S+)\s*$/.exec(line.trim());
    if (match?.[1] === undefined || match[2] === undefined) continue;
    if (/[*?[]/.test(match[1])) continue;
    const key = normalizeModuleName(match[1]);
    aliases.set(key, [...(aliases.get(key) ?? []), normalizeModuleName(match[2])]);
  }
  return { loadable, builtin, aliases };
}

/** Reads the index of an unpacked kernel's lib/modules/<version> (depmod must have run). */
export function readModuleIndex(modulesDir: string): KernelModuleIndex {
  const read = (name: string) => {
    const file = path.join(modulesDir, name);
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  };
  return parseModuleIndex({
    dep: read("modules.dep"),
    builtin: read("modules.builtin"),
    alias: read("modules.alias"),
  });
}

export interface ModuleResolution {
  /** Names to hand to modprobe (loadable modules, deduplicated, in the order asked). */
  load: string[];
  /** Asked for, but built into the kernel: nothing to copy or load. */
  builtin: string[];
  /** Neither a module nor built in (nor an alias of one). */
  missing: string[];
}

/**
 * Sorts wanted module names by what the kernel has. An alias (e.g. "aes") resolves to the
 * modules that provide it; an alias that only built-in code provides counts as built in.
 */
export function resolveModuleNames(
  wanted: readonly string[],
  index: KernelModuleIndex,
): ModuleResolution {
  const out: ModuleResolution = { load: [], builtin: [], missing: [] };
  const seen = new Set<string>();
  for (const raw of wanted) {
    const name = normalizeModuleName(raw);
    if (name === "" || seen.has(name)) continue;
    seen.add(name);
    if (index.loadable.has(name)) {
      if (!out.load.includes(name)) out.load.push(name);
    } else if (index.builtin.has(name)) {
      out.builtin.push(name);
    } else {
      const targets = index.aliases.get(name) ?? [];
      const loadable = targets.filter((target) => index.loadable.has(target));
      if (loadable.length > 0) {
        for (const target of loadable) {
          if (!out.load.includes(target)) out.load.push(target);
        }
      } else if (targets.some((target) => index.builtin.has(target))) {
        out.builtin.push(name);
      } else {
        out.missing.push(name);
      }
    }
  }
  return out;
}
