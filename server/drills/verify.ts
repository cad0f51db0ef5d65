// What a drill's restored machine reported, held against what the snapshot says it should
// be: the verification levels L1-L4 and, for each failed level, a reason an operator can
// act on. Pure.

import type { DrillLevels, ProbeResult } from "../../common/drills.ts";
import type { Layout } from "../../layouts/schema.ts";
import type { DrillCheckReport, DrillSpec } from "../../rescue/recover/drill-check.ts";

export interface DrillVerdict {
  levels: DrillLevels;
  probes: ProbeResult[];
  /** One line per problem; empty when every level passed. */
  problems: string[];
  /** Units systemd reported failed: shown, but not a failure by themselves. */
  failedUnits: string[];
}

interface FindmntNode {
  target?: string;
  source?: string;
  fstype?: string;
  children?: FindmntNode[];
}

function flatten(tree: unknown): FindmntNode[] {
  const out: FindmntNode[] = [];
  const walk = (nodes: FindmntNode[] | undefined) => {
    for (const node of nodes ?? []) {
      out.push(node);
      walk(node.children);
    }
  };
  walk((tree as { filesystems?: FindmntNode[] } | null)?.filesystems);
  return out;
}

/** Mount points the layout says the machine has (local filesystems, no swap). */
export function expectedMounts(layout: Layout): { target: string; fsType: string }[] {
  const seen = new Set<string>();
  const out: { target: string; fsType: string }[] = [];
  for (const mount of layout.mounts.entries) {
    if (mount.fsType === "swap" || seen.has(mount.target)) continue;
    seen.add(mount.target);
    out.push({ target: mount.target, fsType: mount.fsType });
  }
  return out;
}

export function judgeDrill(
  layout: Layout,
  report: DrillCheckReport,
  spec: DrillSpec,
  expectedHashes: ReadonlyMap<string, string>,
): DrillVerdict {
  const problems: string[] = [];

  // L1: the machine booted as itself.
  const boot = report.hostname === layout.host.hostname;
  if (!boot) {
    problems.push(
      `L1: the restored machine calls itself ${report.hostname}, the snapshot is of ${layout.host.hostname}`,
    );
  }

  // L2: every captured mount is mounted with its type, and fstab has nothing left unmounted.
  const mounted = flatten(report.mounts);
  const byTarget = new Map(mounted.map((m) => [m.target, m]));
  const missing: string[] = [];
  for (const want of expectedMounts(layout)) {
    const got = byTarget.get(want.target);
    if (!got) missing.push(`${want.target} (${want.fsType}) is not mounted`);
    else if (got.fstype !== want.fsType) {
      missing.push(`${want.target} is ${got.fstype}, the layout says ${want.fsType}`);
    }
  }
  for (const entry of flatten(report.fstab)) {
    if (!entry.target || !entry.target.startsWith("/") || entry.fstype === "swap") continue;
    if (!byTarget.has(entry.target)) missing.push(`fstab's ${entry.target} is not mounted`);
  }
  const mounts = missing.length === 0;
  if (!mounts) problems.push(`L2: ${missing.join("; ")}`);

  // L3: sampled files have the content the snapshot holds.
  const wrong: string[] = [];
  for (const file of spec.sampleFiles) {
    const expected = expectedHashes.get(file);
    const got = report.files.find((f) => f.path === file)?.sha256 ?? null;
    if (expected === undefined) continue;
    if (got === null) wrong.push(`${file} is missing`);
    else if (got !== expected) wrong.push(`${file} differs from the snapshot`);
  }
  const files = wrong.length === 0;
  if (!files)
    problems.push(
      `L3: ${wrong.slice(0, 5).join("; ")}${wrong.length > 5 ? ` (+${wrong.length - 5} more)` : ""}`,
    );

  // L4: each probe's exit code counts.
  const probes: ProbeResult[] = spec.probes.map((probe) => {
    const ran = report.probes.find((p) => p.name === probe.name);
    return {
      name: probe.name,
      command: probe.command,
      exitCode: ran?.exitCode ?? null,
      seconds: ran?.seconds ?? 0,
      output: ran?.output ?? "",
    };
  });
  const failedProbes = probes.filter((p) => p.exitCode !== 0);
  for (const probe of failedProbes) {
    problems.push(
      `L4: probe ${probe.name} (${probe.command}) ${probe.exitCode === null ? `timed out` : `exited ${probe.exitCode}`}`,
    );
  }

  return {
    levels: { boot, mounts, files, probes: failedProbes.length === 0 },
    probes,
    problems,
    failedUnits: report.failedUnits,
  };
}
