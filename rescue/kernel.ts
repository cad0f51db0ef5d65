// Which kernel the rescue image boots, and the modules that belong to it.
//
// Default: the running kernel, /boot/vmlinuz-$(uname -r) with /lib/modules/$(uname -r).
// --kernel FILE and --modules DIR override them. DIR is the version directory itself
// (/lib/modules/6.1.0-56-cloud-amd64, or the same path inside a package unpacked with
// dpkg -x): its name is the kernel release. The release is checked against the version
// string inside the kernel image, so a kernel never boots with another kernel's modules.

import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { environmentError, inputError } from "../common/errors.ts";

export interface RescueKernel {
  vmlinuz: string;
  /** lib/modules/<version>. */
  modulesDir: string;
  /** The kernel release (uname -r). */
  version: string;
}

/**
 * The release in a bzImage's setup header (the string `uname -r` prints), or undefined when
 * the file is not a bzImage. Linux boot protocol: "HdrS" at 0x202, the pointer to the
 * version string at 0x20E, relative to 0x200.
 */
export function bzImageVersion(header: Uint8Array): string | undefined {
  const buf = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  if (buf.length < 0x210 || buf.toString("latin1", 0x202, 0x206) !== "HdrS") return undefined;
  const offset = buf.readUInt16LE(0x20e) + 0x200;
  if (offset >= buf.length) return undefined;
  const end = buf.indexOf(0, offset);
  const text = buf.toString("latin1", offset, end < 0 ? Math.min(buf.length, offset + 256) : end);
  const release = text.split(" ")[0];
  return release && /^[0-9][\w.+~-]*$/.test(release) ? release : undefined;
}

function readHead(file: string, bytes = 65536): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const KERNEL_HINT =
  "Pass --kernel /path/to/vmlinuz-VERSION --modules /path/to/lib/modules/VERSION (a Debian " +
  "linux-image package unpacked with dpkg -x has both).";

/** Finds and checks the kernel and its module directory. */
export function locateKernel(options: { kernel?: string; modules?: string }): RescueKernel {
  const release = os.release();
  const vmlinuz = path.resolve(options.kernel ?? `/boot/vmlinuz-${release}`);
  const defaulted = options.kernel === undefined;
  if (!existsSync(vmlinuz) || !statSync(vmlinuz).isFile()) {
    throw (defaulted ? environmentError : inputError)(
      "LB_RESCUE_KERNEL_MISSING",
      defaulted
        ? `This machine's kernel ${vmlinuz} does not exist, and the rescue image needs a kernel.`
        : `The kernel ${vmlinuz} does not exist.`,
      KERNEL_HINT,
    );
  }
  const imageVersion = bzImageVersion(readHead(vmlinuz));
  if (imageVersion === undefined) {
    throw inputError(
      "LB_RESCUE_KERNEL_FORMAT",
      `${vmlinuz} is not a Linux kernel image (no bzImage header).`,
      "Give the vmlinuz file from /boot or from the linux-image package.",
    );
  }
  const fromName = /^vmlinuz-(.+)$/.exec(path.basename(vmlinuz))?.[1];
  if (fromName !== undefined && fromName !== imageVersion) {
    throw inputError(
      "LB_RESCUE_KERNEL_VERSION",
      `${vmlinuz} is named for release ${fromName} but holds release ${imageVersion}.`,
      "Give the kernel file that matches its name.",
    );
  }
  const modulesDir = path.resolve(
    options.modules ?? (defaulted ? `/lib/modules/${release}` : `/lib/modules/${imageVersion}`),
  );
  if (!existsSync(modulesDir) || !statSync(modulesDir).isDirectory()) {
    throw (options.modules === undefined ? environmentError : inputError)(
      "LB_RESCUE_MODULES_MISSING",
      `The module directory ${modulesDir} does not exist.`,
      `--modules takes the version directory itself, e.g. /lib/modules/${imageVersion}. ${KERNEL_HINT}`,
    );
  }
  const version = path.basename(modulesDir);
  if (version !== imageVersion) {
    throw inputError(
      "LB_RESCUE_MODULES_VERSION",
      `The modules in ${modulesDir} are for release ${version}, and the kernel ${vmlinuz} is ${imageVersion}.`,
      `--modules takes the version directory itself; give lib/modules/${imageVersion}.`,
    );
  }
  if (!existsSync(path.join(modulesDir, "modules.dep"))) {
    throw inputError(
      "LB_RESCUE_MODULES_NO_DEP",
      `${modulesDir} has no modules.dep (a kernel package unpacked with dpkg -x has none).`,
      `Run depmod for it: depmod -b ROOT ${version} (ROOT is the directory above lib/modules).`,
    );
  }
  return { vmlinuz, modulesDir, version };
}
