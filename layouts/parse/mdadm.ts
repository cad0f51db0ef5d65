// mdadm --detail --export /dev/mdX, plus the array's sysfs attributes (chunk size, layout,
// bitmap), which --export does not carry.
import { parseExportLines, toInt } from "./kv.ts";

export interface MdDetail {
  level: string;
  raidDevices: number;
  metadata: string;
  uuid: string;
  name: string | null;
  members: { device: string; slot: number | null; state: string }[];
}

export function parseMdadmExport(text: string): MdDetail {
  const fields = parseExportLines(text);
  const members = new Map<string, { device: string; slot: number | null; state: string }>();
  for (const [key, value] of Object.entries(fields)) {
    const match = /^MD_DEVICE_(.+)_(ROLE|DEV)$/.exec(key);
    if (!match) continue;
    const id = match[1]!;
    const member = members.get(id) ?? { device: "", slot: null, state: "active" };
    if (match[2] === "DEV") member.device = value;
    else if (/^\d+$/.test(value)) member.slot = Number(value);
    else member.state = value;
    members.set(id, member);
  }
  const required = (key: string) => {
    const value = fields[key];
    if (value === undefined) throw new Error(`mdadm --detail --export printed no ${key}`);
    return value;
  };
  return {
    level: required("MD_LEVEL"),
    raidDevices: toInt(fields.MD_DEVICES) ?? 0,
    metadata: required("MD_METADATA"),
    uuid: required("MD_UUID"),
    name: fields.MD_NAME ?? null,
    members: [...members.values()]
      .filter((m) => m.device !== "")
      .sort((a, b) => (a.slot ?? 1e9) - (b.slot ?? 1e9) || a.device.localeCompare(b.device)),
  };
}

/** /sys/block/mdX/md/bitmap/location: "none", "+8" (internal) or "file". */
export function bitmapFromSysfs(location: string | null): string {
  const value = (location ?? "none").trim();
  if (value === "none" || value === "") return "none";
  if (/^[+-]\d+$/.test(value)) return "internal";
  return value;
}
