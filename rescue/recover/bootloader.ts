// What it takes to make the recovered disks boot as the captured machine did: GRUB's boot
// code on every BIOS disk that had it (each member of a RAID1 included), or GRUB on the ESP
// under its own name plus the removable fallback path, and the firmware's boot entries
// rebuilt in the captured order. Pure: the recovery engine runs the commands.
//
// grub-install runs inside the restored system (chroot), so the GRUB modules it writes
// match the grub.cfg and the GRUB version of that system. efibootmgr runs in the rescue
// system, which has the machine's EFI variables mounted.

import { inputError } from "../../common/errors.ts";
import type { Plan } from "../../layouts/plan/types.ts";
import type { Layout } from "../../layouts/schema.ts";

export interface BootCommand {
  title: string;
  argv: string[];
  /** Run inside the restored system (chroot into the target root). */
  chroot: boolean;
}

export interface BootPlan {
  firmware: "bios" | "uefi";
  commands: BootCommand[];
  /** The boot order to set after the entries exist: labels + loaders, captured order. */
  efiEntries: EfiEntryPlan[];
}

export interface EfiEntryPlan {
  label: string;
  /** The loader as efibootmgr takes it: \EFI\debian\shimx64.efi */
  loader: string;
  disk: string;
  partition: number;
}

/** The directory name under EFI/ the captured loader lived in ("debian"). */
export function bootloaderId(loader: string | null): string | null {
  const match = /^\\EFI\\([^\\]+)\\[^\\]+$/i.exec(loader ?? "");
  const id = match?.[1];
  if (!id || id.toUpperCase() === "BOOT") return null;
  return id;
}

/** Whether the machine booted through shim (Secure Boot capable) rather than GRUB directly. */
export function usesShim(layout: Layout): boolean {
  if (layout.boot.secureBoot === "enabled") return true;
  const current = layout.boot.efi?.entries.find((e) => e.number === layout.boot.efi?.bootCurrent);
  return /shim/i.test(current?.loader ?? "");
}

/** Where each captured partition (by PARTUUID) now lives: disk + partition number. */
function partitionsByUuid(layout: Layout, plan: Plan) {
  const out = new Map<string, { disk: string; partition: number }>();
  for (const disk of layout.disks) {
    const target = plan.disks.find((d) => d.from === disk.device)?.to;
    if (!target) continue;
    for (const part of disk.partitionTable?.partitions ?? []) {
      if (part.partUuid)
        out.set(part.partUuid.toUpperCase(), { disk: target, partition: part.number });
    }
  }
  return out;
}

export function planBootloader(layout: Layout, plan: Plan): BootPlan {
  const boot = layout.boot;
  if (boot.firmware === "bios") {
    const disks = boot.grubBiosDisks.map((disk) => {
      const to = plan.disks.find((d) => d.from === disk)?.to;
      if (!to) {
        throw inputError(
          "LB_RECOVER_BOOT_DISK",
          `GRUB was on ${disk}, and the plan puts no disk in its place.`,
          `Map it with --map ${disk}=/dev/NEW, or capture the layout with all disks.`,
        );
      }
      return to;
    });
    if (disks.length === 0) {
      throw inputError(
        "LB_RECOVER_NO_BOOTLOADER",
        "The layout says the machine booted BIOS, but records no disk with GRUB's boot code.",
        "Capture the layout again on the running machine (lifeboat layout capture), with GRUB installed.",
      );
    }
    return {
      firmware: "bios",
      efiEntries: [],
      commands: disks.map((disk) => ({
        title: `Install GRUB (BIOS) on ${disk}`,
        argv: ["grub-install", "--target=i386-pc", disk],
        chroot: true,
      })),
    };
  }

  const espMount = boot.esp?.mountPoint;
  if (!boot.esp || !espMount) {
    throw inputError(
      "LB_RECOVER_NO_ESP",
      "The layout says the machine booted UEFI, but records no mounted EFI system partition.",
      "Capture the layout again with the ESP mounted (usually on /boot/efi).",
    );
  }
  const current = boot.efi?.entries.find((e) => e.number === boot.efi?.bootCurrent);
  const id =
    bootloaderId(current?.loader ?? null) ??
    boot.efi?.entries.map((e) => bootloaderId(e.loader)).find((x) => x !== null) ??
    "debian";
  const shim = usesShim(layout);
  const secure = shim ? "--uefi-secure-boot" : "--no-uefi-secure-boot";
  const base = ["grub-install", "--target=x86_64-efi", `--efi-directory=${espMount}`, "--no-nvram"];
  const commands: BootCommand[] = [
    {
      title: `Install GRUB (UEFI) on the ESP as EFI/${id}`,
      argv: [...base, `--bootloader-id=${id}`, secure],
      chroot: true,
    },
    {
      title: "Install GRUB on the removable fallback path EFI/BOOT/BOOTX64.EFI",
      argv: [...base, "--removable", secure],
      chroot: true,
    },
  ];

  // Rebuild the entries that pointed at a partition of the recovered disks, in the captured
  // boot order. Firmware entries (UiApp, PXE, shells) belong to the firmware, not the layout.
  const parts = partitionsByUuid(layout, plan);
  const order = boot.efi?.bootOrder ?? [];
  const entries = [...(boot.efi?.entries ?? [])]
    .filter((e) => e.partUuid && e.loader && parts.has(e.partUuid.toUpperCase()))
    .sort((a, b) => rank(order, a.number) - rank(order, b.number));
  const efiEntries = entries.map((e) => ({
    label: e.label,
    loader: e.loader!,
    ...parts.get(e.partUuid!.toUpperCase())!,
  }));
  if (efiEntries.length === 0) {
    // Nothing was captured (or it pointed elsewhere): one entry per ESP device, for GRUB.
    for (const device of boot.esp.devices) {
      const part = layout.disks
        .flatMap((d) => (d.partitionTable?.partitions ?? []).map((p) => ({ d, p })))
        .find(({ p }) => p.device === device);
      const disk = part && plan.disks.find((d) => d.from === part.d.device)?.to;
      if (part && disk) {
        efiEntries.push({
          label: id,
          loader: `\\EFI\\${id}\\${shim ? "shimx64.efi" : "grubx64.efi"}`,
          disk,
          partition: part.p.number,
        });
      }
    }
  }
  return { firmware: "uefi", commands, efiEntries };
}

function rank(order: string[], number: string): number {
  const index = order.indexOf(number);
  return index < 0 ? order.length : index;
}

/** One row of `efibootmgr` output that matters here: the entry's number, label and loader. */
export interface EfiVariableEntry {
  number: string;
  label: string;
  loader: string | null;
}

/**
 * The efibootmgr calls that make the firmware's entries match the plan: delete entries with
 * a planned label (so reruns don't pile up duplicates), create the planned ones, and put
 * them first in BootOrder, keeping the firmware's own entries after them.
 */
export function efibootmgrDeletes(
  existing: EfiVariableEntry[],
  planned: EfiEntryPlan[],
): string[][] {
  const labels = new Set(planned.map((p) => p.label));
  return existing
    .filter((e) => labels.has(e.label))
    .map((e) => ["efibootmgr", "--quiet", "--bootnum", e.number, "--delete-bootnum"]);
}

export function efibootmgrCreate(entry: EfiEntryPlan): string[] {
  return [
    "efibootmgr",
    "--quiet",
    "--create",
    "--disk",
    entry.disk,
    "--part",
    String(entry.partition),
    "--label",
    entry.label,
    "--loader",
    entry.loader,
  ];
}

export function bootOrder(created: string[], existingOrder: string[]): string[] {
  return [...created, ...existingOrder.filter((n) => !created.includes(n))];
}
