// Import a ReaR (Relax-and-Recover) disklayout.conf into a layout document.
//
// The format is ReaR's own: one component per line, "keyword value value key=value ...",
// values separated by blanks, "#" starts a comment. The facts below come from ReaR's
// layout/save/GNU/Linux/*.sh (which write the lines) and layout/prepare/GNU/Linux/*.sh
// (which read them) and from doc/user-guide/06-layout-configuration.md; see
// test/fixtures/rear/README.md for the sources. Formats changed over the years:
//   - part: "part DISK SIZE START NAME|TYPE FLAGS DEVICE [PARTUUID]" (PARTUUID in ReaR
//     master since October 2025, after 2.9).
//     On msdos disks NAME|TYPE is primary/extended/logical; on GPT it is the partition name,
//     percent-encoded, "rear-noname" when unnamed.
//   - raidarray (ReaR >= 2.7) was "raid" before; both take key=value options. raiddisk
//     (the array's size and partition table) exists since 2.7.
//   - lvmdev sizes were 512-byte sectors (pvdisplay -c) until ReaR 2.8, bytes since.
//   - lvmgrp extent size and VG size are KiB (vgdisplay -c).
//   - lvmvol was "lvmvol /dev/VG LV EXTENTS SECTORS" until ReaR 2.4 and is
//     "lvmvol /dev/VG LV BYTESb LAYOUT key:value..." since.
//   - crypt without type= predates LUKS2 support (ReaR 2.7) and is always LUKS1.
//
// ReaR does not record everything the layout schema holds. Fields it never records get the
// tool defaults listed in DEFAULTS below (or null where the schema allows it): the planner
// passes layout values to mkfs, sfdisk and friends as they are, so they must be values those
// tools accept. Identifiers a tool must be given but ReaR did not record (partition table
// ids, always) are generated from the input, so the same file always gives the same layout;
// identifiers no tool can set (LV and VG UUIDs) are UNRECORDED. Every non-comment line that
// cannot be mapped, and every value that is dropped or made up, is reported in `unmapped`.

import { createHash } from "node:crypto";
import { inputError } from "../common/errors.ts";
import { partitionDevice } from "./names.ts";
import {
  LAYOUT_KIND,
  LAYOUT_VERSION,
  LayoutSchema,
  type Boot,
  type BtrfsFs,
  type Disk,
  type ExcludedMount,
  type Filesystem,
  type Layout,
  type Luks,
  type Lv,
  type MdArray,
  type Mount,
  type Partition,
  type PartitionRole,
  type PartitionTable,
  type Pv,
  type Vg,
} from "./schema.ts";
import { GPT_TYPES } from "./parse/sfdisk.ts";

export interface UnmappedLine {
  /** 1-based line number in the input. */
  line: number;
  /** The line as written (secrets such as password= replaced by XXXXX). */
  text: string;
  reason: string;
}

export interface RearImport {
  layout: Layout;
  unmapped: UnmappedLine[];
}

/** Stands in for LV and VG UUIDs: ReaR does not record them, and lvcreate can't set them. */
export const UNRECORDED = "unrecorded";

/**
 * Values for schema fields that disklayout.conf does not carry. They are the defaults of the
 * tools that create these things, so a planner that uses them gets what a fresh mkfs,
 * cryptsetup or lvcreate would make.
 */
export const DEFAULTS = {
  /** Disk.logicalSectorSize, physicalSectorSize and PartitionTable.sectorSize. */
  sectorSize: 512,
  /** Disk.rotational, removable: unknown; ReaR does not record them. */
  rotational: false,
  removable: false,
  /** ext blocksize when the fs line has none (mke2fs default for filesystems >= 512 MiB). */
  extBlockSize: 4096,
  /** ext inode size and bytes per inode (mke2fs.conf's inode_ratio): mke2fs defaults. */
  extInodeSize: 256,
  extBytesPerInode: 16384,
  /**
   * ext features are never recorded. These are mke2fs.conf's defaults of e2fsprogs 1.42,
   * which every later e2fsprogs, kernel and GRUB reads; newer defaults such as metadata_csum
   * or orphan_file would leave a restored older system unable to fsck its own filesystems.
   */
  extFeatures: {
    ext2: ["sparse_super", "large_file", "filetype", "resize_inode", "dir_index", "ext_attr"],
    ext3: [
      ...["sparse_super", "large_file", "filetype", "resize_inode", "dir_index", "ext_attr"],
      "has_journal",
    ],
    ext4: [
      ...["sparse_super", "large_file", "filetype", "resize_inode", "dir_index", "ext_attr"],
      ...["has_journal", "extent", "huge_file", "flex_bg", "uninit_bg", "dir_nlink"],
      "extra_isize",
    ],
  },
  /** xfs geometry: never in disklayout.conf (ReaR keeps xfs_info in layout/xfs/ instead). */
  xfs: {
    blockSize: 4096,
    sectorSize: 512,
    inodeSize: 512,
    /** mkfs.xfs's allocation groups: 4 of at most 1 TiB each, at least 16 MiB each. */
    agCount: 4,
    agMaxBytes: 1024 ** 4,
    agMinBytes: 16 * 1024 * 1024,
    /** 0: no -l size=, mkfs.xfs picks the log size. */
    logBlocks: 0,
    logInternal: true,
  },
  /** LUKS values cryptsetup picks when not told otherwise. */
  luksCipher: "aes-xts-plain64",
  luksKeySizeBits: 512,
  luksSectorSize: 512,
  /** Header size, i.e. where the data starts: 2 MiB for LUKS1, 16 MiB for LUKS2. */
  luks1DataOffsetBytes: 2 * 1024 * 1024,
  luks2DataOffsetBytes: 16 * 1024 * 1024,
  luks1Pbkdf: "pbkdf2",
  luks2Pbkdf: "argon2id",
  /** ReaR recreates one key slot. */
  luksKeyslots: 1,
  /** md: mdadm's default superblock and bitmap. */
  mdMetadata: "1.2",
  mdBitmap: "internal",
  /** LVM: default data offset of a PV and thin pool chunk size. */
  pvPeStartBytes: 1024 * 1024,
  thinPoolChunkSizeBytes: 64 * 1024,
  /** Recorded since ReaR 2.8 (poolmetadatasize:); 0 means "let lvcreate choose". */
  thinPoolMetadataSizeBytes: 0,
} as const;

const NOT_RECORDED_WARNING =
  "Imported from ReaR's disklayout.conf, which does not record the host, UEFI boot entries, " +
  "disk models and serials, partition table ids, LV and VG UUIDs, xfs geometry, ext inode " +
  "size and features, or LUKS header parameters: those fields hold tool defaults, the " +
  `partition table ids are generated, and LV and VG UUIDs read '${UNRECORDED}'.`;

/** mke2fs and mkfs.btrfs defaults: dropping a value equal to these loses nothing. */
const EXT_DEFAULT_MOUNT_OPTIONS = "user_xattr,acl";
const BTRFS_DEFAULT_NODESIZE = 16384;
const BTRFS_DEFAULT_SECTORSIZE = 4096;
const BTRFS_DEFAULT_FEATURES = new Set([
  "extref",
  "skinny-metadata",
  "no-holes",
  "free-space-tree",
]);

const NOT_A_REAR_KEYWORD =
  "not a keyword ReaR writes (checked against rear/rear master of 2026-08-19), so its format is unknown; multi-device btrfs is not imported";

/** Keywords ReaR writes for things the layout schema does not model, and why. */
const UNSUPPORTED_KEYWORDS: Readonly<Record<string, string>> = {
  multipath: "multipath devices are not modelled in the layout schema",
  opaldisk: "TCG Opal self-encrypting disks are not modelled in the layout schema",
  drbd: "DRBD devices are not modelled in the layout schema",
  smartarray: "HP SmartArray controllers are not modelled in the layout schema",
  logicaldrive: "HP SmartArray logical drives are not modelled in the layout schema",
  dasd_channel: "s390 DASD channels are not modelled in the layout schema",
  // Asked for, but ReaR has no such lines; multi-device btrfs is only proposed (rear#3639).
  btrfsdev: NOT_A_REAR_KEYWORD,
  btrfsdevicelist: NOT_A_REAR_KEYWORD,
};

// ---------------------------------------------------------------------------------------
// Entry point

export function importRearLayout(text: string, options: { source: string; now: Date }): RearImport {
  const report = new Reporter();
  const { lines, commented } = readLines(text);
  const parsed = parseLines(lines, report);
  if (parsed.recognized === 0) {
    throw inputError(
      "LB_REAR_INVALID",
      `${options.source} has no ReaR layout lines (disk, part, lvmvol, fs, ...): it does not look like a disklayout.conf.`,
      "Pass the file ReaR writes with 'rear savelayout', usually /var/lib/rear/layout/disklayout.conf.",
    );
  }
  const layout = assemble(parsed, commented, report, redactSecrets(text), options.now);
  const unmapped = report.sorted();
  layout.warnings = [
    NOT_RECORDED_WARNING,
    ...unmapped.map((u) => `disklayout.conf line ${u.line}: ${u.reason}: ${u.text}`),
  ];
  return { layout: LayoutSchema.parse(layout), unmapped };
}

// ---------------------------------------------------------------------------------------
// Lines and reporting

interface SourceLine {
  number: number;
  /** Redacted text, as reported. */
  text: string;
  words: string[];
}

/** Thrown by line parsers: the whole line can't be mapped, for this reason. */
class LineProblem extends Error {}

class Reporter {
  readonly entries: UnmappedLine[] = [];

  add(line: SourceLine, reason: string): void {
    this.entries.push({ line: line.number, text: line.text, reason });
  }

  sorted(): UnmappedLine[] {
    return [...this.entries].sort((a, b) => a.line - b.line);
  }
}

/** Runs `map` for one line; a LineProblem it throws becomes that line's report. */
function mapLine<T>(src: SourceLine, report: Reporter, map: () => T): T | null {
  try {
    return map();
  } catch (error) {
    if (!(error instanceof LineProblem)) throw error;
    report.add(src, error.message);
    return null;
  }
}

/** key=value (or key:value) options of a line that nothing reads are dropped, and said so. */
function reportUnknownOptions(
  src: SourceLine,
  options: Map<string, string>,
  known: Set<string>,
  report: Reporter,
): void {
  const unknown = [...options].filter(([key]) => !known.has(key)).map(([k, v]) => `${k}=${v}`);
  if (unknown.length > 0) report.add(src, `unknown options were dropped: ${unknown.join(" ")}`);
}

/** password= values (crypt, opaldisk) must not reach the layout or the terminal. */
function redactSecrets(text: string): string {
  return text.replace(/(^|[\s#])password=\S*/g, "$1password=XXXXX");
}

function readLines(text: string): { lines: SourceLine[]; commented: SourceLine[] } {
  const lines: SourceLine[] = [];
  const commented: SourceLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim();
    if (trimmed === "") return;
    const line = { number: index + 1, text: redactSecrets(raw), words: [] as string[] };
    if (trimmed.startsWith("#")) {
      // "#fs ..." is a filesystem ReaR excluded; kept to record the exclusion.
      const words = trimmed.slice(1).split(/\s+/);
      if (words[0] === "fs" || words[0] === "btrfsmountedsubvol")
        commented.push({ ...line, words });
      return;
    }
    lines.push({ ...line, words: trimmed.split(/\s+/) });
  });
  return { lines, commented };
}

// ---------------------------------------------------------------------------------------
// Values

function isDevicePath(value: string | undefined): value is string {
  return value !== undefined && /^\/dev\/\S+$/.test(value);
}

function present(value: string | undefined, what: string): string {
  if (value === undefined) throw new LineProblem(`${what} is missing`);
  return value;
}

function requireDevice(value: string | undefined, what: string): string {
  if (!isDevicePath(present(value, what))) {
    throw new LineProblem(`${what} '${value}' is not a device path such as /dev/sda1`);
  }
  return value as string;
}

/** A non-negative integer, optionally with one of the given unit suffixes. */
function requireInt(value: string | undefined, what: string, suffixes: string[] = []): number {
  const parsed = parseWholeNumber(present(value, what), suffixes);
  if (parsed === null) {
    const negative = /^-\d/.test(value as string);
    throw new LineProblem(`${what} '${value}' is ${negative ? "negative" : "not a whole number"}`);
  }
  return parsed;
}

function parseWholeNumber(value: string, suffixes: string[]): number | null {
  const suffix = suffixes.find((s) => value.endsWith(s)) ?? "";
  const digits = value.slice(0, value.length - suffix.length);
  if (!/^\d+$/.test(digits)) return null;
  const number = Number(digits);
  return Number.isSafeInteger(number) ? number : null;
}

/** "key=value" words after the positional ones; a word without "=" is a problem. */
function keyValues(words: string[], separator = "="): Map<string, string> {
  const values = new Map<string, string>();
  for (const word of words) {
    const at = word.indexOf(separator);
    if (at <= 0) throw new LineProblem(`'${word}' is not a key${separator}value option`);
    values.set(word.slice(0, at), word.slice(at + 1));
  }
  return values;
}

function emptyIsNull(value: string | undefined): string | null {
  return value === undefined || value === "" ? null : value;
}

/** Settings no schema field takes; callers leave out those equal to what mkfs does anyway. */
function describeDropped(dropped: string[]): string {
  return `values with no place in the layout were dropped: ${dropped.join(" ")}`;
}

// ---------------------------------------------------------------------------------------
// Parsing: one record per line

interface DiskLine {
  src: SourceLine;
  device: string;
  sizeBytes: number;
  /** gpt/dos, or null when ReaR saw no partition table (loop, unknown, missing). */
  label: "gpt" | "dos" | null;
  rawLabel: string;
}

interface PartLine {
  src: SourceLine;
  parent: string;
  sizeBytes: number;
  startBytes: number;
  nameOrType: string;
  flags: string[];
  device: string;
  number: number;
  partUuid: string | null;
}

interface RaidLine {
  src: SourceLine;
  device: string;
  options: Map<string, string>;
}

interface RaidDiskLine {
  src: SourceLine;
  device: string;
  sizeBytes: number;
  label: "gpt" | "dos" | null;
  rawLabel: string;
}

interface PvLine {
  src: SourceLine;
  vg: string;
  device: string;
  uuid: string | null;
  /** As written: sectors or bytes, decided per VG (see pvSizeUnit). */
  size: number | null;
}

interface VgLine {
  src: SourceLine;
  vg: string;
  extentBytes: number;
  sizeBytes: number | null;
}

interface LvLine {
  src: SourceLine;
  vg: string;
  name: string;
  /** New format: bytes; old format: extents and/or sectors. */
  size: { bytes: number } | { extents: number; sectors: number | null };
  layout: string[];
  options: Map<string, string>;
}

interface CryptLine {
  src: SourceLine;
  mapperName: string;
  device: string;
  options: Map<string, string>;
}

interface FsLine {
  src: SourceLine;
  device: string;
  mountpoint: string;
  fsType: string;
  options: Map<string, string>;
}

interface SwapLine {
  src: SourceLine;
  device: string;
  options: Map<string, string>;
}

interface SubvolLine {
  src: SourceLine;
  device: string;
  id: number;
  path: string;
}

interface MountedSubvolLine {
  src: SourceLine;
  device: string;
  mountpoint: string;
  options: string[];
  path: string;
}

interface Parsed {
  /** How many lines had a keyword ReaR writes; 0 means this is not a disklayout.conf. */
  recognized: number;
  disks: DiskLine[];
  parts: PartLine[];
  raids: RaidLine[];
  raidDisks: RaidDiskLine[];
  pvs: PvLine[];
  vgs: VgLine[];
  lvs: LvLine[];
  crypts: CryptLine[];
  filesystems: FsLine[];
  swaps: SwapLine[];
  defaultSubvols: SubvolLine[];
  normalSubvols: SubvolLine[];
  mountedSubvols: MountedSubvolLine[];
}

type LineParser = (src: SourceLine, parsed: Parsed) => void;

const PARSERS: Readonly<Record<string, LineParser>> = {
  disk: (src, p) => void p.disks.push(parseDisk(src)),
  part: (src, p) => void p.parts.push(parsePart(src)),
  raidarray: (src, p) => void p.raids.push(parseRaid(src)),
  // ReaR before 2.7 wrote "raid" for the same line.
  raid: (src, p) => void p.raids.push(parseRaid(src)),
  raiddisk: (src, p) => void p.raidDisks.push(parseRaidDisk(src)),
  lvmdev: (src, p) => void p.pvs.push(parsePv(src)),
  lvmgrp: (src, p) => void p.vgs.push(parseVg(src)),
  lvmvol: (src, p) => void p.lvs.push(parseLv(src)),
  crypt: (src, p) => void p.crypts.push(parseCrypt(src)),
  fs: (src, p) => void p.filesystems.push(parseFs(src)),
  swap: (src, p) => void p.swaps.push(parseSwap(src)),
  btrfsdefaultsubvol: (src, p) => void p.defaultSubvols.push(parseSubvol(src)),
  btrfsnormalsubvol: (src, p) => void p.normalSubvols.push(parseSubvol(src)),
  btrfsmountedsubvol: (src, p) => void p.mountedSubvols.push(parseMountedSubvol(src)),
  btrfsnocopyonwrite: () => {
    throw new LineProblem(
      "the layout schema has no place for the btrfs no-copy-on-write attribute; set it again with 'chattr +C' after the restore",
    );
  },
};

function parseLines(lines: SourceLine[], report: Reporter): Parsed {
  const parsed: Parsed = {
    recognized: 0,
    disks: [],
    parts: [],
    raids: [],
    raidDisks: [],
    pvs: [],
    vgs: [],
    lvs: [],
    crypts: [],
    filesystems: [],
    swaps: [],
    defaultSubvols: [],
    normalSubvols: [],
    mountedSubvols: [],
  };
  for (const line of lines) {
    const keyword = line.words[0] ?? "";
    const parser = PARSERS[keyword];
    const unsupported = UNSUPPORTED_KEYWORDS[keyword];
    if (parser || unsupported) parsed.recognized++;
    if (unsupported) {
      report.add(line, unsupported);
      continue;
    }
    if (!parser) {
      report.add(line, `unknown keyword '${keyword}'`);
      continue;
    }
    mapLine(line, report, () => parser(line, parsed));
  }
  return parsed;
}

/** disk DEVICE SIZE LABEL */
function parseDisk(src: SourceLine): DiskLine {
  const [, device, size, label = "", ...extra] = src.words;
  const line = {
    src,
    device: requireDevice(device, "disk"),
    sizeBytes: requireInt(size, "disk size"),
    rawLabel: label,
  };
  if (label === "dasd") {
    throw new LineProblem(
      "s390 DASD partition tables are not modelled in the layout schema (GPT and DOS only)",
    );
  }
  if (extra.length > 0)
    throw new LineProblem(`unexpected values after the label: ${extra.join(" ")}`);
  return { ...line, label: tableType(label) };
}

/** parted's label names; gpt_sync_mbr is SUSE's GPT with a synced MBR, recreated as GPT. */
function tableType(label: string): "gpt" | "dos" | null {
  if (label === "gpt" || label === "gpt_sync_mbr") return "gpt";
  if (label === "msdos") return "dos";
  return null;
}

/** part DISK SIZE START NAME|TYPE FLAGS DEVICE [PARTUUID] */
function parsePart(src: SourceLine): PartLine {
  const values = src.words.slice(1);
  if (values.length !== 6 && values.length !== 7) {
    throw new LineProblem(
      `expected 6 or 7 values after 'part' (disk, size, start, name or type, flags, partition device[, partition uuid]), found ${values.length}`,
    );
  }
  const [parent, size, start, nameOrType, flags, device, partUuid] = values as [
    string,
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  requireDevice(parent, "disk");
  requireDevice(device, "partition device");
  if (start === "unknown") throw new LineProblem("the partition start is 'unknown'");
  const number = partitionNumber(device);
  return {
    src,
    parent,
    // create_partitions in ReaR strips a trailing "B" from sizes, so accept one.
    sizeBytes: requireInt(size, "partition size", ["B"]),
    startBytes: requireInt(start, "partition start", ["B"]),
    nameOrType,
    flags: flags === "none" ? [] : flags.split(",").filter((flag) => flag !== ""),
    device,
    number,
    partUuid: parsePartUuid(partUuid),
  };
}

/** The trailing number of the partition device; checked against the parent in assembly. */
function partitionNumber(device: string): number {
  const number = Number(/(\d+)$/.exec(device)?.[1] ?? 0);
  if (number < 1) throw new LineProblem(`partition device ${device} has no partition number`);
  return number;
}

/** The naming rule the planner renames partitions by must hold for what it reads. */
function checkPartitionName(part: PartLine): void {
  const expected = partitionDevice(part.parent, part.number);
  if (expected !== part.device) {
    throw new LineProblem(
      `partition device ${part.device} does not follow the kernel's naming for ${part.parent} (expected ${expected})`,
    );
  }
}

function parsePartUuid(value: string | undefined): string | null {
  if (value === undefined || value === "no-partuuid") return null;
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
    throw new LineProblem(`partition uuid '${value}' is neither a GUID nor 'no-partuuid'`);
  }
  return value.toUpperCase();
}

/** raidarray /dev/mdX level=... raid-devices=... devices=a,b [name= metadata= uuid= ...] */
function parseRaid(src: SourceLine): RaidLine {
  const [, device, ...rest] = src.words;
  return { src, device: requireDevice(device, "RAID device"), options: keyValues(rest) };
}

/** raiddisk /dev/mdX SIZE [LABEL] */
function parseRaidDisk(src: SourceLine): RaidDiskLine {
  const [, device, size, label = ""] = src.words;
  return {
    src,
    device: requireDevice(device, "RAID device"),
    sizeBytes: requireInt(size, "RAID device size"),
    label: tableType(label),
    rawLabel: label,
  };
}

function vgName(value: string | undefined): string {
  const name = value?.replace(/^\/dev\//, "");
  if (!name) throw new LineProblem("the volume group name is missing");
  return name;
}

/** lvmdev /dev/VG DEVICE [UUID] [SIZE] */
function parsePv(src: SourceLine): PvLine {
  const [, vg, device, uuid, size] = src.words;
  return {
    src,
    vg: vgName(vg),
    device: requireDevice(device, "physical volume"),
    uuid: uuid ?? null,
    size: size === undefined ? null : requireInt(size, "physical volume size"),
  };
}

/** lvmgrp /dev/VG EXTENT_KiB [EXTENTS] [SIZE_KiB] */
function parseVg(src: SourceLine): VgLine {
  const [, vg, extentKiB, extents, sizeKiB] = src.words;
  const extentBytes = requireInt(extentKiB, "extent size") * 1024;
  const sizeBytes =
    sizeKiB !== undefined
      ? requireInt(sizeKiB, "volume group size") * 1024
      : extents !== undefined
        ? requireInt(extents, "extent count") * extentBytes
        : null;
  return { src, vg: vgName(vg), extentBytes, sizeBytes };
}

/** lvmvol /dev/VG LV SIZEb LAYOUT [key:value ...], or the old lvmvol /dev/VG LV EXTENTS SECTORS. */
function parseLv(src: SourceLine): LvLine {
  const [, vg, name, size, layout, ...rest] = src.words;
  if (!name) throw new LineProblem("the logical volume name is missing");
  if (size?.endsWith("b")) {
    if (layout === undefined)
      throw new LineProblem("the LV layout (linear, thin,pool, ...) is missing");
    return {
      src,
      vg: vgName(vg),
      name,
      size: { bytes: requireInt(size, "LV size", ["b"]) },
      layout: layout.split(","),
      options: keyValues(rest, ":"),
    };
  }
  if (rest.length > 0) throw new LineProblem(`unexpected values: ${rest.join(" ")}`);
  return {
    src,
    vg: vgName(vg),
    name,
    size: {
      extents: requireInt(size, "LV extent count"),
      sectors: layout === undefined ? null : requireInt(layout, "LV size in sectors"),
    },
    // The old format does not say; ReaR recreated such LVs as linear.
    layout: ["linear"],
    options: new Map(),
  };
}

/** crypt /dev/mapper/NAME DEVICE [type= cipher= key_size= hash= uuid= pbkdf= keyfile= password=] */
function parseCrypt(src: SourceLine): CryptLine {
  const [, target, device, ...rest] = src.words;
  const mapped = requireDevice(target, "crypt target");
  if (!mapped.startsWith("/dev/mapper/")) {
    throw new LineProblem(`crypt target ${mapped} is not a /dev/mapper/NAME device`);
  }
  return {
    src,
    mapperName: mapped.slice("/dev/mapper/".length),
    device: requireDevice(device, "encrypted device"),
    options: keyValues(rest),
  };
}

/** fs DEVICE MOUNTPOINT FSTYPE [uuid= label= blocksize= ... options=] */
function parseFs(src: SourceLine): FsLine {
  const [, device, mountpoint, fsType, ...rest] = src.words;
  const target = present(mountpoint, "mount point");
  if (!target.startsWith("/")) throw new LineProblem(`mount point '${target}' is not a path`);
  if (!fsType) throw new LineProblem("the filesystem type is missing");
  return {
    src,
    device: requireDevice(device, "filesystem device"),
    mountpoint: target,
    fsType,
    options: keyValues(rest),
  };
}

/** swap DEVICE [uuid=] [label=] */
function parseSwap(src: SourceLine): SwapLine {
  const [, device, ...rest] = src.words;
  return { src, device: requireDevice(device, "swap device"), options: keyValues(rest) };
}

/** btrfs{default,normal}subvol DEVICE MOUNTPOINT ID PATH; PATH "/" is the top level. */
function parseSubvol(src: SourceLine): SubvolLine {
  const [, device, , id, path, ...extra] = src.words;
  if (path === undefined) throw new LineProblem("expected DEVICE MOUNTPOINT ID PATH");
  if (extra.length > 0) throw new LineProblem(`unexpected values: ${extra.join(" ")}`);
  return {
    src,
    device: requireDevice(device, "btrfs device"),
    id: requireInt(id, "subvolume id"),
    path: subvolumePath(path),
  };
}

/** btrfsmountedsubvol DEVICE MOUNTPOINT OPTIONS PATH */
function parseMountedSubvol(src: SourceLine): MountedSubvolLine {
  const [, device, mountpoint, options, path] = src.words;
  const target = present(mountpoint, "mount point");
  if (!target.startsWith("/")) throw new LineProblem(`mount point '${target}' is not a path`);
  if (options === undefined) throw new LineProblem("the mount options are missing");
  if (path === undefined) {
    // Old ReaR with a mount command that cannot show FSROOT leaves the path out.
    throw new LineProblem("the subvolume path is missing, so the mount cannot be recreated");
  }
  return {
    src,
    device: requireDevice(device, "btrfs device"),
    mountpoint: target,
    options: options.split(","),
    path: subvolumePath(path),
  };
}

/** Subvolume paths as `btrfs subvolume list` prints them: "@/home"; "" for the top level. */
function subvolumePath(path: string): string {
  return path === "/" ? "" : path.replace(/^\/+/, "");
}

// ---------------------------------------------------------------------------------------
// Assembly: records become layout objects

/** Sizes of every device the file creates, for units and filesystem geometry. */
type DeviceSizes = Map<string, number>;

function assemble(
  parsed: Parsed,
  commented: SourceLine[],
  report: Reporter,
  rawText: string,
  now: Date,
): Layout {
  const sizes: DeviceSizes = new Map();
  const ids = new GeneratedIds(rawText);
  // md arrays without a raiddisk line are sized from their member partitions.
  for (const part of parsed.parts) sizes.set(part.device, part.sizeBytes);
  const disks = buildDisks(parsed, report, sizes);
  const md = buildMdArrays(parsed, report, sizes, ids);
  attachPartitionTables(parsed, disks, md, report, ids);
  const luks = buildLuks(parsed.crypts, report, sizes, ids);
  const lvm = buildLvm(parsed, report, sizes, ids);
  const filesystems = buildFilesystems(parsed, report, sizes);
  const mounts = buildMounts(parsed, filesystems);
  const diskList = [...disks.values()];
  const mdList = [...md.values()];
  reportMissingDevices(parsed, createdDevices(diskList, mdList, luks, lvm), report);
  return {
    kind: LAYOUT_KIND,
    version: LAYOUT_VERSION,
    capturedAt: now.toISOString(),
    capturedBy: "lifeboat import-rear",
    scope: { wholeMachine: true, disks: diskList.map((disk) => disk.device) },
    host: unknownHost(),
    boot: buildBoot(diskList, mdList, mounts),
    disks: diskList,
    md: mdList,
    luks,
    lvm,
    filesystems,
    swapFiles: [],
    mounts: { entries: mounts, excluded: excludedMounts(commented, mounts) },
    configFiles: { fstab: null, crypttab: null, mdadmConf: null },
    warnings: [],
    raw: {
      commands: [],
      files: { "disklayout.conf": rawText },
      binary: {},
      listings: {},
      hardware: null,
      missingTools: [],
    },
  };
}

function createdDevices(disks: Disk[], md: MdArray[], luks: Luks[], lvm: Layout["lvm"]) {
  return new Set([
    ...disks.map((disk) => disk.device),
    ...md.map((array) => array.device),
    ...[...disks, ...md].flatMap((owner) =>
      (owner.partitionTable?.partitions ?? []).map((part) => part.device),
    ),
    ...luks.map((device) => `/dev/mapper/${device.mapperName}`),
    ...lvm.vgs.flatMap((vg) => vg.lvs.map((lv) => lv.device)),
  ]);
}

/**
 * A component on a device that no line creates cannot be rebuilt: the file is incomplete (a
 * multipath disk, an excluded disk, a device ReaR does not know).
 */
function reportMissingDevices(parsed: Parsed, created: Set<string>, report: Reporter): void {
  const check = (src: SourceLine, devices: string[]) => {
    const missing = devices.filter((device) => !created.has(device));
    if (missing.length > 0) {
      report.add(src, `${missing.join(", ")}: no line of this file creates it`);
    }
  };
  for (const line of parsed.raids) {
    if (created.has(line.device)) check(line.src, (line.options.get("devices") ?? "").split(","));
  }
  for (const line of parsed.crypts) {
    if (created.has(`/dev/mapper/${line.mapperName}`)) check(line.src, [line.device]);
  }
  for (const line of [...parsed.pvs, ...parsed.filesystems, ...parsed.swaps]) {
    check(line.src, [line.device]);
  }
}

/** disklayout.conf says nothing about the host; these are capture's values for "unknown". */
function unknownHost(): Layout["host"] {
  return {
    hostname: "unknown",
    machineId: null,
    os: null,
    kernelRelease: "unknown",
    architecture: "unknown",
    hardware: {
      system: { manufacturer: "", model: "", serial: "" },
      board: { manufacturer: "", model: "" },
      cpu: { model: "", cores: 0, threads: 0 },
      memoryBytes: 0,
      virtual: false,
    },
    network: [],
  };
}

type IdKind = "gpt" | "mbr" | "md" | "luks" | "lvm";

/**
 * Identifiers for things a tool must be given but ReaR did not record, derived from the input
 * so that importing the same file twice gives the same layout.
 */
class GeneratedIds {
  readonly #base: string;

  constructor(text: string) {
    this.#base = createHash("sha256").update(text).digest("hex");
  }

  /** `name` tells apart the ids of one file: a device path, a VG name. */
  make(kind: IdKind, name: string): string {
    const hex = createHash("sha256").update(`${this.#base}\0${kind}\0${name}`).digest("hex");
    // A version-4 GUID: random except the version nibble and the variant bits.
    const guid = [
      hex.slice(0, 8),
      hex.slice(8, 12),
      `4${hex.slice(13, 16)}`,
      `${"89ab"[parseInt(hex[16] ?? "0", 16) % 4]}${hex.slice(17, 20)}`,
      hex.slice(20, 32),
    ].join("-");
    switch (kind) {
      case "gpt":
        return guid.toUpperCase();
      case "luks":
        return guid;
      case "mbr":
        return `0x${hex.slice(0, 8)}`;
      case "md":
        return [0, 8, 16, 24].map((at) => hex.slice(at, at + 8)).join(":");
      case "lvm":
        return lvmUuid(hex);
    }
  }
}

/** LVM UUIDs are 32 letters and digits grouped 6-4-4-4-4-4-6. */
function lvmUuid(hex: string): string {
  const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const chars = [...Array(32).keys()].map((i) => {
    const byte = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    return alphabet[byte % alphabet.length];
  });
  const groups = [6, 4, 4, 4, 4, 4, 6];
  let at = 0;
  return groups.map((length) => chars.slice(at, (at += length)).join("")).join("-");
}

/** Reports a second line for a device already seen; returns true when it is a duplicate. */
function isDuplicate(seen: Set<string>, key: string, src: SourceLine, report: Reporter): boolean {
  if (!seen.has(key)) {
    seen.add(key);
    return false;
  }
  report.add(src, `a second line for ${key}; the first one was used`);
  return true;
}

// --- disks and partitions ---------------------------------------------------------------

function buildDisks(parsed: Parsed, report: Reporter, sizes: DeviceSizes): Map<string, Disk> {
  const disks = new Map<string, Disk>();
  const seen = new Set<string>();
  for (const line of parsed.disks) {
    if (isDuplicate(seen, line.device, line.src, report)) continue;
    const name = line.device.slice("/dev/".length);
    disks.set(line.device, {
      device: line.device,
      model: null,
      serial: null,
      wwn: null,
      sizeBytes: line.sizeBytes,
      logicalSectorSize: DEFAULTS.sectorSize,
      physicalSectorSize: DEFAULTS.sectorSize,
      rotational: DEFAULTS.rotational,
      // The device name says this much; ReaR records no transport.
      transport: name.startsWith("nvme") ? "nvme" : name.startsWith("vd") ? "virtio" : null,
      removable: DEFAULTS.removable,
      partitionTable: null,
    });
    sizes.set(line.device, line.sizeBytes);
  }
  return disks;
}

/** Partition tables go on disks and on partitioned md arrays, grouped by their parent. */
function attachPartitionTables(
  parsed: Parsed,
  disks: Map<string, Disk>,
  md: Map<string, MdArray>,
  report: Reporter,
  ids: GeneratedIds,
): void {
  const byParent = new Map<string, PartLine[]>();
  for (const part of parsed.parts) {
    if (!disks.has(part.parent) && !md.has(part.parent)) {
      report.add(part.src, `no mapped disk, raidarray or raiddisk line for ${part.parent}`);
      continue;
    }
    byParent.set(part.parent, [...(byParent.get(part.parent) ?? []), part]);
  }
  const labels = new Map<string, DiskLine | RaidDiskLine>();
  for (const line of [...parsed.disks, ...parsed.raidDisks]) labels.set(line.device, line);

  for (const [parent, parts] of byParent) {
    const declared = labels.get(parent);
    const type = declared?.label ?? guessTableType(parts);
    if (declared && declared.label === null) {
      report.add(
        declared.src,
        `partition table '${declared.rawLabel}' is not GPT or msdos, but partitions follow; read as ${type === "dos" ? "msdos" : "GPT"} from them, as ReaR does`,
      );
    }
    const table = buildPartitionTable(
      type,
      parts,
      report,
      ids.make(type === "gpt" ? "gpt" : "mbr", parent),
    );
    const owner = disks.get(parent) ?? md.get(parent);
    if (owner) owner.partitionTable = table;
  }
}

/** ReaR's own rule when the label is missing: msdos if a partition says primary/extended/logical. */
function guessTableType(parts: PartLine[]): "gpt" | "dos" {
  return parts.some((part) => MBR_KINDS.has(part.nameOrType)) ? "dos" : "gpt";
}

const MBR_KINDS = new Set(["primary", "extended", "logical"]);

function buildPartitionTable(
  type: "gpt" | "dos",
  parts: PartLine[],
  report: Reporter,
  id: string,
): PartitionTable {
  const partitions: Partition[] = [];
  const seen = new Set<string>();
  for (const part of [...parts].sort((a, b) => a.number - b.number)) {
    if (isDuplicate(seen, part.device, part.src, report)) continue;
    const partition = mapLine(part.src, report, () => {
      checkPartitionName(part);
      return type === "gpt" ? gptPartition(part, report) : mbrPartition(part, report);
    });
    if (partition) partitions.push(partition);
  }
  return {
    type,
    id,
    sectorSize: DEFAULTS.sectorSize,
    firstLba: null,
    lastLba: null,
    partitions,
  };
}

/** parted flags ReaR records that map to nothing in the schema. */
function unmappedFlags(flags: string[], mapped: Set<string>): string[] {
  return flags.filter((flag) => !mapped.has(flag));
}

/** A parted type flag: the partition type it sets and the role it gives. */
type FlagType = readonly [flag: string, type: string, role: PartitionRole | null];

/**
 * Type flags exclude each other in a partition table (a partition has one type), so the last
 * flag of the list that is present decides.
 */
function typeFromFlags(flags: Set<string>, table: readonly FlagType[], fallback: string) {
  const match = table.filter(([flag]) => flags.has(flag)).at(-1);
  const role = match?.[2];
  return { type: match?.[1] ?? fallback, roles: role ? [role] : [] };
}

const GPT_FLAG_TYPES: readonly FlagType[] = [
  ["prep", GPT_TYPES.prep, null],
  ["swap", GPT_TYPES.linuxSwap, "swap"],
  ["lvm", GPT_TYPES.linuxLvm, "lvm"],
  ["raid", GPT_TYPES.linuxRaid, "raid"],
  ["bios_grub", GPT_TYPES.biosBoot, "bios_grub"],
  // On GPT, parted's "boot" flag sets the ESP type: it is an alias of "esp".
  ["boot", GPT_TYPES.esp, "esp"],
  ["esp", GPT_TYPES.esp, "esp"],
];

const GPT_FLAGS = new Set([...GPT_FLAG_TYPES.map(([flag]) => flag), "legacy_boot"]);

function gptPartition(part: PartLine, report: Reporter): Partition {
  const flags = new Set(part.flags);
  const { type, roles } = typeFromFlags(flags, GPT_FLAG_TYPES, GPT_TYPES.linuxFs);
  reportFlags(part, unmappedFlags(part.flags, GPT_FLAGS), report);
  return {
    number: part.number,
    device: part.device,
    startBytes: part.startBytes,
    sizeBytes: part.sizeBytes,
    type,
    partUuid: part.partUuid,
    name: gptName(part.nameOrType),
    attrs: flags.has("legacy_boot") ? "LegacyBIOSBootable" : null,
    bootable: false,
    kind: "primary",
    roles,
  };
}

/** The name is percent-encoded so that blanks survive; "rear-noname" means unnamed. */
function gptName(field: string): string | null {
  if (field === "rear-noname") return null;
  try {
    return decodeURIComponent(field);
  } catch {
    throw new LineProblem(`GPT partition name '${field}' is not valid percent-encoding`);
  }
}

const MBR_FLAG_TYPES: readonly FlagType[] = [
  ["prep", "0x41", null],
  ["swap", "0x82", "swap"],
  ["lvm", "0x8e", "lvm"],
  ["raid", "0xfd", "raid"],
  ["esp", "0xef", "esp"],
];

/** "boot" is the active flag on msdos; "lba" marks an LBA extended partition (0x0f). */
const MBR_FLAGS = new Set([...MBR_FLAG_TYPES.map(([flag]) => flag), "boot"]);

function mbrPartition(part: PartLine, report: Reporter): Partition {
  if (!MBR_KINDS.has(part.nameOrType)) {
    throw new LineProblem(
      `on an msdos disk the partition type must be primary, extended or logical, not '${part.nameOrType}'`,
    );
  }
  const kind = part.nameOrType as Partition["kind"];
  const flags = new Set(part.flags);
  const extended = kind === "extended";
  const { type, roles } = extended
    ? { type: flags.has("lba") ? "0x0f" : "0x05", roles: ["extended" as const] }
    : typeFromFlags(flags, MBR_FLAG_TYPES, "0x83");
  const known = extended ? new Set([...MBR_FLAGS, "lba"]) : MBR_FLAGS;
  reportFlags(part, unmappedFlags(part.flags, known), report);
  return {
    number: part.number,
    device: part.device,
    startBytes: part.startBytes,
    sizeBytes: part.sizeBytes,
    type,
    // An MBR PARTUUID is "<disk signature>-<nn>", and ReaR does not record the signature.
    partUuid: null,
    name: null,
    attrs: null,
    bootable: flags.has("boot"),
    kind,
    roles: flags.has("boot") ? ["boot", ...roles] : roles,
  };
}

function reportFlags(part: PartLine, flags: string[], report: Reporter): void {
  if (flags.length > 0) {
    report.add(
      part.src,
      `partition flags with no place in the layout were dropped: ${flags.join(",")}`,
    );
  }
}

// --- md RAID ------------------------------------------------------------------------------

const RAID_KEYS = new Set([
  "level",
  "raid-devices",
  "devices",
  "name",
  "metadata",
  "uuid",
  "layout",
  "chunk",
  "spare-devices",
  "size",
]);

function buildMdArrays(
  parsed: Parsed,
  report: Reporter,
  sizes: DeviceSizes,
  ids: GeneratedIds,
): Map<string, MdArray> {
  const raidDisks = new Map(parsed.raidDisks.map((line) => [line.device, line]));
  // IMSM/DDF containers and the arrays inside them are firmware RAID: not modelled.
  const containers = new Set(
    parsed.raids.filter((r) => r.options.get("level") === "container").map((r) => r.device),
  );
  const arrays = new Map<string, MdArray>();
  const seen = new Set<string>();
  for (const line of parsed.raids) {
    if (isDuplicate(seen, line.device, line.src, report)) continue;
    const uuid = line.options.get("uuid") || ids.make("md", line.device);
    const array = mapLine(line.src, report, () =>
      mdArray(line, uuid, containers, raidDisks.get(line.device), sizes),
    );
    if (!array) continue;
    if (!line.options.get("uuid")) report.add(line.src, generatedNote("uuid=", uuid, "mdadm.conf"));
    reportUnknownOptions(line.src, line.options, RAID_KEYS, report);
    arrays.set(line.device, array);
    sizes.set(line.device, array.sizeBytes);
  }
  for (const line of parsed.raidDisks) {
    if (!arrays.has(line.device))
      report.add(line.src, `no mapped raidarray line for ${line.device}`);
  }
  return arrays;
}

function mdArray(
  line: RaidLine,
  uuid: string,
  containers: Set<string>,
  raidDisk: RaidDiskLine | undefined,
  sizes: DeviceSizes,
): MdArray {
  const option = (key: string) => line.options.get(key);
  const level = option("level");
  if (!level) throw new LineProblem("level= is missing");
  const members = (option("devices") ?? "").split(",").filter((device) => device !== "");
  if (level === "container" || members.some((member) => containers.has(member))) {
    throw new LineProblem(
      "IMSM/DDF firmware RAID containers and their member arrays are not modelled in the layout schema",
    );
  }
  if (members.length === 0) throw new LineProblem("devices= is missing");
  for (const member of members) requireDevice(member, "RAID member");
  const raidDevices = requireInt(option("raid-devices"), "raid-devices");
  if (raidDevices < 1) throw new LineProblem("raid-devices is 0");
  const chunk = option("chunk");
  return {
    device: line.device,
    name: emptyIsNull(option("name")),
    uuid,
    level,
    metadata: option("metadata") || DEFAULTS.mdMetadata,
    raidDevices,
    // ReaR lists members in mdadm --detail order, which is slot order with spares last.
    members: members.map((device, index) =>
      index < raidDevices
        ? { device, slot: index, state: "active" }
        : { device, slot: null, state: "spare" },
    ),
    spares:
      option("spare-devices") === undefined
        ? 0
        : requireInt(option("spare-devices"), "spare-devices"),
    // mdadm's "Chunk Size : 512K"; ReaR keeps the KiB number.
    chunkSizeBytes: chunk === undefined ? null : requireInt(chunk, "chunk") * 1024,
    layout: emptyIsNull(option("layout")),
    bitmap: DEFAULTS.mdBitmap,
    sizeBytes:
      raidDisk?.sizeBytes ?? estimateArraySize(level, members.slice(0, raidDevices), sizes),
    partitionTable: null,
  };
}

/**
 * Without a raiddisk line (ReaR < 2.7) the array size is estimated from its members: an upper
 * bound, as the superblock and bitmap are not subtracted. 0 when a member size is unknown.
 */
function estimateArraySize(level: string, members: string[], sizes: DeviceSizes): number {
  const memberSizes = members.map((member) => sizes.get(member));
  if (memberSizes.some((size) => size === undefined) || memberSizes.length === 0) return 0;
  const smallest = Math.min(...(memberSizes as number[]));
  const dataMembers: Record<string, number> = {
    raid0: members.length,
    raid1: 1,
    raid4: members.length - 1,
    raid5: members.length - 1,
    raid6: members.length - 2,
    raid10: members.length / 2,
  };
  return Math.max(0, Math.floor(smallest * (dataMembers[level] ?? 0)));
}

// --- LUKS ---------------------------------------------------------------------------------

const CRYPT_KEYS = new Set(["type", "cipher", "key_size", "hash", "uuid", "pbkdf"]);

function buildLuks(
  crypts: CryptLine[],
  report: Reporter,
  sizes: DeviceSizes,
  ids: GeneratedIds,
): Luks[] {
  const out: Luks[] = [];
  const seen = new Set<string>();
  for (const line of crypts) {
    if (isDuplicate(seen, line.mapperName, line.src, report)) continue;
    const luks = mapLine(line.src, report, () => luksDevice(line, report, ids));
    if (!luks) continue;
    out.push(luks);
    const backing = sizes.get(luks.device);
    if (backing !== undefined) {
      sizes.set(`/dev/mapper/${line.mapperName}`, Math.max(0, backing - luks.dataOffsetBytes));
    }
  }
  return out;
}

function luksDevice(line: CryptLine, report: Reporter, ids: GeneratedIds): Luks {
  const option = (key: string) => emptyIsNull(line.options.get(key));
  const type = option("type") ?? "luks1";
  if (type !== "luks1" && type !== "luks2") {
    throw new LineProblem(`type=${type} is not luks1 or luks2`);
  }
  const version = type === "luks2" ? 2 : 1;
  const uuid = option("uuid") ?? ids.make("luks", line.device);
  const keySize = option("key_size");
  const luks: Luks = {
    device: line.device,
    mapperName: line.mapperName,
    version,
    uuid,
    label: null,
    subsystem: null,
    cipher: option("cipher") ?? DEFAULTS.luksCipher,
    keySizeBits: keySize === null ? DEFAULTS.luksKeySizeBits : requireInt(keySize, "key_size"),
    sectorSize: DEFAULTS.luksSectorSize,
    dataOffsetBytes: version === 2 ? DEFAULTS.luks2DataOffsetBytes : DEFAULTS.luks1DataOffsetBytes,
    pbkdf: {
      type: option("pbkdf") ?? (version === 2 ? DEFAULTS.luks2Pbkdf : DEFAULTS.luks1Pbkdf),
      hash: option("hash"),
      iterations: null,
      memoryKiB: null,
      parallelThreads: null,
    },
    integrity: null,
    keyslots: DEFAULTS.luksKeyslots,
    headerBackup: null,
  };
  const dropped = dropCryptOptions(line.options);
  if (!option("uuid")) dropped.push(generatedNote("uuid=", uuid, "crypttab"));
  if (dropped.length > 0) report.add(line.src, dropped.join("; "));
  return luks;
}

function generatedNote(what: string, id: string, where: string): string {
  return `${what} is missing, so ${id} was generated; ${where} in the restored system may name the old one`;
}

/** keyfile= and password= have no place in the layout, which never holds key material. */
function dropCryptOptions(options: Map<string, string>): string[] {
  const notes: string[] = [];
  for (const key of options.keys()) {
    if (key === "password") {
      notes.push(
        "password= was dropped: the layout never holds a passphrase; recovery asks for one",
      );
    } else if (key === "keyfile") {
      notes.push(
        `keyfile=${options.get(key)} was dropped: the layout has no place for key files; crypttab in the restored system still names it`,
      );
    } else if (!CRYPT_KEYS.has(key)) {
      notes.push(`unknown option ${key}=${options.get(key)} was dropped`);
    }
  }
  return notes;
}

// --- LVM ----------------------------------------------------------------------------------

function buildLvm(
  parsed: Parsed,
  report: Reporter,
  sizes: DeviceSizes,
  ids: GeneratedIds,
): Layout["lvm"] {
  const vgs = new Map<string, { line: VgLine; vg: Vg }>();
  const seenVgs = new Set<string>();
  for (const line of parsed.vgs) {
    if (!isDuplicate(seenVgs, line.vg, line.src, report)) {
      vgs.set(line.vg, { line, vg: emptyVg(line) });
    }
  }
  const pvs = buildPvs(parsed.pvs, vgs, report, sizes, ids);
  const seenLvs = new Set<string>();
  for (const line of parsed.lvs) {
    const entry = vgs.get(line.vg);
    if (!entry) {
      report.add(line.src, `no lvmgrp line for volume group ${line.vg}`);
      continue;
    }
    if (isDuplicate(seenLvs, `${line.vg}/${line.name}`, line.src, report)) continue;
    const lv = mapLine(line.src, report, () => logicalVolume(line, entry.line, report));
    if (!lv) continue;
    entry.vg.lvs.push(lv);
    sizes.set(lv.device, lv.sizeBytes);
  }
  for (const { vg } of vgs.values()) {
    checkThinPools(vg, parsed.lvs, report);
    vg.freeBytes = freeSpace(vg);
  }
  return { pvs, vgs: [...vgs.values()].map(({ vg }) => vg) };
}

function emptyVg(line: VgLine): Vg {
  return {
    name: line.vg,
    uuid: UNRECORDED,
    extentSizeBytes: line.extentBytes,
    sizeBytes: line.sizeBytes ?? 0,
    freeBytes: 0,
    pvs: [],
    lvs: [],
    metadataBackup: null,
  };
}

function buildPvs(
  lines: PvLine[],
  vgs: Map<string, { line: VgLine; vg: Vg }>,
  report: Reporter,
  sizes: DeviceSizes,
  ids: GeneratedIds,
): Pv[] {
  const pvs: Pv[] = [];
  const seen = new Set<string>();
  for (const [vgName, group] of groupBy(lines, (line) => line.vg)) {
    const entry = vgs.get(vgName);
    if (!entry) {
      for (const line of group) report.add(line.src, `no lvmgrp line for volume group ${vgName}`);
      continue;
    }
    const unit = pvSizeUnit(group, entry.vg.sizeBytes, sizes);
    for (const line of group) {
      if (isDuplicate(seen, line.device, line.src, report)) continue;
      const deviceSize = sizes.get(line.device);
      const sizeBytes = line.size === null ? (deviceSize ?? 0) : line.size * unit;
      const uuid = line.uuid ?? ids.make("lvm", line.device);
      if (line.uuid === null)
        report.add(line.src, generatedNote("the PV UUID", uuid, "lvm.conf filters"));
      pvs.push({
        device: line.device,
        uuid,
        vg: vgName,
        sizeBytes,
        deviceSizeBytes: deviceSize ?? sizeBytes,
        peStartBytes: DEFAULTS.pvPeStartBytes,
      });
      entry.vg.pvs.push(line.device);
    }
  }
  return pvs;
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}

/**
 * ReaR up to 2.7 wrote PV sizes in 512-byte sectors (pvdisplay -c), 2.8 and later in bytes,
 * and the file does not say which. The VG decides: its PVs together are at least as large as
 * the VG, so a sum below half the VG's size can only be sectors. Without a VG size, a size
 * that fits its device 512 times over is sectors.
 */
function pvSizeUnit(lines: PvLine[], vgBytes: number, sizes: DeviceSizes): 512 | 1 {
  const written = lines.map((line) => line.size ?? 0);
  if (vgBytes > 0) {
    const sum = written.reduce((a, b) => a + b, 0);
    return sum * 2 < vgBytes ? 512 : 1;
  }
  return lines.every((line, i) => {
    const device = sizes.get(line.device);
    return device !== undefined && (written[i] ?? 0) * 512 <= device;
  })
    ? 512
    : 1;
}

const LV_KEYS = new Set([
  "thinpool",
  "poolmetadatasize",
  "chunksize",
  "stripesize",
  "stripes",
  "mirrors",
]);

function logicalVolume(line: LvLine, vg: VgLine, report: Reporter): Lv {
  const sizeBytes = lvSize(line, vg);
  const option = (key: string) => line.options.get(key);
  const count = (key: string) => (option(key) === undefined ? null : requireInt(option(key), key));
  const byteOption = (key: string) =>
    option(key) === undefined ? null : requireInt(option(key), key, ["b"]);
  const kind = lvKind(line.layout);
  const thinPool = option("thinpool");
  if (kind.role === "thin" && !thinPool) throw new LineProblem("a thin volume without thinpool:");
  const lv: Lv = {
    name: line.name,
    vg: line.vg,
    uuid: UNRECORDED,
    device: lvDevice(line.vg, line.name),
    sizeBytes,
    hidden: false,
    active: true,
    role: kind.role,
    segments: [
      {
        type: kind.segmentType,
        startBytes: 0,
        sizeBytes,
        stripes: count("stripes") ?? 1,
        stripeSizeBytes: byteOption("stripesize"),
        devices: [],
      },
    ],
    thinPool:
      kind.role === "thin-pool"
        ? {
            metadataSizeBytes: byteOption("poolmetadatasize") ?? DEFAULTS.thinPoolMetadataSizeBytes,
            chunkSizeBytes: byteOption("chunksize") ?? DEFAULTS.thinPoolChunkSizeBytes,
            zero: null,
            discards: null,
            dataPercent: null,
          }
        : null,
    thinVolume: kind.role === "thin" && thinPool ? { pool: thinPool } : null,
    raid:
      kind.role === "raid"
        ? { mirrors: count("mirrors") ?? kind.defaultMirrors, regionSizeBytes: null }
        : null,
  };
  reportUnknownOptions(line.src, line.options, LV_KEYS, report);
  return lv;
}

function lvSize(line: LvLine, vg: VgLine): number {
  if ("bytes" in line.size) return line.size.bytes;
  const fromExtents = line.size.extents * vg.extentBytes;
  if (line.size.sectors === null) return fromExtents;
  const fromSectors = line.size.sectors * 512;
  if (fromSectors !== fromExtents) {
    throw new LineProblem(
      `${line.size.extents} extents of ${vg.extentBytes} bytes are ${fromExtents} bytes, but ${line.size.sectors} sectors are ${fromSectors}`,
    );
  }
  return fromSectors;
}

/** lvs' lv_layout words: "linear", "striped", "thin,pool", "raid,raid1", ... */
function lvKind(layout: string[]): {
  role: Lv["role"];
  segmentType: string;
  defaultMirrors: number;
} {
  const has = (word: string) => layout.includes(word);
  if (has("thin") && has("pool"))
    return { role: "thin-pool", segmentType: "thin-pool", defaultMirrors: 0 };
  if (has("thin") && has("sparse")) return { role: "thin", segmentType: "thin", defaultMirrors: 0 };
  if (has("raid")) {
    const level = layout.find((word) => /^raid(0|1|4|5|6|10)$/.test(word));
    if (!level) {
      throw new LineProblem(
        `the RAID level is not recorded (layout ${layout.join(",")}); ReaR itself recreates such an LV as linear`,
      );
    }
    return {
      role: "raid",
      segmentType: level,
      defaultMirrors: level === "raid1" || level === "raid10" ? 1 : 0,
    };
  }
  if (has("mirror")) return { role: "raid", segmentType: "mirror", defaultMirrors: 1 };
  if (has("striped")) return { role: "normal", segmentType: "striped", defaultMirrors: 0 };
  if (has("linear")) return { role: "normal", segmentType: "linear", defaultMirrors: 0 };
  throw new LineProblem(
    `LV layout '${layout.join(",")}' is not supported (linear, striped, mirror, raid, thin only)`,
  );
}

/** device-mapper doubles dashes inside VG and LV names. */
function lvDevice(vg: string, lv: string): string {
  return `/dev/mapper/${vg.replaceAll("-", "--")}-${lv.replaceAll("-", "--")}`;
}

function checkThinPools(vg: Vg, lines: LvLine[], report: Reporter): void {
  const pools = new Set(vg.lvs.filter((lv) => lv.role === "thin-pool").map((lv) => lv.name));
  for (const lv of vg.lvs) {
    if (lv.thinVolume && !pools.has(lv.thinVolume.pool)) {
      const line = lines.find((l) => l.vg === vg.name && l.name === lv.name);
      if (line)
        report.add(line.src, `thin pool ${vg.name}/${lv.thinVolume.pool} is not in this file`);
    }
  }
}

/** Upper bound: thin volumes take no extents, pool metadata and spare LVs are not counted. */
function freeSpace(vg: Vg): number {
  const used = vg.lvs.filter((lv) => lv.role !== "thin").reduce((sum, lv) => sum + lv.sizeBytes, 0);
  return Math.max(0, vg.sizeBytes - used);
}

// --- filesystems --------------------------------------------------------------------------

const COMMON_FS_KEYS = new Set(["uuid", "label", "options"]);
const SWAP_KEYS = new Set(["uuid", "label"]);

function buildFilesystems(parsed: Parsed, report: Reporter, sizes: DeviceSizes): Filesystem[] {
  const filesystems: Filesystem[] = [];
  const seen = new Set<string>();
  for (const line of parsed.filesystems) {
    if (isDuplicate(seen, line.device, line.src, report)) continue;
    const fs = mapLine(line.src, report, () => filesystem(line, parsed, report, sizes));
    if (fs) filesystems.push(fs);
  }
  for (const line of parsed.swaps) {
    if (isDuplicate(seen, line.device, line.src, report)) continue;
    reportUnknownOptions(line.src, line.options, SWAP_KEYS, report);
    filesystems.push({
      device: line.device,
      type: "swap",
      uuid: emptyIsNull(line.options.get("uuid")),
      label: emptyIsNull(line.options.get("label")),
      usage: null,
    });
  }
  checkBtrfsLines(parsed, filesystems, report);
  return filesystems;
}

function filesystem(
  line: FsLine,
  parsed: Parsed,
  report: Reporter,
  sizes: DeviceSizes,
): Filesystem {
  const base = {
    device: line.device,
    uuid: emptyIsNull(line.options.get("uuid")),
    label: emptyIsNull(line.options.get("label")),
    usage: null,
  };
  const deviceSize = sizes.get(line.device) ?? null;
  switch (line.fsType) {
    case "ext2":
    case "ext3":
    case "ext4":
      return {
        ...base,
        type: line.fsType,
        ...extGeometry(line, deviceSize, report),
        features: [...DEFAULTS.extFeatures[line.fsType]],
      };
    case "xfs":
      reportUnknownOptions(line.src, line.options, COMMON_FS_KEYS, report);
      return { ...base, type: "xfs", geometry: xfsGeometry(deviceSize) };
    case "vfat":
      reportUnknownOptions(line.src, line.options, COMMON_FS_KEYS, report);
      // blkid's label with blanks is written with "\b" (sometimes "\\b") in their place.
      return {
        ...base,
        label: base.label?.replace(/\\{1,2}b/g, " ") ?? null,
        type: "vfat",
        fatSize: null,
      };
    case "btrfs":
      return { ...base, ...btrfsParts(line, parsed, report) };
    default:
      reportUnknownOptions(line.src, line.options, COMMON_FS_KEYS, report);
      return { ...base, type: "other", fsType: line.fsType };
  }
}

const EXT_KEYS = new Set([
  ...COMMON_FS_KEYS,
  "blocksize",
  "reserved_blocks",
  "max_mounts",
  "check_interval",
  "bytes_per_inode",
  "default_mount_options",
  "fragmentsize",
]);

/**
 * ReaR records block size, reserved blocks (a count before 2012, a percentage since) and
 * bytes per inode (since 2015). Block and inode counts are derived from the device size, as
 * mke2fs would on the same device; 0 when the device size is unknown.
 */
function extGeometry(line: FsLine, deviceSize: number | null, report: Reporter) {
  const option = (key: string) => line.options.get(key);
  const blockSize = option("blocksize")
    ? requireInt(option("blocksize"), "blocksize")
    : DEFAULTS.extBlockSize;
  if (blockSize === 0) throw new LineProblem("blocksize is 0");
  const blockCount = deviceSize === null ? 0 : Math.floor(deviceSize / blockSize);
  const bytesPerInode = option("bytes_per_inode")
    ? requireInt(option("bytes_per_inode"), "bytes_per_inode")
    : DEFAULTS.extBytesPerInode;
  const inodeCount = Math.floor((blockCount * blockSize) / Math.max(1, bytesPerInode));
  const reservedBlockCount = reservedBlocks(option("reserved_blocks"), blockCount);
  reportUnknownOptions(line.src, line.options, EXT_KEYS, report);
  reportDroppedExtOptions(line, report);
  return {
    blockSize,
    inodeSize: DEFAULTS.extInodeSize,
    blockCount,
    inodeCount,
    reservedBlockCount,
  };
}

function reservedBlocks(value: string | undefined, blockCount: number): number {
  if (value === undefined || value === "") return 0;
  if (value.endsWith("%")) {
    return Math.floor((blockCount * requireInt(value, "reserved_blocks", ["%"])) / 100);
  }
  return requireInt(value, "reserved_blocks");
}

/** tune2fs settings the schema has no field for; mke2fs defaults are not worth a warning. */
function reportDroppedExtOptions(line: FsLine, report: Reporter): void {
  const dropped: string[] = [];
  const maxMounts = line.options.get("max_mounts");
  if (maxMounts !== undefined && maxMounts !== "-1" && maxMounts !== "0") {
    dropped.push(`max_mounts=${maxMounts}`);
  }
  const interval = line.options.get("check_interval");
  if (interval !== undefined && interval !== "0d" && interval !== "0") {
    dropped.push(`check_interval=${interval}`);
  }
  const mountOptions = line.options.get("default_mount_options");
  if (mountOptions !== undefined && mountOptions !== EXT_DEFAULT_MOUNT_OPTIONS) {
    dropped.push(`default_mount_options=${mountOptions}`);
  }
  const fragment = line.options.get("fragmentsize");
  if (fragment !== undefined) dropped.push(`fragmentsize=${fragment}`);
  if (dropped.length > 0) report.add(line.src, describeDropped(dropped));
}

/** ReaR keeps xfs_info in a separate file, so this is mkfs.xfs's default geometry. */
function xfsGeometry(deviceSize: number | null) {
  const { blockSize } = DEFAULTS.xfs;
  const dataBlocks = deviceSize === null ? 0 : Math.floor(deviceSize / blockSize);
  const agCount = xfsAgCount(dataBlocks * blockSize);
  return {
    blockSize,
    sectorSize: DEFAULTS.xfs.sectorSize,
    inodeSize: DEFAULTS.xfs.inodeSize,
    agCount,
    agSizeBlocks: Math.max(1, Math.ceil(dataBlocks / agCount)),
    dataBlocks,
    logBlocks: DEFAULTS.xfs.logBlocks,
    logInternal: DEFAULTS.xfs.logInternal,
    sunit: 0,
    swidth: 0,
    features: {},
  };
}

/** As mkfs.xfs on a single disk: 4 groups, more when a group would pass 1 TiB, fewer when tiny. */
function xfsAgCount(bytes: number): number {
  const { agCount, agMaxBytes, agMinBytes } = DEFAULTS.xfs;
  if (bytes > agCount * agMaxBytes) return Math.ceil(bytes / agMaxBytes);
  return Math.max(1, Math.min(agCount, Math.floor(bytes / agMinBytes)));
}

const BTRFS_KEYS = new Set([...COMMON_FS_KEYS, "nodesize", "sectorsize", "features"]);

/** Single-device btrfs (ReaR refuses multi-device ones) with its subvolume tree. */
function btrfsParts(
  line: FsLine,
  parsed: Parsed,
  report: Reporter,
): Pick<
  BtrfsFs,
  | "type"
  | "devices"
  | "dataProfile"
  | "metadataProfile"
  | "systemProfile"
  | "subvolumes"
  | "defaultSubvolume"
> {
  reportUnknownOptions(line.src, line.options, BTRFS_KEYS, report);
  reportDroppedBtrfsOptions(line, report);
  const normal = parsed.normalSubvols.filter((sub) => sub.device === line.device);
  const defaults = parsed.defaultSubvols.filter((sub) => sub.device === line.device);
  for (const extra of defaults.slice(1)) {
    report.add(extra.src, `a second default subvolume for ${line.device}; the first one was used`);
  }
  const chosen = defaults[0];
  return {
    type: "btrfs",
    devices: [line.device],
    dataProfile: null,
    metadataProfile: null,
    systemProfile: null,
    subvolumes: subvolumeTree(normal, report),
    defaultSubvolume: chosen ? { id: chosen.id, path: chosen.path } : { id: 5, path: "" },
  };
}

function reportDroppedBtrfsOptions(line: FsLine, report: Reporter): void {
  const dropped: string[] = [];
  const nodesize = line.options.get("nodesize");
  if (nodesize !== undefined && nodesize !== String(BTRFS_DEFAULT_NODESIZE))
    dropped.push(`nodesize=${nodesize}`);
  const sectorsize = line.options.get("sectorsize");
  if (sectorsize !== undefined && sectorsize !== String(BTRFS_DEFAULT_SECTORSIZE)) {
    dropped.push(`sectorsize=${sectorsize}`);
  }
  const features = (line.options.get("features") ?? "").split(",").filter((f) => f !== "");
  const extra = features.filter((feature) => !BTRFS_DEFAULT_FEATURES.has(feature));
  if (extra.length > 0) dropped.push(`features=${extra.join(",")} (beyond mkfs.btrfs defaults)`);
  if (dropped.length > 0) report.add(line.src, describeDropped(dropped));
}

/**
 * ReaR records ids and paths but not parents. A subvolume's parent is the deepest listed
 * subvolume whose path contains it, else the top level (5). Snapshots are not listed, so a
 * subvolume inside one would get the wrong parent; ReaR does not recreate those either.
 */
function subvolumeTree(lines: SubvolLine[], report: Reporter): BtrfsFs["subvolumes"] {
  const subvolumes: BtrfsFs["subvolumes"] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    if (line.path === "") {
      report.add(line.src, "the top level (id 5) is not a subvolume to create");
      continue;
    }
    if (isDuplicate(seen, line.path, line.src, report)) continue;
    subvolumes.push({ id: line.id, parentId: 5, path: line.path, uuid: null });
  }
  for (const subvolume of subvolumes) {
    const parent = subvolumes
      .filter((other) => subvolume.path.startsWith(`${other.path}/`))
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (parent) subvolume.parentId = parent.id;
  }
  return subvolumes;
}

function checkBtrfsLines(parsed: Parsed, filesystems: Filesystem[], report: Reporter): void {
  const btrfs = new Map(
    filesystems.flatMap((fs) => (fs.type === "btrfs" ? [[fs.device, fs] as const] : [])),
  );
  const lines = [...parsed.defaultSubvols, ...parsed.normalSubvols, ...parsed.mountedSubvols];
  for (const line of lines) {
    if (!btrfs.has(line.device)) report.add(line.src, `no mapped btrfs fs line for ${line.device}`);
  }
  for (const line of parsed.mountedSubvols) {
    const fs = btrfs.get(line.device);
    if (!fs || line.path === "" || line.path === fs.defaultSubvolume.path) continue;
    if (!fs.subvolumes.some((subvolume) => subvolume.path === line.path)) {
      // ReaR comments out snapper's subvolumes: on SUSE, snapper's installation-helper makes them.
      report.add(
        line.src,
        `subvolume ${line.path} is mounted but no btrfsnormalsubvol line lists it, so nothing in the layout creates it`,
      );
    }
  }
}

// --- mounts -------------------------------------------------------------------------------

function buildMounts(parsed: Parsed, filesystems: Filesystem[]): Mount[] {
  const mapped = new Map(filesystems.map((fs) => [fs.device, fs]));
  const mounts: Mount[] = [];
  for (const line of parsed.filesystems) {
    const fs = mapped.get(line.device);
    if (!fs || fs.type === "swap") continue;
    const options = (line.options.get("options") ?? "").split(",").filter((o) => o !== "");
    mounts.push({
      target: line.mountpoint,
      source: line.device,
      fsType: line.fsType,
      options,
      fsRoot: fs.type === "btrfs" ? btrfsMountRoot(options) : "/",
      uuid: fs.uuid,
    });
  }
  for (const line of parsed.mountedSubvols) {
    const fs = mapped.get(line.device);
    if (!fs || fs.type !== "btrfs") continue;
    const fsRoot = `/${line.path}`;
    const existing = mounts.find((mount) => mount.target === line.mountpoint);
    // The fs line for the same mount point may lack subvol= (older kernels): the path wins.
    if (existing) existing.fsRoot = fsRoot;
    else {
      mounts.push({
        target: line.mountpoint,
        source: line.device,
        fsType: "btrfs",
        options: line.options,
        fsRoot,
        uuid: fs.uuid,
      });
    }
  }
  return mounts;
}

function btrfsMountRoot(options: string[]): string {
  const subvol = options.find((option) => option.startsWith("subvol="));
  return subvol === undefined ? "/" : `/${subvolumePath(subvol.slice("subvol=".length))}`;
}

/**
 * "#fs ..." and "#btrfsmountedsubvol ..." are what ReaR excluded from recreation and backup.
 * On SUSE, "/" is a snapper snapshot: its btrfsmountedsubvol line is commented out although
 * the fs line mounts it, so mount points that are mounted anyway are not exclusions.
 */
function excludedMounts(commented: SourceLine[], mounts: Mount[]): ExcludedMount[] {
  const mounted = new Set(mounts.map((mount) => mount.target));
  const excluded: ExcludedMount[] = [];
  for (const line of commented) {
    const [keyword, source, target, third] = line.words;
    if (!isDevicePath(source) || !target?.startsWith("/") || third === undefined) continue;
    if (mounted.has(target)) continue;
    excluded.push(
      keyword === "fs"
        ? {
            target,
            source,
            fsType: third,
            reason: "excluded by ReaR (commented out in disklayout.conf)",
          }
        : {
            target,
            source,
            fsType: "btrfs",
            reason:
              "btrfs subvolume mount commented out by ReaR (a snapshot, or a subvolume that did not exist)",
          },
    );
  }
  return excluded;
}

// --- boot ---------------------------------------------------------------------------------

const ESP_MOUNT_POINTS = new Set(["/boot/efi", "/efi"]);

/** ReaR records no firmware facts: an ESP means UEFI, and BIOS boot disks are inferred. */
function buildBoot(disks: Disk[], md: MdArray[], mounts: Mount[]): Boot {
  const owners = [...disks, ...md];
  const espPartitions = owners.flatMap(
    (owner) => owner.partitionTable?.partitions.filter((p) => p.roles.includes("esp")) ?? [],
  );
  const espMounts = mounts.filter(
    (mount) => ESP_MOUNT_POINTS.has(mount.target) && mount.fsType === "vfat",
  );
  const espDevices = [
    ...new Set([...espPartitions.map((p) => p.device), ...espMounts.map((m) => m.source)]),
  ];
  const uefi = espDevices.length > 0;
  const mountPoint = mounts.find((mount) => espDevices.includes(mount.source))?.target ?? null;
  return {
    firmware: uefi ? "uefi" : "bios",
    secureBoot: uefi ? "unknown" : null,
    grubBiosDisks: uefi ? [] : disks.filter(holdsBiosBootCode).map((disk) => disk.device),
    esp: uefi ? { devices: espDevices, mountPoint, files: [] } : null,
    efi: null,
    kernelCmdline: "",
    initramfsTool: "unknown",
  };
}

/** GRUB goes on a GPT disk with a bios_grub partition, or an msdos disk with an active one. */
function holdsBiosBootCode(disk: Disk): boolean {
  const table = disk.partitionTable;
  if (!table) return false;
  return table.partitions.some((p) =>
    table.type === "gpt" ? p.roles.includes("bios_grub") : p.bootable,
  );
}
