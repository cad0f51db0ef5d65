// Drift: what changed between a saved layout and the live one, in sentences a sysadmin
// reads ("partition /dev/vda3 grew from 10.0 GiB to 20.0 GiB", "new LV vg0/data").
// Noise is ignored: usage figures, the order of mount options, the capture time, raw tool
// output (device numbers live there), passphrase cost parameters, the ESP's file list,
// network and hardware inventory, and the BOOT_IMAGE= a kernel update changes.

import { formatBytes } from "../common/units.ts";
import { EXT_RUNTIME_FEATURES } from "./parse/ext.ts";
import type { BtrfsFs, Filesystem, Layout, Lv, Partition } from "./schema.ts";

export interface DriftChange {
  /** What the change is about: "partition /dev/vda3", "LV vg0/data", "mount /home". */
  subject: string;
  kind: "added" | "removed" | "changed";
  message: string;
}

type Field<T> = [label: string, get: (item: T) => unknown, format?: (value: unknown) => string];

const size = (v: unknown) => formatBytes(Number(v));
const text = (v: unknown) =>
  v === null || v === undefined ? "none" : typeof v === "string" ? `'${v}'` : JSON.stringify(v);

/** Added, removed and changed items of two lists, matched by key. */
function diffKeyed<T>(
  out: DriftChange[],
  saved: T[],
  live: T[],
  key: (item: T) => string,
  subject: (k: string) => string,
  describe: (item: T) => string,
  fields: Field<T>[],
) {
  const savedBy = new Map(saved.map((i) => [key(i), i]));
  const liveBy = new Map(live.map((i) => [key(i), i]));
  for (const [k, item] of liveBy) {
    if (!savedBy.has(k))
      out.push({
        subject: subject(k),
        kind: "added",
        message: `new ${subject(k)}${describe(item)}`,
      });
  }
  for (const [k, before] of savedBy) {
    const after = liveBy.get(k);
    if (!after) {
      out.push({ subject: subject(k), kind: "removed", message: `${subject(k)} was removed` });
      continue;
    }
    for (const [label, get, format] of fields) {
      const a = get(before);
      const b = get(after);
      if (JSON.stringify(a) === JSON.stringify(b)) continue;
      out.push({
        subject: subject(k),
        kind: "changed",
        message: changeMessage(subject(k), label, a, b, format),
      });
    }
  }
}

function changeMessage(
  subject: string,
  label: string,
  a: unknown,
  b: unknown,
  format = text,
): string {
  if (label === "size" && typeof a === "number" && typeof b === "number") {
    return `${subject} ${b > a ? "grew" : "shrank"} from ${size(a)} to ${size(b)}`;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const added = b.filter((x) => !a.includes(x)).map((x) => `+${String(x)}`);
    const removed = a.filter((x) => !b.includes(x)).map((x) => `-${String(x)}`);
    return `${subject}: ${label} changed: ${[...added, ...removed].join(" ")}`;
  }
  return `${subject}: ${label} changed from ${format(a)} to ${format(b)}`;
}

const sorted = (values: readonly string[]) => [...values].sort();

export function compareLayouts(saved: Layout, live: Layout): DriftChange[] {
  const out: DriftChange[] = [];
  if (saved.host.hostname !== live.host.hostname) {
    out.push({
      subject: "host",
      kind: "changed",
      message: `hostname changed from '${saved.host.hostname}' to '${live.host.hostname}'`,
    });
  }

  diffKeyed(
    out,
    saved.disks,
    live.disks,
    (d) => d.device,
    (k) => `disk ${k}`,
    (d) => ` (${size(d.sizeBytes)})`,
    [
      ["size", (d) => d.sizeBytes, size],
      ["serial", (d) => d.serial],
      ["logical sector size", (d) => d.logicalSectorSize],
      ["partition table", (d) => d.partitionTable?.type ?? null],
      ["partition table id", (d) => d.partitionTable?.id ?? null],
    ],
  );

  const partitions = (l: Layout) =>
    [...l.disks, ...l.md].flatMap((d) => d.partitionTable?.partitions ?? []);
  diffKeyed<Partition>(
    out,
    partitions(saved),
    partitions(live),
    (p) => p.device,
    (k) => `partition ${k}`,
    (p) => ` (${size(p.sizeBytes)})`,
    [
      ["size", (p) => p.sizeBytes, size],
      ["start", (p) => p.startBytes, size],
      ["type", (p) => p.type],
      ["PARTUUID", (p) => p.partUuid],
      ["name", (p) => p.name],
      ["attributes", (p) => p.attrs],
      ["boot flag", (p) => p.bootable],
    ],
  );

  diffKeyed(
    out,
    saved.md,
    live.md,
    (a) => a.device,
    (k) => `md array ${k}`,
    (a) => ` (${a.level})`,
    [
      ["level", (a) => a.level],
      ["UUID", (a) => a.uuid],
      ["metadata", (a) => a.metadata],
      ["members", (a) => sorted(a.members.map((m) => m.device))],
      ["chunk size", (a) => a.chunkSizeBytes],
      ["bitmap", (a) => a.bitmap],
    ],
  );

  diffKeyed(
    out,
    saved.luks,
    live.luks,
    (l) => l.device,
    (k) => `LUKS device ${k}`,
    (l) => ` (LUKS${l.version})`,
    [
      ["version", (l) => l.version],
      ["UUID", (l) => l.uuid],
      ["label", (l) => l.label],
      ["cipher", (l) => l.cipher],
      ["key size", (l) => l.keySizeBits],
    ],
  );

  diffKeyed(
    out,
    saved.lvm.pvs,
    live.lvm.pvs,
    (p) => p.device,
    (k) => `PV ${k}`,
    (p) => (p.vg ? ` in VG ${p.vg}` : ""),
    [
      ["UUID", (p) => p.uuid],
      ["VG", (p) => p.vg],
    ],
  );
  diffKeyed(
    out,
    saved.lvm.vgs,
    live.lvm.vgs,
    (v) => v.name,
    (k) => `VG ${k}`,
    (v) => ` (${size(v.sizeBytes)})`,
    [
      ["extent size", (v) => v.extentSizeBytes, size],
      ["PVs", (v) => sorted(v.pvs)],
    ],
  );
  const lvs = (l: Layout) => l.lvm.vgs.flatMap((v) => v.lvs.filter((lv) => !lv.hidden));
  diffKeyed<Lv>(
    out,
    lvs(saved),
    lvs(live),
    (lv) => `${lv.vg}/${lv.name}`,
    (k) => `LV ${k}`,
    (lv) => ` (${lv.role}, ${size(lv.sizeBytes)})`,
    [
      ["size", (lv) => lv.sizeBytes, size],
      ["role", (lv) => lv.role],
      ["segment types", (lv) => lv.segments.map((s) => s.type)],
      ["stripes", (lv) => lv.segments[0]?.stripes ?? null],
    ],
  );

  diffKeyed<Filesystem>(
    out,
    saved.filesystems,
    live.filesystems,
    (f) => f.device,
    (k) => `filesystem on ${k}`,
    (f) => ` (${f.type === "other" ? f.fsType : f.type})`,
    [
      ["type", (f) => (f.type === "other" ? f.fsType : f.type)],
      ["UUID", (f) => f.uuid],
      ["label", (f) => f.label],
      ["size", filesystemBytes, size],
      ["features", extFeatures],
    ],
  );
  compareBtrfs(out, saved, live);

  diffKeyed(
    out,
    saved.swapFiles,
    live.swapFiles,
    (s) => s.path,
    (k) => `swap file ${k}`,
    (s) => ` (${size(s.sizeBytes)})`,
    [
      ["size", (s) => s.sizeBytes, size],
      ["UUID", (s) => s.uuid],
    ],
  );

  diffKeyed(
    out,
    saved.mounts.entries,
    live.mounts.entries,
    (m) => m.target,
    (k) => `mount ${k}`,
    (m) => ` (${m.source}, ${m.fsType})`,
    [
      ["device", (m) => m.source],
      ["type", (m) => m.fsType],
      ["subtree", (m) => m.fsRoot],
      ["options", (m) => sorted(m.options)],
    ],
  );

  compareBoot(out, saved, live);
  for (const name of ["fstab", "crypttab", "mdadmConf"] as const) {
    compareText(
      out,
      name === "mdadmConf" ? "mdadm.conf" : name,
      saved.configFiles[name],
      live.configFiles[name],
    );
  }
  return out;
}

/**
 * btrfs subvolumes and profiles can only be read from a mounted filesystem. When one side
 * was not mounted, say so once instead of reporting every subvolume as gone.
 */
function compareBtrfs(out: DriftChange[], saved: Layout, live: Layout) {
  const btrfs = (l: Layout) => l.filesystems.filter((f): f is BtrfsFs => f.type === "btrfs");
  const liveBy = new Map(btrfs(live).map((f) => [f.device, f]));
  for (const before of btrfs(saved)) {
    const after = liveBy.get(before.device);
    if (!after) continue;
    const subject = `filesystem on ${before.device}`;
    const known = (f: BtrfsFs) => f.dataProfile !== null;
    if (known(before) !== known(after)) {
      const which = known(before) ? "now" : "when the saved layout was captured";
      out.push({
        subject,
        kind: "changed",
        message: `${subject}: btrfs was not mounted ${which}, so its subvolumes can't be compared`,
      });
      continue;
    }
    const fields: [string, (f: BtrfsFs) => unknown][] = [
      ["subvolumes", (f) => sorted(f.subvolumes.map((s) => s.path))],
      ["default subvolume", (f) => f.defaultSubvolume.path || "top level"],
      ["data profile", (f) => f.dataProfile],
      ["metadata profile", (f) => f.metadataProfile],
    ];
    for (const [label, get] of fields) {
      const a = get(before);
      const b = get(after);
      if (JSON.stringify(a) !== JSON.stringify(b))
        out.push({ subject, kind: "changed", message: changeMessage(subject, label, a, b) });
    }
  }
}

/** How an ext filesystem was made; features that only say it is mounted are left out. */
function extFeatures(fs: Filesystem): string[] {
  if (fs.type !== "ext2" && fs.type !== "ext3" && fs.type !== "ext4") return [];
  return sorted(fs.features.filter((f) => !EXT_RUNTIME_FEATURES.has(f)));
}

/** A filesystem's own size where the tools report it (it can differ from its device's). */
function filesystemBytes(fs: Filesystem): number | null {
  if (fs.type === "ext2" || fs.type === "ext3" || fs.type === "ext4")
    return fs.blockCount * fs.blockSize;
  if (fs.type === "xfs") return fs.geometry.dataBlocks * fs.geometry.blockSize;
  return null;
}

function compareBoot(out: DriftChange[], saved: Layout, live: Layout) {
  const a = saved.boot;
  const b = live.boot;
  const change = (message: string) => out.push({ subject: "boot", kind: "changed", message });
  if (a.firmware !== b.firmware) change(`firmware changed from ${a.firmware} to ${b.firmware}`);
  if (a.secureBoot !== b.secureBoot)
    change(`Secure Boot changed from ${a.secureBoot ?? "n/a"} to ${b.secureBoot ?? "n/a"}`);
  const grubA = sorted(a.grubBiosDisks);
  const grubB = sorted(b.grubBiosDisks);
  if (JSON.stringify(grubA) !== JSON.stringify(grubB)) {
    change(
      `GRUB boot code is now on ${grubB.join(", ") || "no disk"} (was ${grubA.join(", ") || "no disk"})`,
    );
  }
  const esp = (l: Layout) => sorted(l.boot.esp?.devices ?? []);
  if (JSON.stringify(esp(saved)) !== JSON.stringify(esp(live))) {
    change(
      `EFI system partition is now ${esp(live).join(", ") || "none"} (was ${esp(saved).join(", ") || "none"})`,
    );
  }
  const entries = (l: Layout) => {
    const efi = l.boot.efi;
    if (!efi) return [];
    return efi.bootOrder.map((n) => {
      const e = efi.entries.find((x) => x.number === n);
      return e ? `${e.label}${e.loader ? ` (${e.loader})` : ""}` : n;
    });
  };
  if (JSON.stringify(entries(saved)) !== JSON.stringify(entries(live))) {
    change(
      `UEFI boot order changed from [${entries(saved).join(", ")}] to [${entries(live).join(", ")}]`,
    );
  }
  const cmdline = (s: string) =>
    s
      .split(/\s+/)
      .filter((w) => w && !w.startsWith("BOOT_IMAGE="))
      .join(" ");
  if (cmdline(a.kernelCmdline) !== cmdline(b.kernelCmdline)) {
    change(
      `kernel command line changed from '${cmdline(a.kernelCmdline)}' to '${cmdline(b.kernelCmdline)}'`,
    );
  }
  if (a.initramfsTool !== b.initramfsTool)
    change(`initramfs tool changed from ${a.initramfsTool} to ${b.initramfsTool}`);
}

function compareText(
  out: DriftChange[],
  name: string,
  before: string | null,
  after: string | null,
) {
  if (before === after) return;
  const lines = (t: string | null) =>
    (t ?? "")
      .split("\n")
      .map((l) => l.trim().replace(/\s+/g, " "))
      .filter((l) => l && !l.startsWith("#"));
  const a = lines(before);
  const b = lines(after);
  const added = b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`);
  const removed = a.filter((l) => !b.includes(l)).map((l) => `- ${l}`);
  if (added.length === 0 && removed.length === 0) return;
  out.push({
    subject: name,
    kind: "changed",
    message: `${name} changed:\n    ${[...removed, ...added].join("\n    ")}`,
  });
}
