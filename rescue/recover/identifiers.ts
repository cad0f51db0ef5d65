// Identifiers that changed between the captured machine and the recovered one, and the
// rewriting of the configuration files that name them.
//
// The planner recreates every UUID, PARTUUID, md and LUKS UUID as captured, so on a normal
// recovery nothing changes. What can change: device paths, when a disk lands on a different
// name (/dev/vda on /dev/nvme0n1), and a UUID the target could not take (a filesystem whose
// UUID was not captured). fstab, crypttab, mdadm.conf and GRUB's files are fixed for both.

export interface IdentifierChange {
  kind: "uuid" | "partuuid" | "device";
  from: string;
  to: string;
}

/** Files in the restored system that name storage, relative to its root. */
export const IDENTIFIER_FILES = [
  "etc/fstab",
  "etc/crypttab",
  "etc/mdadm/mdadm.conf",
  "etc/mdadm.conf",
  "etc/default/grub",
  "etc/initramfs-tools/conf.d/resume",
  "boot/grub/grub.cfg",
  "boot/grub2/grub.cfg",
] as const;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * Replaces every changed identifier in one pass, so that a change a→b followed by b→c
 * never turns a into c. A UUID matches case-insensitively and only as a whole word; a
 * device path only when no name character follows (/dev/vda must not touch /dev/vda2).
 */
export function rewriteIdentifiers(
  text: string,
  changes: readonly IdentifierChange[],
): { text: string; replaced: number } {
  const active = changes.filter((c) => c.from !== c.to && c.from !== "");
  if (active.length === 0) return { text, replaced: 0 };
  const byKey = new Map<string, string>();
  for (const change of active) {
    byKey.set(change.kind === "device" ? change.from : change.from.toLowerCase(), change.to);
  }
  const alternatives = [...active]
    .sort((a, b) => b.from.length - a.from.length)
    .map((change) =>
      change.kind === "device"
        ? `${escape(change.from)}(?![A-Za-z0-9])`
        : `(?<![A-Za-z0-9-])${escape(change.from)}(?![A-Za-z0-9-])`,
    );
  const pattern = new RegExp(alternatives.join("|"), "gi");
  let replaced = 0;
  const out = text.replace(pattern, (match) => {
    const to = byKey.get(match) ?? byKey.get(match.toLowerCase());
    if (to === undefined) return match;
    replaced++;
    return to;
  });
  return { text: out, replaced };
}

/** Device path changes from the plan's device map (captured path -> path on this machine). */
export function deviceChanges(deviceMap: Record<string, string>): IdentifierChange[] {
  return Object.entries(deviceMap)
    .filter(([from, to]) => from !== to && from.startsWith("/dev/") && to.startsWith("/dev/"))
    .map(([from, to]) => ({ kind: "device" as const, from, to }));
}

/**
 * Storage drivers the restored initramfs needs: a disk whose name family changed (virtio
 * vdX, SCSI/SATA sdX, NVMe nvmeXnY, xvdX, mmcblkX) may need a driver the old one lacked,
 * since Debian's initramfs-tools with MODULES=dep only packs the drivers in use.
 */
export function driverFamily(device: string): string {
  const name = device.replace(/^\/dev\//, "");
  if (name.startsWith("nvme")) return "nvme";
  if (name.startsWith("mmcblk")) return "mmc";
  if (name.startsWith("xvd")) return "xen";
  if (name.startsWith("vd")) return "virtio";
  if (name.startsWith("sd") || name.startsWith("hd")) return "scsi";
  return name.replace(/\d+$/, "");
}

export function driversChanged(disks: readonly { from: string; to: string }[]): boolean {
  return disks.some((d) => driverFamily(d.from) !== driverFamily(d.to));
}
