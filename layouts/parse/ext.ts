// dumpe2fs -h DEV: the ext2/3/4 superblock as "Key: value" lines.
import { parseColonLines, toInt } from "./kv.ts";

/** Features that are runtime state (set while mounted), not part of how the fs was made. */
export const EXT_RUNTIME_FEATURES = new Set(["needs_recovery", "orphan_present"]);

export interface ExtSuperblock {
  uuid: string | null;
  label: string | null;
  blockSize: number;
  inodeSize: number;
  blockCount: number;
  inodeCount: number;
  reservedBlockCount: number;
  features: string[];
}

export function parseDumpe2fs(text: string): ExtSuperblock {
  const fields = parseColonLines(text);
  const label = fields["Filesystem volume name"];
  const required = (key: string) => {
    const value = toInt(fields[key]);
    if (value === null) throw new Error(`dumpe2fs output has no "${key}" line`);
    return value;
  };
  return {
    uuid: fields["Filesystem UUID"] ?? null,
    label: label === undefined || label === "<none>" ? null : label,
    blockSize: required("Block size"),
    // ext2 filesystems made with -I 128 and old ones may omit the line; 128 is the old default.
    inodeSize: toInt(fields["Inode size"]) ?? 128,
    blockCount: required("Block count"),
    inodeCount: required("Inode count"),
    reservedBlockCount: required("Reserved block count"),
    features: (fields["Filesystem features"] ?? "").split(/\s+/).filter(Boolean),
  };
}
