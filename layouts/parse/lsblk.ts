// lsblk -J -O -b: the block-device tree. Stacked devices (md, dm) appear once under every
// parent, so the tree is flattened into one node per kernel name with a list of parents.
import { z } from "zod";

const LsblkNodeSchema: z.ZodType<LsblkJsonNode> = z.lazy(() =>
  z.object({
    name: z.string(),
    kname: z.string(),
    path: z.string().nullish(),
    type: z.string(),
    pkname: z.string().nullish(),
    size: z.union([z.number(), z.string()]).nullish(),
    model: z.string().nullish(),
    serial: z.string().nullish(),
    wwn: z.string().nullish(),
    "log-sec": z.union([z.number(), z.string()]).nullish(),
    "phy-sec": z.union([z.number(), z.string()]).nullish(),
    rota: z.union([z.boolean(), z.string()]).nullish(),
    rm: z.union([z.boolean(), z.string()]).nullish(),
    tran: z.string().nullish(),
    mountpoints: z.array(z.string().nullable()).nullish(),
    fstype: z.string().nullish(),
    uuid: z.string().nullish(),
    label: z.string().nullish(),
    children: z.array(LsblkNodeSchema).optional(),
  }),
);

interface LsblkJsonNode {
  name: string;
  kname: string;
  path?: string | null;
  type: string;
  pkname?: string | null;
  size?: number | string | null;
  model?: string | null;
  serial?: string | null;
  wwn?: string | null;
  "log-sec"?: number | string | null;
  "phy-sec"?: number | string | null;
  rota?: boolean | string | null;
  rm?: boolean | string | null;
  tran?: string | null;
  mountpoints?: (string | null)[] | null;
  fstype?: string | null;
  uuid?: string | null;
  label?: string | null;
  children?: LsblkJsonNode[];
}

export interface BlockNode {
  kname: string;
  name: string;
  /** /dev path; for dm devices this is /dev/mapper/<name>. */
  path: string;
  /** disk, part, loop, raid1, crypt, lvm, rom, ... */
  type: string;
  sizeBytes: number;
  model: string | null;
  serial: string | null;
  wwn: string | null;
  logicalSectorSize: number;
  physicalSectorSize: number;
  rotational: boolean;
  removable: boolean;
  transport: string | null;
  mountpoints: string[];
  /** Signature facts from udev's database; empty on machines without udev. */
  fsType: string | null;
  uuid: string | null;
  label: string | null;
  /** Kernel names of the devices this one sits on. */
  parents: string[];
  /** Kernel names of the devices on top of this one. */
  children: string[];
}

export function parseLsblk(text: string): Map<string, BlockNode> {
  const json = z.object({ blockdevices: z.array(LsblkNodeSchema) }).parse(JSON.parse(text));
  const nodes = new Map<string, BlockNode>();
  const visit = (raw: LsblkJsonNode, parent: string | null) => {
    let node = nodes.get(raw.kname);
    if (!node) {
      node = toNode(raw);
      nodes.set(raw.kname, node);
    }
    if (parent !== null && !node.parents.includes(parent)) node.parents.push(parent);
    for (const child of raw.children ?? []) {
      if (!node.children.includes(child.kname)) node.children.push(child.kname);
      visit(child, raw.kname);
    }
  };
  for (const root of json.blockdevices) visit(root, null);
  return nodes;
}

function toNode(raw: LsblkJsonNode): BlockNode {
  const clean = (value: string | null | undefined) => {
    const trimmed = value?.trim();
    return trimmed ? trimmed : null;
  };
  return {
    kname: raw.kname,
    name: raw.name,
    path: raw.path ?? `/dev/${raw.name}`,
    type: raw.type,
    sizeBytes: Number(raw.size ?? 0),
    model: clean(raw.model),
    serial: clean(raw.serial),
    wwn: clean(raw.wwn),
    logicalSectorSize: Number(raw["log-sec"] ?? 512),
    physicalSectorSize: Number(raw["phy-sec"] ?? 512),
    rotational: raw.rota === true || raw.rota === "1",
    removable: raw.rm === true || raw.rm === "1",
    transport: clean(raw.tran),
    mountpoints: (raw.mountpoints ?? []).filter((m): m is string => typeof m === "string"),
    fsType: clean(raw.fstype),
    uuid: clean(raw.uuid),
    label: clean(raw.label),
    parents: [],
    children: [],
  };
}

/** Every kernel name stacked on `kname`, transitively (partitions, md, dm, LVs). */
export function descendants(nodes: Map<string, BlockNode>, kname: string): string[] {
  const seen = new Set<string>();
  const walk = (name: string) => {
    for (const child of nodes.get(name)?.children ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      walk(child);
    }
  };
  walk(kname);
  return [...seen];
}
