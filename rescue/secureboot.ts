// Secure Boot for the rescue ISO: the UEFI side boots Microsoft-signed shim, which loads
// Debian's signed GRUB (the CD image, with its modules built in), which boots the kernel
// only if it is signed (Debian's are). The same ISO boots with Secure Boot off too, so
// when the signed files are there they are always used.
//
// grub-mkrescue makes the BIOS side, the hybrid MBR/GPT and the ISO; we only swap the FAT
// image it boots UEFI from (efi.img in its staging tree) for one with shim and the signed
// GRUB, through its --xorriso hook, before xorriso writes the ISO (so the GPT's ESP entry
// gets the new image's size). Debian's signed GRUB finds its configuration by searching
// for /.disk/info and reading /boot/grub/grub.cfg from that filesystem.

import { existsSync } from "node:fs";
import path from "node:path";
import { runTool } from "../common/exec.ts";

export interface SignedBootFiles {
  /** shimx64.efi.signed: the first stage, signed by Microsoft's UEFI CA. */
  shim: string;
  /** gcdx64.efi.signed: Debian's signed GRUB for CD/USB media. */
  grub: string;
  /** mmx64.efi.signed: MokManager, which shim starts when asked to enrol a key. */
  mokManager: string | null;
}

/** Where Debian's shim-signed, shim-helpers-amd64-signed and grub-efi-amd64-signed put them. */
export const SIGNED_BOOT_PATHS = {
  shim: "usr/lib/shim/shimx64.efi.signed",
  mokManager: "usr/lib/shim/mmx64.efi.signed",
  grub: "usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
} as const;

/** The signed files under `root` (the host's / by default), or null if any essential is missing. */
export function locateSignedBootFiles(root = "/"): SignedBootFiles | null {
  const at = (relative: string) => path.join(root, relative);
  if (!existsSync(at(SIGNED_BOOT_PATHS.shim)) || !existsSync(at(SIGNED_BOOT_PATHS.grub))) {
    return null;
  }
  return {
    shim: at(SIGNED_BOOT_PATHS.shim),
    grub: at(SIGNED_BOOT_PATHS.grub),
    mokManager: existsSync(at(SIGNED_BOOT_PATHS.mokManager))
      ? at(SIGNED_BOOT_PATHS.mokManager)
      : null,
  };
}

/** A FAT image with shim as the removable-media loader and the signed GRUB beside it. */
export async function buildSignedEfiImage(files: SignedBootFiles, out: string) {
  // 8 MiB holds shim (~1 MiB), GRUB (~4 MiB) and MokManager (~1 MiB) with room to spare.
  await runTool(["mkfs.vfat", "-n", "LIFEBOATESP", "-C", out, "8192"]);
  await runTool(["mmd", "-i", out, "::/EFI", "::/EFI/BOOT"]);
  await runTool(["mcopy", "-i", out, files.shim, "::/EFI/BOOT/BOOTX64.EFI"]);
  await runTool(["mcopy", "-i", out, files.grub, "::/EFI/BOOT/grubx64.efi"]);
  if (files.mokManager)
    await runTool(["mcopy", "-i", out, files.mokManager, "::/EFI/BOOT/mmx64.efi"]);
}

/**
 * The --xorriso wrapper for grub-mkrescue: copies our EFI image over the one grub-mkrescue
 * staged (the directory after -r) and runs the real xorriso with the same arguments.
 */
export function renderXorrisoHook(efiImage: string, xorriso: string): string {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
# Written by lifeboat rescue build: puts the Secure Boot EFI image in place, then runs xorriso.
staging=""
previous=""
for arg in "$@"; do
  [ "$previous" = "-r" ] && staging=$arg
  previous=$arg
done
if [ -n "$staging" ] && [ -f "$staging/efi.img" ]; then
  cp ${quote(efiImage)} "$staging/efi.img" || exit 1
fi
exec ${quote(xorriso)} "$@"
`;
}
