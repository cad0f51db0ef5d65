// xfs_info DEV|MOUNTPOINT: the xfs geometry. The output is sections ("meta-data", "data",
// "naming", "log", "realtime") of key=value tokens; continuation lines start with "=".
import type { XfsFs } from "../schema.ts";

type Sections = Record<string, Record<string, string>>;

function sections(text: string): Sections {
  const out: Sections = {};
  let current = "";
  for (const line of text.split("\n")) {
    const head = /^(\S+)\s*=/.exec(line);
    if (head) current = head[1]!;
    else if (!/^\s+=/.test(line)) continue;
    const section = (out[current] ??= {});
    if (head && /=internal/.test(line)) section.internal = "1";
    for (const match of line.matchAll(/([a-z][a-z0-9_-]*)=([^\s,]+)/g)) {
      section[match[1]!] ??= match[2]!;
    }
  }
  return out;
}

export function parseXfsInfo(text: string): XfsFs["geometry"] {
  const s = sections(text);
  const meta = s["meta-data"] ?? {};
  const data = s.data ?? {};
  const log = s.log ?? {};
  const num = (section: Record<string, string>, key: string, fallback?: number) => {
    const value = section[key];
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      throw new Error(`xfs_info output has no ${key}=`);
    }
    return Number(value);
  };
  const features: Record<string, number> = {};
  for (const key of [
    "crc",
    "finobt",
    "sparse",
    "rmapbt",
    "reflink",
    "bigtime",
    "inobtcount",
    "nrext64",
  ]) {
    if (meta[key] !== undefined) features[key] = Number(meta[key]);
  }
  return {
    blockSize: num(data, "bsize"),
    sectorSize: num(meta, "sectsz"),
    inodeSize: num(meta, "isize"),
    agCount: num(meta, "agcount"),
    agSizeBlocks: num(meta, "agsize"),
    dataBlocks: num(data, "blocks"),
    logBlocks: num(log, "blocks", 0),
    logInternal: log.internal === "1",
    sunit: num(data, "sunit", 0),
    swidth: num(data, "swidth", 0),
    features,
  };
}
