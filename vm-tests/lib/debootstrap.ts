// Real Debian 12 root filesystems for test VMs, built with debootstrap from the mirror apt
// is configured with and cached as a tarball keyed by what went in.
//
// Two stages: debootstrap --variant=minbase, then apt-get install of the caller's packages
// inside the chroot. The second stage runs behind a policy-rc.d that forbids starting
// services and with debconf non-interactive, so postinst scripts (mdadm, cryptsetup, the
// kernel's initramfs hook) can't start daemons on the host or wait for answers.

import { createHash } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, renameSync } from "node:fs";
import { rmSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { environmentError } from "../../common/errors.ts";
import { findTool, missingToolError, runTool } from "../../common/exec.ts";
import { mountPointsBelow } from "../../common/fs.ts";
import { debianMirror } from "./apt.ts";
import { CACHE_DIR } from "./debian-kernel.ts";

export interface RootfsOptions {
  /** Packages installed on top of minbase. */
  packages: readonly string[];
  suite?: string;
  /** By default the mirror apt uses for the suite (read from /etc/apt at run time). */
  mirror?: string;
  cacheDir?: string;
  /** Progress lines; the full build log goes to a file next to the tarball. */
  log?: (line: string) => void;
}

export interface Rootfs {
  /** A zstd-compressed tar of the whole tree (numeric owners, xattrs kept). */
  tarball: string;
  /** The cache key: sha256 of the recipe, suite, mirror and sorted package list. */
  key: string;
  size: number;
  /** Whether this call built it (false: it came from the cache). */
  built: boolean;
}

/** Bump when the build steps change, so old tarballs are not reused. */
const RECIPE = "minbase+apt-get/1";

export function rootfsKey(suite: string, mirror: string, packages: readonly string[]): string {
  const sorted = [...new Set(packages)].sort();
  return createHash("sha256")
    .update(JSON.stringify({ recipe: RECIPE, suite, mirror, packages: sorted }))
    .digest("hex");
}

export async function ensureDebianRootfs(options: RootfsOptions): Promise<Rootfs> {
  const suite = options.suite ?? "bookworm";
  const mirror = options.mirror ?? debianMirror(suite);
  const cacheDir = options.cacheDir ?? path.join(CACHE_DIR, "debootstrap");
  const key = rootfsKey(suite, mirror, options.packages);
  const tarball = path.join(cacheDir, `${key}.tar.zst`);
  if (existsSync(tarball)) return { tarball, key, size: statSync(tarball).size, built: false };

  for (const tool of ["debootstrap", "chroot", "mount", "umount", "tar", "zstd"]) {
    if (findTool(tool) === undefined)
      throw missingToolError(tool, "building a Debian rootfs needs it");
  }
  if (process.getuid?.() !== 0) {
    throw environmentError("LB_NOT_ROOT", "debootstrap needs root.", "Run this as root.");
  }
  mkdirSync(cacheDir, { recursive: true });
  const staging = await mkdtemp(path.join(cacheDir, `.tmp-${key.slice(0, 12)}-`));
  const root = path.join(staging, "root");
  const logFile = path.join(cacheDir, `${key}.log`);
  const log = createWriteStream(logFile);
  const say = options.log ?? (() => {});
  const mounts: string[] = [];
  try {
    say(`debootstrap ${suite} (minbase), log in ${logFile}`);
    await logged(log, "debootstrap", ["--variant=minbase", suite, root, mirror]);

    // Stage two: the caller's packages, with services and questions turned off.
    writeFileSync(path.join(root, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", {
      mode: 0o755,
    });
    const aptConf = path.join(root, "etc/apt/apt.conf.d/99lifeboat-build");
    // Snapshot mirrors serve Release files past their Valid-Until date.
    writeFileSync(
      aptConf,
      'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n',
    );
    for (const [type, source, target, extra] of [
      ["proc", "proc", "proc", []],
      ["sysfs", "sysfs", "sys", []],
      [undefined, "/dev", "dev", ["--bind"]],
      [undefined, "/dev/pts", "dev/pts", ["--bind"]],
    ] as const) {
      const where = path.join(root, target);
      mkdirSync(where, { recursive: true });
      await runTool(["mount", ...(type ? ["-t", type] : []), ...extra, source, where]);
      mounts.push(where);
    }
    const env = {
      DEBIAN_FRONTEND: "noninteractive",
      DEBCONF_NONINTERACTIVE_SEEN: "true",
      LC_ALL: "C",
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    };
    say(`apt-get install ${options.packages.length} packages in the chroot`);
    await logged(log, "chroot", [root, "apt-get", "update", "-q"], env);
    await logged(
      log,
      "chroot",
      [root, "apt-get", "install", "-y", "-q", "--no-install-recommends", ...options.packages],
      env,
    );
    await logged(log, "chroot", [root, "apt-get", "clean"], env);
    await unmountAll(mounts);
    rmSync(path.join(root, "usr/sbin/policy-rc.d"));
    rmSync(aptConf);
    rmSync(path.join(root, "var/lib/apt/lists"), { recursive: true, force: true });
    mkdirSync(path.join(root, "var/lib/apt/lists/partial"), { recursive: true });

    say("packing the tree");
    const tmp = path.join(staging, "rootfs.tar.zst");
    await runTool([
      "bash",
      "-c",
      'set -o pipefail; tar --numeric-owner --xattrs --xattrs-include="*" -C "$1" -cf - . | zstd -q -T0 -12 -o "$2"',
      "pack",
      root,
      tmp,
    ]);
    renameSync(tmp, tarball); // atomic: a concurrent builder's rename just replaces it
    return { tarball, key, size: statSync(tarball).size, built: true };
  } finally {
    log.end();
    await unmountAll(mounts);
    removeUnlessMounted(staging);
  }
}

/**
 * The rootfs as a plain tar next to the compressed one (same key): VMs read it from a raw
 * disk, because decompressing zstd under TCG is slower than the guest's disk writes.
 */
export async function ensureUncompressedTar(rootfs: Rootfs): Promise<string> {
  const tar = rootfs.tarball.replace(/\.zst$/, "");
  if (!existsSync(tar)) {
    const tmp = `${tar}.tmp-${process.pid}`;
    try {
      await runTool(["zstd", "-q", "-d", "-f", rootfs.tarball, "-o", tmp]);
      renameSync(tmp, tar);
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  return tar;
}

async function logged(
  log: NodeJS.WritableStream,
  file: string,
  args: readonly string[],
  env?: Record<string, string>,
) {
  log.write(`\n$ ${file} ${args.join(" ")}\n`);
  const child = execa(file, args, { all: true, reject: false, env, extendEnv: true });
  child.all?.pipe(log, { end: false });
  const result = await child;
  if (result.exitCode !== 0) {
    const output = String(result.all ?? "")
      .trim()
      .split("\n")
      .slice(-15)
      .join("\n");
    throw environmentError(
      "LB_ROOTFS_BUILD",
      `${file} ${args.slice(0, 4).join(" ")} ... failed with exit code ${result.exitCode}:\n${output}`,
      "Check that the Debian mirror is reachable (apt-get update works).",
    );
  }
}

async function unmountAll(mounts: string[]) {
  while (mounts.length > 0) {
    const where = mounts.pop();
    if (where === undefined) break;
    const result = await runTool(["umount", where], { allowFailure: true });
    if (result.exitCode !== 0) await runTool(["umount", "-l", where], { allowFailure: true });
  }
}

/** Deletes a staging tree, but never while something (a bind-mounted /dev!) is mounted in it. */
function removeUnlessMounted(dir: string) {
  const mounted = mountPointsBelow(dir);
  if (mounted.length > 0) {
    throw environmentError(
      "LB_STILL_MOUNTED",
      `Not deleting ${dir}: ${mounted.join(", ")} still mounted.`,
      "Unmount them by hand, then delete the directory.",
    );
  }
  rmSync(dir, { recursive: true, force: true });
}

if (import.meta.main) {
  const packages = process.argv.slice(2);
  const rootfs = await ensureDebianRootfs({ packages, log: (line) => console.log(line) });
  console.log(JSON.stringify(rootfs, null, 2));
}
