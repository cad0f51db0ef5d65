// Running system tools. Every tool runs through here so that the locale is fixed
// (LC_ALL=C: we parse machine output, and numbers must not be localised) and a missing
// tool becomes an environment error that names the Debian package to install.

import { execa } from "execa";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { environmentError } from "./errors.ts";

/** Which Debian package provides each tool Lifeboat runs. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  lsblk: "util-linux",
  blkid: "util-linux",
  findmnt: "util-linux",
  unshare: "util-linux",
  wipefs: "util-linux",
  partx: "util-linux",
  mkswap: "util-linux",
  swapon: "util-linux",
  losetup: "mount",
  mount: "mount",
  umount: "mount",
  sfdisk: "fdisk",
  sgdisk: "gdisk",
  lvm: "lvm2",
  mdadm: "mdadm",
  cryptsetup: "cryptsetup-bin",
  efibootmgr: "efibootmgr",
  xfs_info: "xfsprogs",
  "mkfs.xfs": "xfsprogs",
  xfs_admin: "xfsprogs",
  btrfs: "btrfs-progs",
  "mkfs.btrfs": "btrfs-progs",
  dumpe2fs: "e2fsprogs",
  "mkfs.ext2": "e2fsprogs",
  "mkfs.ext3": "e2fsprogs",
  "mkfs.ext4": "e2fsprogs",
  tune2fs: "e2fsprogs",
  "mkfs.vfat": "dosfstools",
  ip: "iproute2",
  tar: "tar",
  mkfifo: "coreutils",
  zstd: "zstd",
  cpio: "cpio",
  depmod: "kmod",
  modprobe: "kmod",
  busybox: "busybox-static",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  xorriso: "xorriso",
  "grub-mkrescue": "grub-common",
  debootstrap: "debootstrap",
  socat: "socat",
  mformat: "mtools",
  mcopy: "mtools",
};

export function packageFor(tool: string): string {
  return TOOL_PACKAGES[path.basename(tool)] ?? "the package that provides it";
}

export function missingToolError(tool: string, why?: string) {
  const pkg = packageFor(tool);
  return environmentError(
    "LB_TOOL_MISSING",
    `${tool} is not installed${why ? `, and ${why}` : ""}.`,
    `Install it: apt-get install ${pkg}`,
  );
}

const SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The tool's full path, or undefined when it is not installed. */
export function findTool(tool: string): string | undefined {
  if (tool.includes("/")) return isExecutable(tool) ? tool : undefined;
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SEARCH_PATH];
  for (const dir of dirs) {
    const candidate = path.join(dir, tool);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunToolOptions {
  input?: string;
  /** Return the result instead of throwing when the tool exits non-zero. */
  allowFailure?: boolean;
  timeoutMs?: number;
  /** Extra environment on top of LC_ALL=C. */
  env?: Record<string, string>;
}

export async function runTool(argv: readonly string[], options: RunToolOptions = {}) {
  const [tool, ...args] = argv;
  if (tool === undefined) throw new Error("runTool needs a command");
  const file = findTool(tool);
  if (file === undefined) throw missingToolError(tool);
  const result = await execa(file, args, {
    input: options.input,
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeoutMs,
    env: { LC_ALL: "C", LANG: "C", ...options.env },
    extendEnv: true,
  });
  const outcome: ToolResult = {
    exitCode: result.exitCode ?? (result.timedOut ? 124 : 128),
    stdout: String(result.stdout ?? ""),
    stderr: String(result.stderr ?? ""),
  };
  if (outcome.exitCode !== 0 && !options.allowFailure) {
    const detail = outcome.stderr.trim().split("\n").slice(-3).join(" / ");
    throw environmentError(
      "LB_TOOL_FAILED",
      `${argv.join(" ")} failed with exit code ${outcome.exitCode}${detail ? `: ${detail}` : ""}`,
      result.timedOut
        ? `It was stopped after ${options.timeoutMs} ms. Check that the device responds.`
        : "Run the command by hand to see the full error.",
    );
  }
  return outcome;
}
