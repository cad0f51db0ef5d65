// A Debian 12 cloud kernel for VMs and rescue images, unpacked from its package.
//
// This machine has no kernel under /boot, so the harness takes the real package behind the
// `linux-image-cloud-amd64` metapackage from apt, unpacks it with dpkg -x and runs depmod,
// which `dpkg -x` skips. The result is cached per kernel release under .cache/kernel/.

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { environmentError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import { newestRecord, parseDeb822, relationNames } from "./apt.ts";

export const PROJECT_ROOT = path.resolve(import.meta.dirname, "../..");
export const CACHE_DIR = path.join(PROJECT_ROOT, ".cache");

export interface DebianKernel {
  /** The kernel release, as `uname -r` prints it (e.g. 6.1.0-50-cloud-amd64). */
  version: string;
  /** The Debian package version it came from. */
  packageVersion: string;
  vmlinuz: string;
  /** lib/modules/<version> inside root, with modules.dep. */
  modulesDir: string;
  /** The unpacked package: pass it as `modprobe -d`. */
  root: string;
}

export interface KernelPackage {
  name: string;
  version: string;
  release: string;
}

/**
 * The versioned image package that a metapackage points at, from `apt-cache show` output
 * of the metapackage (all its versions): the newest version's `linux-image-*` dependency.
 */
export function resolveKernelPackage(aptCacheShow: string): KernelPackage {
  const meta = newestRecord(parseDeb822(aptCacheShow));
  const name = relationNames(meta?.Depends).find((dep) => /^linux-image-\d/.test(dep));
  if (meta?.Version === undefined || name === undefined) {
    throw environmentError(
      "LB_KERNEL_UNRESOLVED",
      "apt-cache show gave no linux-image-<release> dependency for the kernel metapackage.",
      "Run apt-get update, then check `apt-cache show linux-image-cloud-amd64`.",
    );
  }
  return { name, version: meta.Version, release: name.replace(/^linux-image-/, "") };
}

/** Ensures the cloud kernel is unpacked under .cache/kernel/<release>/ and returns it. */
export async function ensureDebianKernel(
  metapackage = "linux-image-cloud-amd64",
  cacheDir = path.join(CACHE_DIR, "kernel"),
): Promise<DebianKernel> {
  const show = await runTool(["apt-cache", "show", metapackage]);
  const pkg = resolveKernelPackage(show.stdout);
  const root = path.join(cacheDir, pkg.release);
  const done = path.join(root, ".complete");
  if (!existsSync(done)) {
    mkdirSync(cacheDir, { recursive: true });
    const staging = await mkdtemp(path.join(cacheDir, `.tmp-${pkg.release}-`));
    try {
      // apt-get download writes into the working directory; its own checks verify the hash.
      const download = await execa("apt-get", ["download", `${pkg.name}`], {
        cwd: staging,
        reject: false,
        env: { LC_ALL: "C" },
      });
      if (download.exitCode !== 0) {
        throw environmentError(
          "LB_KERNEL_DOWNLOAD",
          `apt-get download ${pkg.name} failed: ${String(download.stderr).trim()}`,
          "Run apt-get update; the package lists may be older than the mirror.",
        );
      }
      const deb = readdirSync(staging).find((f) => f.endsWith(".deb"));
      if (deb === undefined) throw new Error(`apt-get download left no .deb in ${staging}`);
      const tree = path.join(staging, "root");
      await runTool(["dpkg", "-x", path.join(staging, deb), tree]);
      await runTool(["depmod", "-b", tree, pkg.release]);
      writeFileSync(path.join(tree, ".complete"), `${pkg.name} ${pkg.version}\n`);
      rmSync(root, { recursive: true, force: true });
      renameSync(tree, root);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  const vmlinuz = path.join(root, "boot", `vmlinuz-${pkg.release}`);
  const modulesDir = path.join(root, "lib", "modules", pkg.release);
  if (!existsSync(vmlinuz) || !existsSync(path.join(modulesDir, "modules.dep"))) {
    throw environmentError(
      "LB_KERNEL_INCOMPLETE",
      `The cached kernel in ${root} has no vmlinuz or modules.dep.`,
      `Delete ${root} and run again.`,
    );
  }
  return { version: pkg.release, packageVersion: pkg.version, vmlinuz, modulesDir, root };
}

if (import.meta.main) {
  console.log(JSON.stringify(await ensureDebianKernel(), null, 2));
}
