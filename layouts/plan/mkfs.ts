// The commands that recreate each filesystem with its captured identity (UUID, label) and
// parameters. `sameSize` says whether the device keeps its captured size: geometry that
// depends on the size (inode count, xfs allocation groups, log size) is only pinned then.

import { EXT_RUNTIME_FEATURES } from "../parse/ext.ts";
import type { BtrfsFs, ExtFs, Filesystem, VfatFs, XfsFs } from "../schema.ts";

/** `devices` is the filesystem's device, or every device of a multi-device btrfs. */
export function mkfsCommand(
  fs: Filesystem,
  devices: string[],
  deviceBytes: number,
  sameSize: boolean,
): string[] | null {
  const device = devices[0]!;
  switch (fs.type) {
    case "ext2":
    case "ext3":
    case "ext4":
      return mkfsExt(fs, device, deviceBytes, sameSize);
    case "xfs":
      return mkfsXfs(fs, device, sameSize);
    case "btrfs":
      return mkfsBtrfs(fs, devices);
    case "vfat":
      return mkfsVfat(fs, device);
    case "swap":
      return ["mkswap", "-f", ...opt("-U", fs.uuid), ...opt("-L", fs.label), device];
    case "other":
      return null;
  }
}

function opt(flag: string, value: string | null | undefined): string[] {
  return value === null || value === undefined || value === "" ? [] : [flag, value];
}

function mkfsExt(fs: ExtFs, device: string, deviceBytes: number, sameSize: boolean): string[] {
  const features = fs.features.filter((f) => !EXT_RUNTIME_FEATURES.has(f));
  const capturedBytes = fs.blockCount * fs.blockSize;
  // Keep the bytes-per-inode ratio, so a bigger filesystem gets proportionally more inodes.
  const inodes = sameSize
    ? fs.inodeCount
    : Math.max(1024, Math.round((fs.inodeCount * deviceBytes) / Math.max(capturedBytes, 1)));
  const reservedPercent = fs.blockCount > 0 ? (fs.reservedBlockCount / fs.blockCount) * 100 : 5;
  return [
    `mkfs.${fs.type}`,
    "-F",
    "-q",
    ...opt("-U", fs.uuid),
    ...opt("-L", fs.label),
    "-b",
    String(fs.blockSize),
    "-I",
    String(fs.inodeSize),
    "-N",
    String(inodes),
    "-m",
    String(Math.round(reservedPercent * 100) / 100),
    "-O",
    ["none", ...features].join(","),
    device,
  ];
}

function mkfsXfs(fs: XfsFs, device: string, sameSize: boolean): string[] {
  const g = fs.geometry;
  const meta = [
    ...(fs.uuid ? [`uuid=${fs.uuid}`] : []),
    ...["crc", "finobt", "rmapbt", "reflink", "bigtime", "inobtcount"]
      .filter((k) => g.features[k] !== undefined)
      .map((k) => `${k}=${g.features[k]}`),
  ];
  const inode = [`size=${g.inodeSize}`];
  if (g.features.sparse !== undefined) inode.push(`sparse=${g.features.sparse}`);
  if (g.features.nrext64 !== undefined) inode.push(`nrext64=${g.features.nrext64}`);
  const data: string[] = [];
  if (sameSize) data.push(`agcount=${g.agCount}`);
  if (g.sunit > 0)
    data.push(`sunit=${g.sunit * (g.blockSize / 512)}`, `swidth=${g.swidth * (g.blockSize / 512)}`);
  const argv = [
    "mkfs.xfs",
    "-f",
    "-q",
    ...opt("-L", fs.label),
    "-b",
    `size=${g.blockSize}`,
    "-s",
    `size=${g.sectorSize}`,
  ];
  argv.push("-m", meta.join(","), "-i", inode.join(","));
  if (data.length > 0) argv.push("-d", data.join(","));
  if (sameSize && g.logInternal && g.logBlocks > 0)
    argv.push("-l", `size=${g.logBlocks * g.blockSize}`);
  argv.push(device);
  return argv;
}

function mkfsBtrfs(fs: BtrfsFs, devices: string[]): string[] {
  return [
    "mkfs.btrfs",
    "-f",
    "-q",
    ...opt("-U", fs.uuid),
    ...opt("-L", fs.label),
    ...opt("-d", fs.dataProfile),
    ...opt("-m", fs.metadataProfile),
    ...devices,
  ];
}

function mkfsVfat(fs: VfatFs, device: string): string[] {
  // A FAT volume id is printed as XXXX-XXXX; mkfs.vfat takes the 8 hex digits.
  const volumeId = fs.uuid?.replace("-", "");
  return [
    "mkfs.vfat",
    ...(fs.fatSize ? ["-F", String(fs.fatSize)] : []),
    ...opt("-i", volumeId),
    ...opt("-n", fs.label),
    device,
  ];
}
