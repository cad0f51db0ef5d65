// Debian's signed shim and GRUB for Secure Boot tests, unpacked from their packages (this
// machine doesn't install them: their scripts would try to set up a bootloader on the
// host). Cached under .cache/secureboot/<versions>/ like the kernel.

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { environmentError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import { locateSignedBootFiles, type SignedBootFiles } from "../../rescue/secureboot.ts";
import { CACHE_DIR } from "./debian-kernel.ts";

export const SIGNED_BOOT_PACKAGES = [
  "shim-signed",
  "shim-helpers-amd64-signed",
  "grub-efi-amd64-signed",
] as const;

/** The unpacked root (pass it as signedBootRoot) and the files in it. */
export async function ensureSignedBootFiles(
  cacheDir = path.join(CACHE_DIR, "secureboot"),
): Promise<{ root: string; files: SignedBootFiles }> {
  const versions: string[] = [];
  for (const name of SIGNED_BOOT_PACKAGES) {
    const policy = await runTool(["apt-cache", "show", "--no-all-versions", name]);
    const version = /^Version: (.+)$/m.exec(policy.stdout)?.[1];
    if (!version) {
      throw environmentError(
        "LB_SIGNED_BOOT_UNKNOWN",
        `apt knows no package ${name}.`,
        "Run apt-get update.",
      );
    }
    versions.push(`${name}=${version}`);
  }
  const key = versions.join(" ").replace(/[^A-Za-z0-9.+=-]+/g, "_");
  const root = path.join(cacheDir, key);
  if (!existsSync(path.join(root, ".complete"))) {
    mkdirSync(cacheDir, { recursive: true });
    const staging = await mkdtemp(path.join(cacheDir, ".tmp-"));
    try {
      const download = await execa("apt-get", ["download", ...versions], {
        cwd: staging,
        reject: false,
        env: { LC_ALL: "C" },
      });
      if (download.exitCode !== 0) {
        throw environmentError(
          "LB_SIGNED_BOOT_DOWNLOAD",
          `apt-get download ${versions.join(" ")} failed: ${String(download.stderr).trim()}`,
          "Run apt-get update; the package lists may be older than the mirror.",
        );
      }
      const tree = path.join(staging, "root");
      for (const deb of readdirSync(staging).filter((f) => f.endsWith(".deb"))) {
        await runTool(["dpkg", "-x", path.join(staging, deb), tree]);
      }
      writeFileSync(path.join(tree, ".complete"), `${versions.join("\n")}\n`);
      rmSync(root, { recursive: true, force: true });
      renameSync(tree, root);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  const files = locateSignedBootFiles(root);
  if (!files) {
    throw environmentError(
      "LB_SIGNED_BOOT_INCOMPLETE",
      `The unpacked packages in ${root} lack shim or the signed GRUB.`,
      `Delete ${root} and run again.`,
    );
  }
  return { root, files };
}
