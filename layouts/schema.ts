// The layout document: everything needed to rebuild a machine's storage and boot path on
// blank disks. It is versioned (LAYOUT_VERSION) and validated with zod at every boundary:
// when capture writes it, when a file is read, when the server receives it.
//
// Device references: every block device is named by its path as captured
// (/dev/vda2, /dev/md0, /dev/mapper/cr_root, /dev/mapper/vg0-root). The planner maps disks
// to new targets and renames partitions by the target's naming rules; md, dm and LV paths
// keep their names on the rebuilt system.
//
// Sizes are bytes as JSON numbers: exact up to 8 PiB, which covers any single device.

import { z } from "zod";

export const LAYOUT_KIND = "lifeboat/layout";
export const LAYOUT_VERSION = 1;

const bytes = z.number().int().nonnegative();
const devicePath = z.string().regex(/^\/dev\/\S+$/, "must be a device path such as /dev/vda2");
const uuid = z.string().min(1);

// ---------------------------------------------------------------------------------------
// Host identity

/** Which machine this was. Used to label drills and reports, and to size drill VMs. */
export const HostSchema = z.object({
  hostname: z.string(),
  /** /etc/machine-id; kept so the restored system keeps its journal and DHCP identity. */
  machineId: z.string().nullable(),
  os: z.object({ id: z.string(), versionId: z.string(), prettyName: z.string() }).nullable(),
  kernelRelease: z.string(),
  architecture: z.string(),
  /** Restore drills size the VM from this (memory, CPU count). */
  hardware: z.object({
    system: z.object({ manufacturer: z.string(), model: z.string(), serial: z.string() }),
    board: z.object({ manufacturer: z.string(), model: z.string() }),
    cpu: z.object({ model: z.string(), cores: z.number().int(), threads: z.number().int() }),
    memoryBytes: bytes,
    virtual: z.boolean(),
  }),
  /** Interfaces with MAC and addresses; recovery uses them for static network setup. */
  network: z.array(
    z.object({
      name: z.string(),
      mac: z.string().nullable(),
      state: z.string(),
      addresses: z.array(
        z.object({ family: z.enum(["inet", "inet6"]), address: z.string(), prefix: z.number() }),
      ),
    }),
  ),
});

// ---------------------------------------------------------------------------------------
// Disks and partition tables

export const PARTITION_ROLES = [
  "boot",
  "esp",
  "bios_grub",
  "raid",
  "lvm",
  "swap",
  "extended",
] as const;

/** One partition, positioned in bytes so that it can be placed on disks of any sector size. */
export const PartitionSchema = z.object({
  number: z.number().int().positive(),
  device: devicePath,
  startBytes: bytes,
  sizeBytes: bytes,
  /** GPT type GUID (upper case) or MBR type as hex ("0x83"). */
  type: z.string(),
  /** GPT partition GUID or MBR "<disk id>-<nn>"; recreated so PARTUUID= references keep working. */
  partUuid: z.string().nullable(),
  /** GPT partition name. */
  name: z.string().nullable(),
  /** GPT attribute flags as sfdisk writes them ("LegacyBIOSBootable GUID:63"). */
  attrs: z.string().nullable(),
  /** MBR active flag. */
  bootable: z.boolean(),
  /** MBR only: where the partition sits. GPT partitions are always "primary". */
  kind: z.enum(["primary", "extended", "logical"]),
  /** What the partition is for; drives bootloader install and which partition may grow. */
  roles: z.array(z.enum(PARTITION_ROLES)),
});

export const PartitionTableSchema = z.object({
  type: z.enum(["gpt", "dos"]),
  /** GPT disk GUID or MBR disk signature ("0x1234abcd"); recreated as captured. */
  id: z.string(),
  sectorSize: z.number().int().positive(),
  /** First and last usable LBA (GPT). The last one is recomputed on a disk of another size. */
  firstLba: z.number().int().nonnegative().nullable(),
  lastLba: z.number().int().nonnegative().nullable(),
  partitions: z.array(PartitionSchema),
});

/** A whole disk. Mapping to targets uses size, then identity; the planner never trusts names. */
export const DiskSchema = z.object({
  device: devicePath,
  model: z.string().nullable(),
  serial: z.string().nullable(),
  wwn: z.string().nullable(),
  sizeBytes: bytes,
  logicalSectorSize: z.number().int().positive(),
  physicalSectorSize: z.number().int().positive(),
  rotational: z.boolean(),
  /** virtio, nvme, sata, sas, usb, ... or null when the kernel does not say (loop). */
  transport: z.string().nullable(),
  removable: z.boolean(),
  partitionTable: PartitionTableSchema.nullable(),
});

// ---------------------------------------------------------------------------------------
// md RAID

/** A software RAID array, recreated with the same UUID so mdadm.conf and initramfs still match. */
export const MdArraySchema = z.object({
  device: devicePath,
  /** The array name (homehost:name), used by mdadm --assemble. */
  name: z.string().nullable(),
  uuid: uuid,
  level: z.string(),
  /** Superblock version; 1.0 keeps the superblock at the end so an ESP stays readable. */
  metadata: z.string(),
  raidDevices: z.number().int().positive(),
  members: z.array(
    z.object({
      device: devicePath,
      /** Slot number in the array, or null for a spare. */
      slot: z.number().int().nonnegative().nullable(),
      state: z.string(),
    }),
  ),
  spares: z.number().int().nonnegative(),
  chunkSizeBytes: bytes.nullable(),
  layout: z.string().nullable(),
  /** "internal", "none" or a bitmap file path. */
  bitmap: z.string(),
  sizeBytes: bytes,
  /** A partitioned array (md0p1, ...). */
  partitionTable: PartitionTableSchema.nullable(),
});

// ---------------------------------------------------------------------------------------
// LUKS

/**
 * An encrypted device, recreated with the same UUID and parameters so crypttab still
 * matches. The layout never holds a key or passphrase; recovery asks for one.
 */
export const LuksSchema = z.object({
  /** The encrypted (backing) device. */
  device: devicePath,
  /** The opened device, /dev/mapper/<name>, when it was open at capture time. */
  mapperName: z.string().nullable(),
  version: z.union([z.literal(1), z.literal(2)]),
  uuid: uuid,
  label: z.string().nullable(),
  subsystem: z.string().nullable(),
  cipher: z.string(),
  keySizeBits: z.number().int().positive(),
  /** LUKS2 only; LUKS1 is always 512. */
  sectorSize: z.number().int().positive(),
  dataOffsetBytes: bytes,
  pbkdf: z.object({
    type: z.string(),
    hash: z.string().nullable(),
    iterations: z.number().int().nullable(),
    memoryKiB: z.number().int().nullable(),
    parallelThreads: z.number().int().nullable(),
  }),
  /** dm-integrity algorithm when LUKS2 authenticated encryption is used. */
  integrity: z.string().nullable(),
  keyslots: z.number().int().nonnegative(),
  /**
   * A header backup (cryptsetup luksHeaderBackup) goes to the backup store, not into the
   * layout; this records which file and checksum belong to this device.
   */
  headerBackup: z.object({ file: z.string(), sha256: z.string(), sizeBytes: bytes }).nullable(),
});

// ---------------------------------------------------------------------------------------
// LVM

/** A physical volume. Its UUID is kept so that vgcfgbackup text and filters still apply. */
export const PvSchema = z.object({
  device: devicePath,
  uuid: uuid,
  vg: z.string().nullable(),
  sizeBytes: bytes,
  deviceSizeBytes: bytes,
  peStartBytes: bytes,
});

export const LvSegmentSchema = z.object({
  /** linear, striped, raid1, thin-pool, thin, mirror, ... (lvm's segtype). */
  type: z.string(),
  startBytes: bytes,
  sizeBytes: bytes,
  stripes: z.number().int().nonnegative(),
  stripeSizeBytes: bytes.nullable(),
  /** Backing devices as lvm reports them ("/dev/vda3(0)", or sub-LVs for raid). */
  devices: z.array(z.string()),
});

/** A logical volume. Hidden sub-LVs (rimage, tmeta, pmspare) are kept for the record only. */
export const LvSchema = z.object({
  name: z.string(),
  vg: z.string(),
  uuid: uuid,
  /** /dev/mapper path; filesystems refer to it. */
  device: devicePath,
  sizeBytes: bytes,
  hidden: z.boolean(),
  active: z.boolean(),
  /** The LV's role, so that the planner creates pools before the thin volumes in them. */
  role: z.enum(["normal", "thin-pool", "thin", "raid", "internal"]),
  segments: z.array(LvSegmentSchema),
  thinPool: z
    .object({
      metadataSizeBytes: bytes,
      chunkSizeBytes: bytes,
      zero: z.boolean().nullable(),
      discards: z.string().nullable(),
      /** How full the pool's data area was; used to check that a smaller target still fits. */
      dataPercent: z.number().nullable(),
    })
    .nullable(),
  /** For a thin volume: its pool. The virtual size is sizeBytes. */
  thinVolume: z.object({ pool: z.string() }).nullable(),
  raid: z.object({ mirrors: z.number().int(), regionSizeBytes: bytes.nullable() }).nullable(),
});

export const VgSchema = z.object({
  name: z.string(),
  uuid: uuid,
  extentSizeBytes: bytes,
  sizeBytes: bytes,
  freeBytes: bytes,
  pvs: z.array(z.string()),
  lvs: z.array(LvSchema),
  /** The raw vgcfgbackup text, for forensics and for manual vgcfgrestore. */
  metadataBackup: z.string().nullable(),
});

// ---------------------------------------------------------------------------------------
// Filesystems

const fsBase = {
  device: devicePath,
  uuid: z.string().nullable(),
  label: z.string().nullable(),
  /** Filled from the mount table when mounted: used to check that a smaller target fits. */
  usage: z.object({ sizeBytes: bytes, usedBytes: bytes }).nullable(),
};

/** ext2/3/4: recreated with the same UUID, label, block and inode sizes, and features. */
export const ExtSchema = z.object({
  ...fsBase,
  type: z.enum(["ext2", "ext3", "ext4"]),
  blockSize: z.number().int().positive(),
  inodeSize: z.number().int().positive(),
  blockCount: z.number().int().nonnegative(),
  inodeCount: z.number().int().nonnegative(),
  reservedBlockCount: z.number().int().nonnegative(),
  features: z.array(z.string()),
});

/** xfs: recreated with the same UUID, label and geometry (but not agcount on a new size). */
export const XfsSchema = z.object({
  ...fsBase,
  type: z.literal("xfs"),
  geometry: z.object({
    blockSize: z.number().int().positive(),
    sectorSize: z.number().int().positive(),
    inodeSize: z.number().int().positive(),
    agCount: z.number().int().positive(),
    agSizeBlocks: z.number().int().positive(),
    dataBlocks: z.number().int().nonnegative(),
    logBlocks: z.number().int().nonnegative(),
    logInternal: z.boolean(),
    sunit: z.number().int().nonnegative(),
    swidth: z.number().int().nonnegative(),
    /** crc, finobt, sparse, rmapbt, reflink, bigtime, inobtcount, nrext64 as 0/1. */
    features: z.record(z.string(), z.number().int()),
  }),
});

/** btrfs: recreated with the same UUID, profiles and subvolume tree and default subvolume. */
export const BtrfsSchema = z.object({
  ...fsBase,
  type: z.literal("btrfs"),
  /** Every device of a multi-device filesystem. */
  devices: z.array(devicePath),
  dataProfile: z.string().nullable(),
  metadataProfile: z.string().nullable(),
  systemProfile: z.string().nullable(),
  subvolumes: z.array(
    z.object({
      id: z.number().int().positive(),
      parentId: z.number().int().nonnegative(),
      path: z.string(),
      uuid: z.string().nullable(),
    }),
  ),
  /** Id 5 is the top level. Paths survive a restore; ids may not. */
  defaultSubvolume: z.object({ id: z.number().int().positive(), path: z.string() }),
});

/** vfat (the ESP, usually): the volume id is its UUID. */
export const VfatSchema = z.object({
  ...fsBase,
  type: z.literal("vfat"),
  fatSize: z.union([z.literal(12), z.literal(16), z.literal(32)]).nullable(),
});

/** A swap partition or LV, recreated with the same UUID and label. */
export const SwapSchema = z.object({
  ...fsBase,
  type: z.literal("swap"),
});

/** A filesystem Lifeboat does not recreate (recorded so nothing is silently dropped). */
export const OtherFsSchema = z.object({
  ...fsBase,
  type: z.literal("other"),
  fsType: z.string(),
});

export const FilesystemSchema = z.discriminatedUnion("type", [
  ExtSchema,
  XfsSchema,
  BtrfsSchema,
  VfatSchema,
  SwapSchema,
  OtherFsSchema,
]);

/** A swap file: recreated by the restored files plus mkswap with the same UUID. */
export const SwapFileSchema = z.object({
  path: z.string(),
  sizeBytes: bytes,
  uuid: z.string().nullable(),
  label: z.string().nullable(),
  priority: z.number().int(),
});

// ---------------------------------------------------------------------------------------
// Mounts

/** A mounted local filesystem. Recovery mounts these under the target root, in depth order. */
export const MountSchema = z.object({
  target: z.string(),
  source: devicePath,
  fsType: z.string(),
  options: z.array(z.string()),
  /** The subtree mounted: "/" normally, "/@home" for a btrfs subvolume. */
  fsRoot: z.string(),
  uuid: z.string().nullable(),
});

/** A mount that is not backed up (pseudo, remote, container overlay), and why. */
export const ExcludedMountSchema = z.object({
  target: z.string(),
  source: z.string(),
  fsType: z.string(),
  reason: z.string(),
});

// ---------------------------------------------------------------------------------------
// Firmware and boot

export const EfiBootEntrySchema = z.object({
  /** Boot#### number as four hex digits. */
  number: z.string().regex(/^[0-9A-F]{4}$/),
  label: z.string(),
  active: z.boolean(),
  /** The device path text as efibootmgr -v prints it. */
  devicePath: z.string(),
  /** The partition GUID the entry points at, when it is an HD() path. */
  partUuid: z.string().nullable(),
  /** The loader file, e.g. \EFI\debian\shimx64.efi. */
  loader: z.string().nullable(),
});

/** How the machine boots; recovery reinstalls exactly this. */
export const BootSchema = z.object({
  firmware: z.enum(["bios", "uefi"]),
  /** null on BIOS machines, where it does not apply. */
  secureBoot: z.enum(["enabled", "disabled", "unknown"]).nullable(),
  /** Disks whose first sector holds GRUB's boot code: grub-install goes on each. */
  grubBiosDisks: z.array(devicePath),
  esp: z
    .object({
      devices: z.array(devicePath),
      mountPoint: z.string().nullable(),
      /** Files on the ESP, so that recovery can check the restored one is complete. */
      files: z.array(z.object({ path: z.string(), sizeBytes: bytes })),
    })
    .nullable(),
  efi: z
    .object({
      bootCurrent: z.string().nullable(),
      bootOrder: z.array(z.string()),
      entries: z.array(EfiBootEntrySchema),
    })
    .nullable(),
  kernelCmdline: z.string(),
  /** Which tool rebuilds the initramfs in the restored system. */
  initramfsTool: z.enum(["initramfs-tools", "dracut", "unknown"]),
});

// ---------------------------------------------------------------------------------------
// Raw tool output

/** One tool run, kept verbatim. Parsers can be re-run on it; forensics can read it. */
export const RawCommandSchema = z.object({
  argv: z.array(z.string()),
  exitCode: z.number().int(),
  stdout: z.string(),
  stderr: z.string(),
});

export const RawCaptureSchema = z.object({
  commands: z.array(RawCommandSchema),
  /** Files read (fstab, crypttab, mdadm.conf, /proc/cmdline, ...); null when absent. */
  files: z.record(z.string(), z.string().nullable()),
  /** Small binary reads (the first sector of each disk, EFI variables), base64. */
  binary: z.record(z.string(), z.string()),
  /** Directory listings, e.g. the ESP's contents. */
  listings: z.record(z.string(), z.array(z.object({ path: z.string(), sizeBytes: bytes }))),
  /** The hardware inventory as the inventory library returned it. */
  hardware: z.unknown(),
  /** Which tools were missing at capture time. */
  missingTools: z.array(z.string()),
});

// ---------------------------------------------------------------------------------------
// The document

export const LayoutSchema = z.object({
  kind: z.literal(LAYOUT_KIND),
  version: z.literal(LAYOUT_VERSION),
  capturedAt: z.string().datetime(),
  capturedBy: z.string(),
  /** Whole machine, or only the disks named with --disk. */
  scope: z.object({ wholeMachine: z.boolean(), disks: z.array(devicePath) }),
  host: HostSchema,
  boot: BootSchema,
  disks: z.array(DiskSchema),
  md: z.array(MdArraySchema),
  luks: z.array(LuksSchema),
  lvm: z.object({ pvs: z.array(PvSchema), vgs: z.array(VgSchema) }),
  filesystems: z.array(FilesystemSchema),
  swapFiles: z.array(SwapFileSchema),
  mounts: z.object({
    entries: z.array(MountSchema),
    excluded: z.array(ExcludedMountSchema),
  }),
  /** The configuration files that name storage, verbatim; recovery fixes identifiers in them. */
  configFiles: z.object({
    fstab: z.string().nullable(),
    crypttab: z.string().nullable(),
    mdadmConf: z.string().nullable(),
  }),
  /** Things capture could not record, in words a sysadmin can act on. */
  warnings: z.array(z.string()),
  raw: RawCaptureSchema,
});

export type Layout = z.infer<typeof LayoutSchema>;
export type Host = z.infer<typeof HostSchema>;
export type Disk = z.infer<typeof DiskSchema>;
export type PartitionTable = z.infer<typeof PartitionTableSchema>;
export type Partition = z.infer<typeof PartitionSchema>;
export type PartitionRole = (typeof PARTITION_ROLES)[number];
export type MdArray = z.infer<typeof MdArraySchema>;
export type Luks = z.infer<typeof LuksSchema>;
export type Pv = z.infer<typeof PvSchema>;
export type Vg = z.infer<typeof VgSchema>;
export type Lv = z.infer<typeof LvSchema>;
export type LvSegment = z.infer<typeof LvSegmentSchema>;
export type Filesystem = z.infer<typeof FilesystemSchema>;
export type ExtFs = z.infer<typeof ExtSchema>;
export type XfsFs = z.infer<typeof XfsSchema>;
export type BtrfsFs = z.infer<typeof BtrfsSchema>;
export type VfatFs = z.infer<typeof VfatSchema>;
export type SwapFs = z.infer<typeof SwapSchema>;
export type SwapFile = z.infer<typeof SwapFileSchema>;
export type Mount = z.infer<typeof MountSchema>;
export type ExcludedMount = z.infer<typeof ExcludedMountSchema>;
export type Boot = z.infer<typeof BootSchema>;
export type EfiBootEntry = z.infer<typeof EfiBootEntrySchema>;
export type RawCapture = z.infer<typeof RawCaptureSchema>;
export type RawCommand = z.infer<typeof RawCommandSchema>;
