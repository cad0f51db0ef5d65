// What the planner may write to: the disks on this machine right now, what is on them,
// and which of them must never be touched.

import { environmentError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import { parseBlkidExport } from "../../layouts/parse/blkid.ts";
import { descendants, parseLsblk, type BlockNode } from "../../layouts/parse/lsblk.ts";
import type { ProtectedDevice, TargetDisk } from "../../layouts/plan/types.ts";

/** The ISO label the rescue builder gives its media; such a disk is never a target. */
export const RESCUE_LABEL_PREFIX = "LIFEBOAT";

const IGNORED = /^(zram|ram|fd|sr|nbd)\d+/;

export interface Inventory {
  targets: TargetDisk[];
  protect: ProtectedDevice[];
}

export async function readInventory(sources: string[]): Promise<Inventory> {
  const lsblk = await runTool(["lsblk", "-J", "-O", "-b"]);
  const nodes = parseLsblk(lsblk.stdout);
  const disks = [...nodes.values()].filter(
    (n) =>
      (n.type === "disk" || n.type === "loop") &&
      n.parents.length === 0 &&
      n.sizeBytes > 0 &&
      !IGNORED.test(n.kname),
  );
  const targets: TargetDisk[] = [];
  const protect: ProtectedDevice[] = [];
  for (const disk of disks) {
    const stack = [disk.kname, ...descendants(nodes, disk.kname)].map((k) => nodes.get(k)!);
    const contents: string[] = [];
    for (const node of stack) {
      const out = await runTool(["blkid", "-p", "-o", "export", node.path], { allowFailure: true });
      const probe = parseBlkidExport(node.path, out.stdout);
      const described = describe(node, probe);
      if (described) contents.push(described);
      if (probe.type === "iso9660" && probe.label?.startsWith(RESCUE_LABEL_PREFIX)) {
        protect.push({ device: disk.path, reason: "is the Lifeboat rescue medium" });
      }
    }
    targets.push({
      device: disk.path,
      sizeBytes: disk.sizeBytes,
      logicalSectorSize: disk.logicalSectorSize,
      mountpoints: stack.flatMap((n) => n.mountpoints),
      holders: holdersOf(nodes, disk),
      partitions: stack
        .filter((n) => n.type === "part" && n.parents.includes(disk.kname))
        .map((n) => n.path),
      contents,
    });
  }
  for (const source of sources) protect.push(...(await protectSource(nodes, source)));
  return { targets, protect };
}

function describe(node: BlockNode, probe: ReturnType<typeof parseBlkidExport>): string | null {
  if (probe.ptType) {
    const count = node.children.length;
    return `${node.path}: ${probe.ptType === "dos" ? "MBR" : probe.ptType.toUpperCase()} partition table with ${count} partition${count === 1 ? "" : "s"}`;
  }
  if (!probe.type) return null;
  const label = probe.label ? ` '${probe.label}'` : "";
  const uuid = probe.uuid ? ` (UUID ${probe.uuid})` : "";
  return `${node.path}: ${probe.type}${label}${uuid}`;
}

/** md and dm devices stacked on the disk, the topmost (furthest from the disk) first. */
function holdersOf(nodes: Map<string, BlockNode>, disk: BlockNode): TargetDisk["holders"] {
  const depth = new Map<string, number>();
  const walk = (kname: string, d: number) => {
    for (const child of nodes.get(kname)?.children ?? []) {
      if ((depth.get(child) ?? -1) < d + 1) depth.set(child, d + 1);
      walk(child, d + 1);
    }
  };
  walk(disk.kname, 0);
  return [...depth.entries()]
    .map(([kname, d]) => ({ node: nodes.get(kname)!, d }))
    .filter(({ node }) => node.type !== "part")
    .sort((a, b) => b.d - a.d)
    .map(({ node }) => ({
      device: node.path,
      kind: node.kname.startsWith("md") ? ("md" as const) : ("dm" as const),
      name: node.name,
    }));
}

/** The disks under the filesystem that holds `path` (the backup source) are protected. */
async function protectSource(
  nodes: Map<string, BlockNode>,
  path: string,
): Promise<ProtectedDevice[]> {
  const out = await runTool(["findmnt", "-J", "-T", path, "-o", "SOURCE"], { allowFailure: true });
  if (out.exitCode !== 0) {
    throw environmentError(
      "LB_SOURCE_NOT_FOUND",
      `Can't find the filesystem that holds the backup source ${path}.`,
      "Check the --source path exists and is mounted.",
    );
  }
  const source =
    (JSON.parse(out.stdout) as { filesystems: { source: string }[] }).filesystems[0]?.source ?? "";
  const device = source.replace(/\[.*\]$/, "");
  const start = [...nodes.values()].find((n) => n.path === device);
  if (!start) return [];
  const roots = new Set<string>();
  const up = (node: BlockNode) => {
    if (node.parents.length === 0) roots.add(node.path);
    for (const parent of node.parents) {
      const p = nodes.get(parent);
      if (p) up(p);
    }
  };
  up(start);
  return [...roots].map((disk) => ({ device: disk, reason: `holds the backup source ${path}` }));
}
