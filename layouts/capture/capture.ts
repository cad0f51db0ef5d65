// Capture: ask the machine (through a CaptureSource) how its storage and boot path are built,
// and turn the answers into a layout document. Which tools run depends on what is found:
// mdadm only when there is an array, cryptsetup only for LUKS, and so on. A tool that is
// missing for a feature in use is an environment error naming the package.

import { inputError } from "../../common/errors.ts";
import { missingToolError } from "../../common/exec.ts";
import { parseBlkidExport, type BlkidProbe } from "../parse/blkid.ts";
import { parseFilesystemDf, parseGetDefault, parseSubvolumeList } from "../parse/btrfs.ts";
import { parseEfibootmgr } from "../parse/efibootmgr.ts";
import { parseDumpe2fs } from "../parse/ext.ts";
import { FINDMNT_COLUMNS, parseFindmnt, type MountEntry } from "../parse/findmnt.ts";
import { toInt } from "../parse/kv.ts";
import { parseLuks1, parseLuks2 } from "../parse/luks.ts";
import { descendants, parseLsblk, type BlockNode } from "../parse/lsblk.ts";
import { LVM_FULLREPORT_ARGV, parseLvmFullreport } from "../parse/lvm.ts";
import { bitmapFromSysfs, parseMdadmExport } from "../parse/mdadm.ts";
import { parseSfdiskJson } from "../parse/sfdisk.ts";
import { parseIpAddr, parseOsRelease, parseProcSwaps } from "../parse/system.ts";
import { parseXfsInfo } from "../parse/xfs.ts";
import {
  LAYOUT_KIND,
  LAYOUT_VERSION,
  LayoutSchema,
  type Boot,
  type Disk,
  type ExcludedMount,
  type Filesystem,
  type Host,
  type Layout,
  type Luks,
  type MdArray,
  type Mount,
  type PartitionTable,
  type SwapFile,
} from "../schema.ts";
import { describeIssues } from "../document.ts";
import { OUTPUT_FILE, recordingSource, type CaptureSource } from "./source.ts";

export interface CaptureOptions {
  /** Limit the capture to these disks (kernel paths); all disks when empty. */
  disks?: string[];
  now: Date;
  capturedBy: string;
}

const SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/** Mounts that are not local storage, and why they are not captured. */
const EXCLUDED_FS: Record<string, string> = {
  proc: "pseudo filesystem",
  sysfs: "pseudo filesystem",
  devtmpfs: "pseudo filesystem",
  devpts: "pseudo filesystem",
  tmpfs: "memory-backed, empty after boot",
  ramfs: "memory-backed, empty after boot",
  rootfs: "initramfs root, rebuilt at every boot",
  securityfs: "pseudo filesystem",
  cgroup: "pseudo filesystem",
  cgroup2: "pseudo filesystem",
  pstore: "pseudo filesystem",
  bpf: "pseudo filesystem",
  debugfs: "pseudo filesystem",
  tracefs: "pseudo filesystem",
  mqueue: "pseudo filesystem",
  hugetlbfs: "pseudo filesystem",
  configfs: "pseudo filesystem",
  fusectl: "pseudo filesystem",
  efivarfs: "firmware variables, not files",
  autofs: "automount trigger",
  binfmt_misc: "pseudo filesystem",
  rpc_pipefs: "pseudo filesystem",
  nsfs: "pseudo filesystem",
  selinuxfs: "pseudo filesystem",
  overlay: "overlay (container or live system), its lower layers are captured where local",
  squashfs: "read-only image (snap or live medium)",
  iso9660: "optical or ISO medium",
  nfs: "remote filesystem",
  nfs4: "remote filesystem",
  cifs: "remote filesystem",
  smb3: "remote filesystem",
  ceph: "remote filesystem",
  glusterfs: "remote filesystem",
  "9p": "host-shared filesystem",
  virtiofs: "host-shared filesystem",
};

function exclusionReason(fsType: string): string | null {
  if (fsType in EXCLUDED_FS) return EXCLUDED_FS[fsType]!;
  if (fsType === "fuse" || fsType.startsWith("fuse."))
    return "FUSE filesystem (remote or userspace)";
  return null;
}

/** Disks that are never part of a machine's layout. */
const IGNORED_DISKS = /^(zram|ram|fd|sr|nbd)\d+/;

/**
 * Capture a layout. The source's answers are recorded into the document's raw section.
 * The result is validated against the schema before it is returned.
 */
export async function captureLayout(
  source: CaptureSource,
  options: CaptureOptions,
): Promise<Layout> {
  const recorder = recordingSource(source);
  const capture = new Capture(recorder.source);
  const body = await capture.run(options);
  const layout = { ...body, raw: recorder.raw };
  const result = LayoutSchema.safeParse(layout);
  if (!result.success) {
    throw new Error(`capture produced an invalid layout: ${describeIssues(result.error)}`);
  }
  return result.data;
}

class Capture {
  readonly source: CaptureSource;
  readonly warnings: string[] = [];

  constructor(source: CaptureSource) {
    this.source = source;
  }

  /** Run a tool that must exist when the feature that needs it is in use. */
  async need(argv: string[], why: string) {
    const output = await this.source.run(argv);
    if (output === null) throw missingToolError(argv[0]!, why);
    return output;
  }

  async run(options: CaptureOptions): Promise<Omit<Layout, "raw">> {
    const lsblk = await this.need(["lsblk", "-J", "-O", "-b"], "it lists the block devices");
    const nodes = parseLsblk(lsblk.stdout);
    const selected = selectDisks(nodes, options.disks ?? []);
    const scope = new Set<string>();
    for (const disk of selected) {
      scope.add(disk.kname);
      for (const name of descendants(nodes, disk.kname)) scope.add(name);
    }
    const inScope = [...nodes.values()].filter((node) => scope.has(node.kname));

    const findmnt = await this.need(
      ["findmnt", "-J", "-b", "-l", "-o", FINDMNT_COLUMNS],
      "it lists the mounts",
    );
    const mountTable = parseFindmnt(findmnt.stdout);

    const probes = new Map<string, BlkidProbe>();
    for (const node of inScope) probes.set(node.path, await this.probe(node, mountTable));

    const disks: Disk[] = [];
    for (const node of selected) disks.push(await this.disk(node, probes));
    const md = await this.mdArrays(inScope, probes);
    const luks = await this.luksDevices(inScope, nodes, probes);
    const lvm = await this.lvm(inScope, probes);
    const filesystems = await this.filesystems(inScope, probes, mountTable);
    const scopePaths = new Set(inScope.map((n) => n.path));
    const wholeMachine = (options.disks ?? []).length === 0;
    const mounts = this.mounts(mountTable, scopePaths, wholeMachine);
    const swapFiles = wholeMachine ? await this.swapFiles() : [];
    const boot = await this.boot(disks, md, mounts.entries, scopePaths);

    const readConfig = (path: string) => this.source.readFile(path);
    const mdadmConf =
      (await readConfig("/etc/mdadm/mdadm.conf")) ?? (await readConfig("/etc/mdadm.conf"));
    return {
      kind: LAYOUT_KIND,
      version: LAYOUT_VERSION,
      capturedAt: options.now.toISOString(),
      capturedBy: options.capturedBy,
      scope: { wholeMachine, disks: selected.map((d) => d.path) },
      host: await this.host(),
      boot,
      disks,
      md,
      luks,
      lvm,
      filesystems,
      swapFiles,
      mounts,
      configFiles: {
        fstab: await readConfig("/etc/fstab"),
        crypttab: await readConfig("/etc/crypttab"),
        mdadmConf,
      },
      warnings: this.warnings,
    };
  }

  /**
   * blkid -p reads the device itself, so it is right even without udev. It exits 2 both
   * when it finds nothing and when it can't read the device; the second prints an error,
   * and then udev's answer (lsblk) or the mount table is the best there is.
   */
  async probe(node: BlockNode, mountTable: MountEntry[]): Promise<BlkidProbe> {
    const out = await this.need(["blkid", "-p", "-o", "export", node.path], "it probes signatures");
    const probe = parseBlkidExport(node.path, out.stdout);
    const failed = out.exitCode !== 0 && /error/i.test(out.stderr);
    if (!failed) return probe;
    const mount = mountTable.find((m) => m.device === node.path);
    const type = node.fsType ?? mount?.fsType ?? null;
    this.warnings.push(
      `blkid could not read ${node.path} (${out.stderr.trim().replace(/^blkid: error: /, "")}); ` +
        `its signature comes from ${node.fsType ? "udev" : mount ? "the mount table" : "nowhere"} and its filesystem details are missing.`,
    );
    return {
      ...probe,
      type,
      uuid: node.uuid ?? mount?.uuid ?? null,
      label: node.label,
      usage: type ? "filesystem" : null,
      unreadable: true,
    };
  }

  async partitionTable(path: string, sectorSize: number): Promise<PartitionTable | null> {
    const out = await this.need(["sfdisk", "--json", path], "a partition table is in use");
    if (out.exitCode !== 0) return null;
    return parseSfdiskJson(out.stdout, sectorSize);
  }

  async disk(node: BlockNode, probes: Map<string, BlkidProbe>): Promise<Disk> {
    const probe = probes.get(node.path);
    const hasTable = probe?.ptType != null;
    return {
      device: node.path,
      model: node.model,
      serial: node.serial,
      wwn: node.wwn,
      sizeBytes: node.sizeBytes,
      logicalSectorSize: node.logicalSectorSize,
      physicalSectorSize: node.physicalSectorSize,
      rotational: node.rotational,
      transport: node.transport,
      removable: node.removable,
      partitionTable: hasTable
        ? await this.partitionTable(node.path, node.logicalSectorSize)
        : null,
    };
  }

  async mdArrays(inScope: BlockNode[], probes: Map<string, BlkidProbe>): Promise<MdArray[]> {
    const arrays = inScope.filter((n) => n.type.startsWith("raid") || n.type === "md");
    const out: MdArray[] = [];
    for (const node of arrays) {
      const detail = parseMdadmExport(
        (
          await this.need(
            ["mdadm", "--detail", "--export", node.path],
            `${node.path} is an md array`,
          )
        ).stdout,
      );
      const sysfs = (attr: string) => this.source.readFile(`/sys/block/${node.kname}/md/${attr}`);
      const chunk = toInt((await sysfs("chunk_size"))?.trim());
      const layout = (await sysfs("layout"))?.trim();
      const probe = probes.get(node.path);
      const partitioned = probe?.ptType != null;
      out.push({
        device: node.path,
        name: detail.name,
        uuid: detail.uuid,
        level: detail.level,
        metadata: detail.metadata,
        raidDevices: detail.raidDevices,
        members: detail.members,
        spares: detail.members.filter((m) => m.slot === null).length,
        chunkSizeBytes: chunk && chunk > 0 ? chunk : null,
        layout: layout && detail.level !== "raid1" ? layout : null,
        bitmap: bitmapFromSysfs(await sysfs("bitmap/location")),
        sizeBytes: node.sizeBytes,
        partitionTable: partitioned
          ? await this.partitionTable(node.path, node.logicalSectorSize)
          : null,
      });
    }
    return out;
  }

  async luksDevices(
    inScope: BlockNode[],
    nodes: Map<string, BlockNode>,
    probes: Map<string, BlkidProbe>,
  ): Promise<Luks[]> {
    const out: Luks[] = [];
    for (const node of inScope) {
      const probe = probes.get(node.path);
      if (probe?.type !== "crypto_LUKS") continue;
      const why = `${node.path} is LUKS-encrypted`;
      const mapper = node.children.map((c) => nodes.get(c)).find((c) => c?.type === "crypt");
      const text = (await this.need(["cryptsetup", "luksDump", node.path], why)).stdout;
      const params =
        probe.version === "1"
          ? parseLuks1(text)
          : parseLuks2(
              (await this.need(["cryptsetup", "luksDump", "--dump-json-metadata", node.path], why))
                .stdout,
              text,
            );
      out.push({
        ...params,
        device: node.path,
        mapperName: mapper?.name ?? null,
        headerBackup: null,
      });
    }
    return out;
  }

  async lvm(inScope: BlockNode[], probes: Map<string, BlkidProbe>): Promise<Layout["lvm"]> {
    const pvPaths = new Set(
      [...probes.values()].filter((p) => p.type === "LVM2_member").map((p) => p.device),
    );
    if (pvPaths.size === 0 && !inScope.some((n) => n.type === "lvm")) return { pvs: [], vgs: [] };
    const report = await this.need(LVM_FULLREPORT_ARGV, "LVM is in use");
    const parsed = parseLvmFullreport(report.stdout);
    const pvs = parsed.pvs.filter((pv) => pvPaths.has(pv.device));
    const vgNames = new Set(pvs.map((pv) => pv.vg).filter((vg): vg is string => vg !== null));
    const vgs = parsed.vgs.filter((vg) => vgNames.has(vg.name));
    for (const vg of vgs) {
      const backup = await this.source.runWithOutputFile([
        "vgcfgbackup",
        "-f",
        OUTPUT_FILE,
        vg.name,
      ]);
      if (backup?.exitCode === 0) vg.metadataBackup = backup.stdout;
      else
        this.warnings.push(`vgcfgbackup failed for VG ${vg.name}; its raw metadata is not kept.`);
    }
    return { pvs, vgs };
  }

  async filesystems(
    inScope: BlockNode[],
    probes: Map<string, BlkidProbe>,
    mountTable: MountEntry[],
  ): Promise<Filesystem[]> {
    const out: Filesystem[] = [];
    const seenBtrfs = new Set<string>();
    for (const node of inScope) {
      const probe = probes.get(node.path);
      if (!probe?.type || probe.usage === "raid" || probe.usage === "crypto") continue;
      if (probe.type === "LVM2_member") continue;
      const mount = mountTable.find((m) => m.device === node.path && m.sizeBytes !== null);
      const base = {
        device: node.path,
        uuid: probe.uuid,
        label: probe.label,
        usage:
          mount && mount.sizeBytes !== null && mount.usedBytes !== null
            ? { sizeBytes: mount.sizeBytes, usedBytes: mount.usedBytes }
            : null,
      };
      const fs = await this.filesystem(node, probe, base, probes, mountTable, seenBtrfs);
      if (fs) out.push(fs);
    }
    return out;
  }

  async filesystem(
    node: BlockNode,
    probe: BlkidProbe,
    base: Pick<Filesystem, "device" | "uuid" | "label" | "usage">,
    probes: Map<string, BlkidProbe>,
    mountTable: MountEntry[],
    seenBtrfs: Set<string>,
  ): Promise<Filesystem | null> {
    const type = probe.type!;
    if (probe.unreadable) return { ...base, type: "other", fsType: type };
    if (type === "ext2" || type === "ext3" || type === "ext4") {
      const out = await this.need(["dumpe2fs", "-h", node.path], `${node.path} is ${type}`);
      const sb = parseDumpe2fs(out.stdout);
      return {
        ...base,
        type,
        blockSize: sb.blockSize,
        inodeSize: sb.inodeSize,
        blockCount: sb.blockCount,
        inodeCount: sb.inodeCount,
        reservedBlockCount: sb.reservedBlockCount,
        features: sb.features,
      };
    }
    if (type === "xfs") {
      const out = await this.need(["xfs_info", node.path], `${node.path} is xfs`);
      return { ...base, type: "xfs", geometry: parseXfsInfo(out.stdout) };
    }
    if (type === "vfat") {
      const fat = /FAT(12|16|32)/.exec(probe.version ?? "");
      const fatSize = fat ? (Number(fat[1]) as 12 | 16 | 32) : null;
      return { ...base, type: "vfat", fatSize };
    }
    if (type === "swap") return { ...base, type: "swap" };
    if (type === "btrfs") {
      if (probe.uuid && seenBtrfs.has(probe.uuid)) return null;
      if (probe.uuid) seenBtrfs.add(probe.uuid);
      return this.btrfs(node, probe, base, probes, mountTable);
    }
    return { ...base, type: "other", fsType: type };
  }

  async btrfs(
    node: BlockNode,
    probe: BlkidProbe,
    base: Pick<Filesystem, "device" | "uuid" | "label" | "usage">,
    probes: Map<string, BlkidProbe>,
    mountTable: MountEntry[],
  ): Promise<Filesystem> {
    const devices = [...probes.values()]
      .filter((p) => p.type === "btrfs" && p.uuid === probe.uuid)
      .map((p) => p.device);
    const mount = mountTable.find((m) => devices.includes(m.device));
    const fs: Filesystem = {
      ...base,
      type: "btrfs",
      devices,
      dataProfile: null,
      metadataProfile: null,
      systemProfile: null,
      subvolumes: [],
      defaultSubvolume: { id: 5, path: "" },
    };
    if (!mount) {
      this.warnings.push(
        `btrfs on ${node.path} is not mounted, so its subvolumes and profiles were not captured. Mount it and capture again.`,
      );
      return fs;
    }
    const why = `${node.path} is btrfs`;
    const list = await this.need(
      ["btrfs", "subvolume", "list", "-p", "-u", "-q", mount.target],
      why,
    );
    const def = await this.need(["btrfs", "subvolume", "get-default", mount.target], why);
    const df = await this.need(
      ["btrfs", "--format", "json", "filesystem", "df", mount.target],
      why,
    );
    const profiles = parseFilesystemDf(df.stdout);
    return {
      ...fs,
      dataProfile: profiles.data,
      metadataProfile: profiles.metadata,
      systemProfile: profiles.system,
      subvolumes: parseSubvolumeList(list.stdout),
      defaultSubvolume: parseGetDefault(def.stdout),
    };
  }

  mounts(table: MountEntry[], scopePaths: Set<string>, wholeMachine: boolean): Layout["mounts"] {
    const entries: Mount[] = [];
    const excluded: ExcludedMount[] = [];
    for (const m of table) {
      const reason = exclusionReason(m.fsType);
      if (reason !== null) {
        if (wholeMachine)
          excluded.push({ target: m.target, source: m.source, fsType: m.fsType, reason });
        continue;
      }
      if (!scopePaths.has(m.device)) {
        if (wholeMachine) {
          excluded.push({
            target: m.target,
            source: m.source,
            fsType: m.fsType,
            reason: "not on a captured disk",
          });
        }
        continue;
      }
      entries.push({
        target: m.target,
        source: m.device,
        fsType: m.fsType,
        options: m.options,
        fsRoot: m.fsRoot,
        uuid: m.uuid,
      });
    }
    return { entries, excluded };
  }

  async swapFiles(): Promise<SwapFile[]> {
    const text = await this.source.readFile("/proc/swaps");
    const out: SwapFile[] = [];
    for (const swap of parseProcSwaps(text ?? "")) {
      if (swap.type !== "file") continue;
      const probe = await this.source.run(["blkid", "-p", "-o", "export", swap.path]);
      const parsed = parseBlkidExport(swap.path, probe?.stdout ?? "");
      out.push({
        path: swap.path,
        sizeBytes: swap.sizeBytes,
        uuid: parsed.uuid,
        label: parsed.label,
        priority: swap.priority,
      });
    }
    return out;
  }

  async boot(
    disks: Disk[],
    md: MdArray[],
    mounts: Mount[],
    scopePaths: Set<string>,
  ): Promise<Boot> {
    const uefi = (await this.source.readFile("/sys/firmware/efi/fw_platform_size")) !== null;
    const grubBiosDisks: string[] = [];
    for (const disk of disks) {
      const sector = await this.source.readBinary(disk.device, 512);
      if (sector && hasGrubBootCode(sector)) grubBiosDisks.push(disk.device);
    }
    const tables = [...disks.map((d) => d.partitionTable), ...md.map((a) => a.partitionTable)];
    const espDevices = tables
      .flatMap((t) => t?.partitions ?? [])
      .filter((p) => p.roles.includes("esp"))
      .map((p) => p.device);
    // An ESP on RAID1 (metadata 1.0) is an md device mounted at the ESP mount point.
    const espMount = mounts.find(
      (m) => m.fsType === "vfat" && (espDevices.includes(m.source) || m.target === "/boot/efi"),
    );
    if (espMount && !espDevices.includes(espMount.source) && scopePaths.has(espMount.source)) {
      espDevices.push(espMount.source);
    }
    let efi: Boot["efi"] = null;
    let secureBoot: Boot["secureBoot"] = null;
    if (uefi) {
      const out = await this.need(["efibootmgr", "-v"], "the machine boots with UEFI");
      efi = out.exitCode === 0 ? parseEfibootmgr(out.stdout) : null;
      if (efi === null)
        this.warnings.push("efibootmgr -v failed; the UEFI boot entries were not captured.");
      const sb = await this.source.readBinary(SECURE_BOOT_VAR, 5);
      secureBoot = sb && sb.length >= 5 ? (sb[4] === 1 ? "enabled" : "disabled") : "unknown";
    }
    const espFiles = espMount ? await this.source.listFiles(espMount.target) : null;
    const cmdline = (await this.source.readFile("/proc/cmdline")) ?? "";
    let initramfsTool: Boot["initramfsTool"] = "unknown";
    if ((await this.source.readFile("/etc/initramfs-tools/initramfs.conf")) !== null) {
      initramfsTool = "initramfs-tools";
    } else if ((await this.source.readFile("/etc/dracut.conf")) !== null) {
      initramfsTool = "dracut";
    }
    return {
      firmware: uefi ? "uefi" : "bios",
      secureBoot,
      grubBiosDisks,
      esp:
        espDevices.length > 0
          ? { devices: espDevices, mountPoint: espMount?.target ?? null, files: espFiles ?? [] }
          : null,
      efi,
      kernelCmdline: cmdline.trim(),
      initramfsTool,
    };
  }

  async host(): Promise<Host> {
    const read = async (path: string) => (await this.source.readFile(path))?.trim() ?? null;
    const uname = await this.source.run(["uname", "-m"]);
    const ip = await this.source.run(["ip", "-j", "addr", "show"]);
    if (ip === null || ip.exitCode !== 0) {
      this.warnings.push(
        "ip -j addr failed or iproute2 is missing; network interfaces were not captured.",
      );
    }
    return {
      hostname: (await read("/proc/sys/kernel/hostname")) ?? "unknown",
      machineId: await read("/etc/machine-id"),
      os: parseOsRelease((await this.source.readFile("/etc/os-release")) ?? ""),
      kernelRelease: (await read("/proc/sys/kernel/osrelease")) ?? "unknown",
      architecture: uname?.stdout.trim() || "unknown",
      hardware: normalizeHardware(await this.source.hardware()),
      network: ip && ip.exitCode === 0 ? parseIpAddr(ip.stdout) : [],
    };
  }
}

/** GRUB's boot.img carries the string "GRUB" in its code area (the first 440 bytes). */
export function hasGrubBootCode(sector: Uint8Array): boolean {
  return Buffer.from(sector.subarray(0, 440)).includes("GRUB");
}

function selectDisks(nodes: Map<string, BlockNode>, requested: string[]): BlockNode[] {
  if (requested.length === 0) {
    return [...nodes.values()].filter(
      (n) =>
        n.type === "disk" &&
        n.parents.length === 0 &&
        n.sizeBytes > 0 &&
        !IGNORED_DISKS.test(n.kname),
    );
  }
  return requested.map((path) => {
    const node = [...nodes.values()].find((n) => n.path === path || `/dev/${n.kname}` === path);
    if (!node) {
      throw inputError(
        "LB_DISK_NOT_FOUND",
        `No block device ${path}.`,
        "Pass a whole disk as lsblk lists it, e.g. --disk /dev/vda or --disk /dev/loop0.",
      );
    }
    if (node.type !== "disk" && node.type !== "loop") {
      const parent = node.parents[0] ? ` (its disk is /dev/${node.parents[0]})` : "";
      throw inputError(
        "LB_DISK_NOT_WHOLE",
        `${path} is a ${node.type}, not a whole disk${parent}.`,
        "Pass whole disks with --disk; their partitions and everything on them are captured.",
      );
    }
    return node;
  });
}

interface HardwareInventory {
  system?: { manufacturer?: string; model?: string; serial?: string; virtual?: boolean };
  baseboard?: { manufacturer?: string; model?: string };
  cpu?: { manufacturer?: string; brand?: string; cores?: number; physicalCores?: number };
  mem?: { total?: number };
}

function normalizeHardware(raw: unknown): Host["hardware"] {
  const hw = (raw ?? {}) as HardwareInventory;
  const text = (v: unknown) => (typeof v === "string" ? v.trim() : "");
  const cpuModel = [text(hw.cpu?.manufacturer), text(hw.cpu?.brand)].filter(Boolean).join(" ");
  return {
    system: {
      manufacturer: text(hw.system?.manufacturer),
      model: text(hw.system?.model),
      serial: text(hw.system?.serial),
    },
    board: { manufacturer: text(hw.baseboard?.manufacturer), model: text(hw.baseboard?.model) },
    cpu: {
      model: cpuModel,
      cores: Number(hw.cpu?.physicalCores ?? hw.cpu?.cores ?? 0),
      threads: Number(hw.cpu?.cores ?? 0),
    },
    memoryBytes: Number(hw.mem?.total ?? 0),
    virtual: hw.system?.virtual === true,
  };
}
