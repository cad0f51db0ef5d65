// The restored system against the source, from the reports their boot marker unit sends
// (vm-tests/fixtures/guest/boot-report.sh): block devices (lsblk), mounts (findmnt), UEFI boot
// entries (efibootmgr) and a manifest of /etc, /usr/bin, /usr/sbin, /usr/local and /boot
// (type, mode, owner, link target, SHA-256). Pure: the harness feeds it the blocks.
//
// After a migration (other disk names, other sizes) names and sizes are left out on purpose;
// everything else must match. Differences that recovery makes by design are listed in
// EXPECTED_DIFFERENCES with the reason, and reported as such, never silently dropped.

import { zstdDecompressSync } from "node:zlib";

export interface BootReport {
  lsblk: string;
  findmnt: string;
  efibootmgr?: string;
  /** The manifest, decompressed. */
  manifest: string;
}

/** The report blocks PREFIX.* from the data port, or what is missing. */
export function reportFromBlocks(
  blocks: Map<string, Buffer>,
  prefix: string,
): BootReport | { missing: string[] } {
  const get = (name: string) => blocks.get(`${prefix}.${name}`);
  const missing = ["lsblk.json", "findmnt.json", "manifest.tsv.zst"].filter(
    (name) => get(name) === undefined,
  );
  if (missing.length > 0) return { missing: missing.map((name) => `${prefix}.${name}`) };
  return {
    lsblk: get("lsblk.json")!.toString("utf8"),
    findmnt: get("findmnt.json")!.toString("utf8"),
    efibootmgr: get("efibootmgr.txt")?.toString("utf8"),
    manifest: zstdDecompressSync(get("manifest.tsv.zst")!).toString("utf8"),
  };
}

// ---------------------------------------------------------------------------------------
// The boot marker

export type BootMarker =
  { state: "ok"; host: string } | { state: "failed"; reason: string } | { state: "absent" };

/** The last LIFEBOAT-BOOT-OK / LIFEBOAT-BOOT-FAIL line on a console. */
export function findBootMarker(consoleText: string): BootMarker {
  const lines = consoleText.replace(/\r/g, "").split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    const ok = /LIFEBOAT-BOOT-OK host=(\S+)/.exec(line);
    if (ok) return { state: "ok", host: ok[1]! };
    const failed = /LIFEBOAT-BOOT-FAIL (.*)$/.exec(line);
    if (failed) return { state: "failed", reason: failed[1]!.trim() };
  }
  return { state: "absent" };
}

// ---------------------------------------------------------------------------------------
// lsblk

interface LsblkDevice {
  name: string;
  type: string;
  fstype?: string | null;
  size?: number | string | null;
  uuid?: string | null;
  partuuid?: string | null;
  label?: string | null;
  mountpoints?: (string | null)[];
  children?: LsblkDevice[];
}

/** One line per device, with its parents' names (or types, after a migration) as a path. */
export function lsblkRows(json: string, options: { migrated: boolean }): string[] {
  const parsed = JSON.parse(json) as { blockdevices?: LsblkDevice[] };
  const rows: string[] = [];
  const walk = (device: LsblkDevice, parents: string[]) => {
    // CD-ROMs and loop devices are the rescue medium or the harness's, not the machine's.
    if (device.type === "rom" || device.type === "loop") return;
    const self = options.migrated ? device.type : device.name;
    const mounts = (device.mountpoints ?? []).filter((m): m is string => m !== null).sort();
    const fields = [
      [...parents, self].join("/"),
      `type=${device.type}`,
      `fstype=${device.fstype ?? ""}`,
      options.migrated ? "" : `size=${device.size ?? ""}`,
      `uuid=${device.uuid ?? ""}`,
      `partuuid=${(device.partuuid ?? "").toLowerCase()}`,
      `label=${device.label ?? ""}`,
      `mounts=${mounts.join(",")}`,
    ].filter((f) => f !== "");
    rows.push(fields.join(" "));
    for (const child of device.children ?? []) walk(child, [...parents, self]);
  };
  for (const device of parsed.blockdevices ?? []) walk(device, []);
  return rows.sort();
}

// ---------------------------------------------------------------------------------------
// findmnt

interface FindmntEntry {
  target: string;
  source: string;
  fstype: string;
  uuid?: string | null;
  children?: FindmntEntry[];
}

const DISK_FILESYSTEMS = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"]);

/** Mounts of disk filesystems: target, type, UUID and (unless migrated) the source. */
export function findmntRows(json: string, options: { migrated: boolean }): string[] {
  const parsed = JSON.parse(json) as { filesystems?: FindmntEntry[] };
  const rows: string[] = [];
  const walk = (entry: FindmntEntry) => {
    if (DISK_FILESYSTEMS.has(entry.fstype)) {
      // btrfs sources carry the subvolume: /dev/vda2[/@home]. Keep it, drop the device.
      const source = options.migrated
        ? entry.source.replace(/^\/dev\/(vd|sd|nvme)[^[]*/, "DISK")
        : entry.source;
      rows.push(`${entry.target} ${entry.fstype} uuid=${entry.uuid ?? ""} source=${source}`);
    }
    for (const child of entry.children ?? []) walk(child);
  };
  for (const entry of parsed.filesystems ?? []) walk(entry);
  return rows.sort();
}

// ---------------------------------------------------------------------------------------
// efibootmgr

export interface EfiBootEntry {
  number: string;
  label: string;
  partition: number;
  partUuid: string;
  file: string;
}

/** The entries that boot a file from a GPT partition, in BootOrder order (then the rest). */
export function efiDiskEntries(text: string): EfiBootEntry[] {
  const lines = text.replace(/\r/g, "").split("\n");
  const order = /^BootOrder:\s*(\S+)/m.exec(text)?.[1]?.split(",") ?? [];
  const entries: EfiBootEntry[] = [];
  for (const line of lines) {
    const match =
      /^Boot([0-9A-F]{4})\*?\s+(.*?)\s*\t?HD\((\d+),GPT,([0-9a-f-]+),[^)]*\)\/File\(([^)]+)\)/i.exec(
        line,
      );
    if (!match) continue;
    entries.push({
      number: match[1]!.toUpperCase(),
      label: match[2]!.trim(),
      partition: Number(match[3]),
      partUuid: match[4]!.toLowerCase(),
      file: match[5]!.replace(/\//g, "\\").toUpperCase(),
    });
  }
  const rank = (e: EfiBootEntry) => {
    const index = order.indexOf(e.number);
    return index < 0 ? order.length : index;
  };
  return entries.sort((a, b) => rank(a) - rank(b));
}

// ---------------------------------------------------------------------------------------
// The file manifest

export interface ManifestEntry {
  type: string;
  mode: string;
  owner: string;
  /** Link target (links) or SHA-256 (files). */
  content: string;
}

/** Lines "TYPE MODE OWNER TARGET PATH" and "s - - SHA256 PATH" (tabs), joined by path. */
export function parseManifest(text: string): Map<string, ManifestEntry> {
  const entries = new Map<string, ManifestEntry>();
  const sums = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const fields = line.split("\t");
    if (fields.length < 5) continue;
    const [type, mode, owner, content] = fields as [string, string, string, string];
    const file = fields.slice(4).join("\t");
    if (type === "s") sums.set(file, content);
    else entries.set(file, { type, mode, owner, content });
  }
  for (const [file, entry] of entries) {
    if (entry.type === "f") entry.content = sums.get(file) ?? "unhashed";
  }
  return entries;
}

export interface ExpectedDifference {
  /** Matches the path. */
  pattern: RegExp;
  /** Only in these conditions. */
  when?: { migrated?: boolean; firmware?: "bios" | "uefi"; drill?: boolean };
  reason: string;
}

/** What recovery changes on purpose, and why. Anything else that differs is a failure. */
export const EXPECTED_DIFFERENCES: ExpectedDifference[] = [
  {
    pattern:
      /^\/(etc\/systemd\/system|usr\/local\/lib)\/(multi-user\.target\.wants\/)?lifeboat-(drill|standby-ready)/,
    when: { drill: true },
    reason:
      "the drill check recovery installs for the first boot, and the marker a warm standby prints (lifeboat.drill=1)",
  },
  {
    pattern: /^\/boot\/efi\/EFI\/BOOT(\/|$)/i,
    when: { firmware: "uefi" },
    reason: "recovery also installs GRUB on the removable fallback path EFI/BOOT/BOOTX64.EFI",
  },
  {
    pattern: /^\/boot\/initrd\.img-/,
    when: { migrated: true },
    reason: "the initramfs is rebuilt when the disks' driver family changes",
  },
];

export interface ManifestComparison {
  unexpected: string[];
  expected: string[];
  compared: number;
}

export function compareManifests(
  source: Map<string, ManifestEntry>,
  restored: Map<string, ManifestEntry>,
  context: { migrated: boolean; firmware: "bios" | "uefi"; drill: boolean },
  allowances: ExpectedDifference[] = EXPECTED_DIFFERENCES,
): ManifestComparison {
  const result: ManifestComparison = { unexpected: [], expected: [], compared: 0 };
  const allowance = (file: string) =>
    allowances.find(
      (a) =>
        a.pattern.test(file) &&
        (a.when?.migrated === undefined || a.when.migrated === context.migrated) &&
        (a.when?.firmware === undefined || a.when.firmware === context.firmware) &&
        (a.when?.drill === undefined || a.when.drill === context.drill),
    );
  const note = (file: string, what: string) => {
    const allowed = allowance(file);
    if (allowed) result.expected.push(`${file}: ${what} (${allowed.reason})`);
    else result.unexpected.push(`${file}: ${what}`);
  };
  const files = [...new Set([...source.keys(), ...restored.keys()])].sort();
  for (const file of files) {
    const a = source.get(file);
    const b = restored.get(file);
    result.compared++;
    if (!a) note(file, "only on the restored system");
    else if (!b) note(file, "missing on the restored system");
    else {
      const what: string[] = [];
      if (a.type !== b.type) what.push(`type ${a.type} -> ${b.type}`);
      if (a.mode !== b.mode) what.push(`mode ${a.mode} -> ${b.mode}`);
      if (a.owner !== b.owner) what.push(`owner ${a.owner} -> ${b.owner}`);
      if (a.type === b.type && a.content !== b.content)
        what.push(a.type === "l" ? `link ${a.content} -> ${b.content}` : "content differs");
      if (what.length > 0) note(file, what.join(", "));
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// All of it

export interface SystemComparison {
  problems: string[];
  /** Differences recovery makes on purpose (with the reason). */
  expected: string[];
  manifestEntries: number;
}

function diffRows(what: string, source: string[], restored: string[]): string[] {
  const left = [...source];
  const extra: string[] = [];
  for (const row of restored) {
    const i = left.indexOf(row);
    if (i >= 0) left.splice(i, 1);
    else extra.push(row);
  }
  if (left.length === 0 && extra.length === 0) return [];
  return [
    `${what} differs:${left.map((r) => `\n    source only:   ${r}`).join("")}${extra
      .map((r) => `\n    restored only: ${r}`)
      .join("")}`,
  ];
}

export function compareSystems(
  source: BootReport,
  restored: BootReport,
  context: { migrated: boolean; firmware: "bios" | "uefi"; drill: boolean },
): SystemComparison {
  const opts = { migrated: context.migrated };
  const problems = [
    ...diffRows("lsblk", lsblkRows(source.lsblk, opts), lsblkRows(restored.lsblk, opts)),
    ...diffRows("findmnt", findmntRows(source.findmnt, opts), findmntRows(restored.findmnt, opts)),
  ];
  if (context.firmware === "uefi") {
    const show = (e: EfiBootEntry) => `${e.label} partition ${e.partition} ${e.partUuid} ${e.file}`;
    const a = efiDiskEntries(source.efibootmgr ?? "").map(show);
    const b = efiDiskEntries(restored.efibootmgr ?? "").map(show);
    if (a.length === 0) problems.push("efibootmgr: the source reported no disk boot entry");
    if (a.join("\n") !== b.join("\n"))
      problems.push(
        `efibootmgr entries (in boot order) differ:\n    source:   ${a.join("; ")}\n    restored: ${b.join("; ")}`,
      );
  }
  const sourceManifest = parseManifest(source.manifest);
  const manifest = compareManifests(sourceManifest, parseManifest(restored.manifest), context);
  if (sourceManifest.size === 0) problems.push("the source's file manifest is empty");
  if (manifest.unexpected.length > 0) {
    const shown = manifest.unexpected.slice(0, 40);
    problems.push(
      `${manifest.unexpected.length} of ${manifest.compared} manifest entries differ:${shown
        .map((l) => `\n    ${l}`)
        .join("")}${manifest.unexpected.length > shown.length ? "\n    ..." : ""}`,
    );
  }
  return { problems, expected: manifest.expected, manifestEntries: manifest.compared };
}
