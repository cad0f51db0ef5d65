// findmnt -J -b -l -o SOURCE,TARGET,FSTYPE,OPTIONS,FSROOT,UUID,SIZE,USED,AVAIL: the mount
// table, flat. Sizes are present for real filesystems only.
import { z } from "zod";

export const FINDMNT_COLUMNS = "SOURCE,TARGET,FSTYPE,OPTIONS,FSROOT,UUID,SIZE,USED,AVAIL";

const FindmntSchema = z.object({
  filesystems: z.array(
    z.object({
      source: z.string().nullable(),
      target: z.string(),
      fstype: z.string(),
      options: z.string().nullable(),
      fsroot: z.string().nullable().optional(),
      uuid: z.string().nullable().optional(),
      size: z.union([z.number(), z.string()]).nullable().optional(),
      used: z.union([z.number(), z.string()]).nullable().optional(),
      avail: z.union([z.number(), z.string()]).nullable().optional(),
    }),
  ),
});

export interface MountEntry {
  source: string;
  /** The device without a "[/subvol]" suffix (findmnt prints that for bind and btrfs mounts). */
  device: string;
  target: string;
  fsType: string;
  options: string[];
  fsRoot: string;
  uuid: string | null;
  sizeBytes: number | null;
  usedBytes: number | null;
}

export function parseFindmnt(text: string): MountEntry[] {
  const json = FindmntSchema.parse(JSON.parse(text));
  return json.filesystems.map((fs) => {
    const source = fs.source ?? "none";
    const num = (v: number | string | null | undefined) =>
      v === null || v === undefined || v === "" ? null : Number(v);
    return {
      source,
      device: source.replace(/\[[^\]]*\]$/, ""),
      target: fs.target,
      fsType: fs.fstype,
      options: (fs.options ?? "").split(",").filter(Boolean),
      fsRoot: fs.fsroot ?? "/",
      uuid: fs.uuid ?? null,
      sizeBytes: num(fs.size),
      usedBytes: num(fs.used),
    };
  });
}
