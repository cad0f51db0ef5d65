// A generic initramfs builder: programs with the shared libraries they need, busybox and
// its applets, kernel modules with their dependencies, extra files and an /init script,
// packed as a newc cpio and compressed with zstd (Debian's kernels unpack zstd initramfs).
//
// The rescue image and the VM harness's builder VMs both use it. Only buildInitramfs()
// touches the disk; the parsers it relies on are pure and exported for tests.
//
// Layout inside the image follows Debian 12 (merged /usr): /bin, /sbin, /lib and /lib64 are
// symlinks into /usr, so programs and libraries keep the paths they have on the host.

import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, renameSync } from "node:fs";
import { rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { environmentError, inputError } from "../common/errors.ts";
import { findTool, missingToolError, runTool } from "../common/exec.ts";

export interface InitramfsProgram {
  /** A host path, or a bare tool name looked up on PATH. */
  source: string;
  /** Where it goes in the image; by default the same path as on the host. */
  dest?: string;
  /**
   * Stored zstd-compressed at `dest` + ".zst", for the init to unpack: the kernel's
   * unpacker then only copies those bytes, and the init can unpack them on another CPU.
   */
  compressed?: boolean;
}

export interface InitramfsFile {
  dest: string;
  /** Copy this host file (symlinks followed)... */
  source?: string;
  /** ...or write this content. */
  content?: string | Uint8Array;
  mode?: number;
}

export interface InitramfsModules {
  /** The directory that holds lib/modules/<version> (what `modprobe -d` takes). */
  root: string;
  version: string;
  /** Module names; dependencies are added and ordered by modprobe. */
  names: readonly string[];
  /**
   * Modules the init loads only after its prompt (MODULE_LOAD_LATER): those, and their
   * dependencies that `names` did not already bring.
   */
  later?: readonly string[];
}

export interface InitramfsSpec {
  /** The .cpio.zst file to write. */
  out: string;
  /** The /init script (executed by the kernel as PID 1). */
  init: string;
  /** The static busybox to install with its applet links, or false for none. */
  busybox?: string | false;
  /** Executables, each copied with the libraries `ldd` names (the ELF interpreter included). */
  programs?: readonly (string | InitramfsProgram)[];
  /** Libraries loaded with dlopen, which ldd can't see (copied with their own dependencies). */
  libraries?: readonly string[];
  modules?: InitramfsModules;
  files?: readonly InitramfsFile[];
  symlinks?: readonly { path: string; target: string }[];
  directories?: readonly string[];
  /** zstd level, 1-19. Higher is smaller and slower to build; unpacking speed hardly changes. */
  compressionLevel?: number;
}

export interface InitramfsResult {
  path: string;
  /** Compressed size in bytes. */
  size: number;
  /** Modules to load, in order (the `later` ones last): `insmod` lines relative to the image root. */
  modules: ModuleLoad[];
  /** Modules that are built into the kernel, so need no loading. */
  builtinModules: string[];
}

export interface ModuleLoad {
  /** Path inside the image, e.g. /lib/modules/6.1.0-50-cloud-amd64/kernel/drivers/md/dm-mod.ko */
  path: string;
  params: string;
  /** In MODULE_LOAD_LATER rather than MODULE_LOAD_ORDER. */
  later: boolean;
}

/** Where the image lists the modules to load, one `path params` per line, in order. */
export const MODULE_LOAD_ORDER = "/etc/modules.load-order";
/** The same, for the modules loaded after the first ones (InitramfsModules.later). */
export const MODULE_LOAD_LATER = "/etc/modules.load-later";

// ---------------------------------------------------------------------------------------
// Pure parsers

export interface LddResult {
  /** Absolute paths of the libraries and the ELF interpreter. */
  libraries: string[];
  /** Sonames ldd could not find. */
  missing: string[];
  /** ldd said the file is static or not an ELF executable at all (e.g. a shell script). */
  notDynamic: boolean;
}

/** Parses `ldd FILE` output (stdout and stderr together). */
export function parseLddOutput(text: string): LddResult {
  const result: LddResult = { libraries: [], missing: [], notDynamic: false };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (/not a dynamic executable|statically linked/.test(line)) {
      result.notDynamic = true;
      continue;
    }
    // libfoo.so.1 => not found
    const missing = /^(\S+)\s+=>\s+not found/.exec(line);
    if (missing?.[1] !== undefined) {
      result.missing.push(missing[1]);
      continue;
    }
    // libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
    const mapped = /^\S+\s+=>\s+(\/\S+)/.exec(line);
    if (mapped?.[1] !== undefined) {
      result.libraries.push(mapped[1]);
      continue;
    }
    // /lib64/ld-linux-x86-64.so.2 (0x...): the ELF interpreter. linux-vdso has no path.
    const direct = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (direct?.[1] !== undefined) result.libraries.push(direct[1]);
  }
  return result;
}

export interface ShowDepends {
  loads: { file: string; params: string }[];
  builtin: string[];
}

/** Parses `modprobe --show-depends MODULE`: `insmod FILE [params]` and `builtin NAME` lines. */
export function parseShowDepends(text: string): ShowDepends {
  const result: ShowDepends = { loads: [], builtin: [] };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const insmod = /^insmod\s+(\S+)\s*(.*)$/.exec(line);
    if (insmod?.[1] !== undefined) {
      result.loads.push({ file: insmod[1], params: (insmod[2] ?? "").trim() });
      continue;
    }
    const builtin = /^builtin\s+(\S+)/.exec(line);
    if (builtin?.[1] !== undefined) result.builtin.push(builtin[1]);
  }
  return result;
}

/** Parses `busybox --list-full` (paths without a leading slash) into absolute paths. */
export function parseBusyboxApplets(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.includes("/"))
    .map((line) => `/${line}`);
}

// ---------------------------------------------------------------------------------------
// The builder

const MERGED_USR_LINKS: readonly [string, string][] = [
  ["bin", "usr/bin"],
  ["sbin", "usr/sbin"],
  ["lib", "usr/lib"],
  ["lib64", "usr/lib64"],
];

const BASE_DIRECTORIES = [
  "usr/bin",
  "usr/sbin",
  "usr/lib",
  "usr/lib64",
  "etc",
  "dev",
  "proc",
  "sys",
  "run",
  "tmp",
  "root",
  "mnt",
  "var",
];

export async function buildInitramfs(spec: InitramfsSpec): Promise<InitramfsResult> {
  for (const tool of ["cpio", "zstd", "find"]) {
    if (findTool(tool) === undefined)
      throw missingToolError(tool, "building an initramfs needs it");
  }
  const outDir = path.dirname(path.resolve(spec.out));
  mkdirSync(outDir, { recursive: true });
  const staging = await mkdtemp(path.join(outDir, ".initramfs-"));
  try {
    const image = new ImageTree(staging);
    for (const dir of BASE_DIRECTORIES) image.mkdir(`/${dir}`);
    for (const [link, target] of MERGED_USR_LINKS) symlinkSync(target, path.join(staging, link));
    for (const dir of spec.directories ?? []) image.mkdir(dir);

    if (spec.busybox !== false) await installBusybox(image, spec.busybox ?? "busybox");

    const libraries = new Set<string>();
    for (const entry of spec.programs ?? []) {
      const program = typeof entry === "string" ? { source: entry } : entry;
      const source = findTool(program.source);
      if (source === undefined) throw missingToolError(program.source, "the initramfs needs it");
      const dest = program.dest ?? source;
      if (program.compressed === true) {
        await image.compress(source, `${dest}.zst`, spec.compressionLevel ?? 9);
      } else {
        image.copy(source, dest, 0o755);
      }
      for (const lib of await sharedLibraries(source)) libraries.add(lib);
    }
    for (const lib of spec.libraries ?? []) {
      if (!existsSync(lib)) {
        throw environmentError("LB_INITRAMFS_LIBRARY", `Library ${lib} does not exist.`);
      }
      libraries.add(lib);
      for (const dep of await sharedLibraries(lib)) libraries.add(dep);
    }
    for (const lib of libraries) image.copy(lib, lib, 0o755);

    const modules =
      spec.modules === undefined ? undefined : await installModules(image, spec.modules);

    for (const file of spec.files ?? []) {
      if (file.source !== undefined) image.copy(file.source, file.dest, file.mode);
      else image.write(file.dest, file.content ?? "", file.mode ?? 0o644);
    }
    for (const link of spec.symlinks ?? []) image.symlink(link.path, link.target);
    image.write("/init", spec.init, 0o755);

    await packCpioZstd(staging, spec.out, spec.compressionLevel ?? 9);
    return {
      path: spec.out,
      size: statSync(spec.out).size,
      modules: modules?.loads ?? [],
      builtinModules: modules?.builtin ?? [],
    };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Writes into the staging tree at image paths, through the merged-/usr symlinks. */
class ImageTree {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }

  private hostPath(imagePath: string): string {
    if (!imagePath.startsWith("/")) {
      throw inputError("LB_INITRAMFS_PATH", `Initramfs paths must be absolute: "${imagePath}".`);
    }
    return path.join(this.root, imagePath);
  }

  mkdir(imagePath: string) {
    mkdirSync(this.hostPath(imagePath), { recursive: true });
  }

  /** Replaces whatever is at the path (an applet link, say). */
  private clear(file: string) {
    try {
      if (!lstatSync(file).isDirectory()) unlinkSync(file);
    } catch {
      // Nothing there.
    }
  }

  copy(source: string, imagePath: string, mode?: number) {
    const dest = this.hostPath(imagePath);
    mkdirSync(path.dirname(dest), { recursive: true });
    this.clear(dest);
    copyFileSync(source, dest);
    chmodSync(dest, mode ?? statSync(source).mode & 0o7777);
  }

  async compress(source: string, imagePath: string, level: number) {
    const dest = this.hostPath(imagePath);
    mkdirSync(path.dirname(dest), { recursive: true });
    this.clear(dest);
    await runTool(["zstd", "-q", "-T0", `-${level}`, source, "-o", dest]);
    chmodSync(dest, 0o644);
  }

  write(imagePath: string, content: string | Uint8Array, mode: number) {
    const dest = this.hostPath(imagePath);
    mkdirSync(path.dirname(dest), { recursive: true });
    this.clear(dest);
    writeFileSync(dest, content);
    chmodSync(dest, mode);
  }

  symlink(imagePath: string, target: string) {
    const dest = this.hostPath(imagePath);
    mkdirSync(path.dirname(dest), { recursive: true });
    this.clear(dest);
    symlinkSync(target, dest);
  }
}

async function installBusybox(image: ImageTree, busybox: string) {
  const source = findTool(busybox);
  if (source === undefined) throw missingToolError(busybox, "the initramfs shell is busybox");
  const libs = await sharedLibraries(source);
  if (libs.length > 0) {
    throw environmentError(
      "LB_BUSYBOX_DYNAMIC",
      `${source} is linked dynamically; the initramfs needs the static busybox.`,
      "Install it: apt-get install busybox-static",
    );
  }
  const applets = parseBusyboxApplets((await runTool([source, "--list-full"])).stdout);
  for (const applet of applets) {
    // busybox lists itself (as /bin/busybox, which is /usr/bin/busybox here).
    if (path.basename(applet) !== "busybox") image.symlink(applet, "/usr/bin/busybox");
  }
  image.copy(source, "/usr/bin/busybox", 0o755);
}

async function sharedLibraries(file: string): Promise<string[]> {
  const ldd = await runTool(["ldd", file], { allowFailure: true });
  const parsed = parseLddOutput(`${ldd.stdout}\n${ldd.stderr}`);
  if (parsed.missing.length > 0) {
    throw environmentError(
      "LB_INITRAMFS_LIBRARY",
      `${file} needs libraries that are not installed: ${parsed.missing.join(", ")}.`,
      "Install the packages that provide them.",
    );
  }
  if (ldd.exitCode !== 0 && !parsed.notDynamic) {
    throw environmentError("LB_INITRAMFS_LDD", `ldd ${file} failed: ${ldd.stderr.trim()}`);
  }
  return parsed.libraries;
}

async function installModules(image: ImageTree, spec: InitramfsModules) {
  const hostModules = path.join(spec.root, "lib", "modules", spec.version);
  const loads: ModuleLoad[] = [];
  const builtin: string[] = [];
  const seen = new Set<string>();
  const unknown: string[] = [];
  const wanted = [
    ...spec.names.map((name) => ({ name, later: false })),
    ...(spec.later ?? []).map((name) => ({ name, later: true })),
  ];
  for (const { name, later } of wanted) {
    // One module per call: modprobe stops at the first unknown name otherwise. The empty
    // config keeps the host's /etc/modprobe.d options out of the image.
    const shown = await runTool(
      ["modprobe", "-C", "/dev/null", "-d", spec.root, "-S", spec.version, "--show-depends", name],
      { allowFailure: true },
    );
    if (shown.exitCode !== 0) {
      unknown.push(name);
      continue;
    }
    const parsed = parseShowDepends(shown.stdout);
    builtin.push(...parsed.builtin);
    for (const load of parsed.loads) {
      if (seen.has(load.file)) continue;
      seen.add(load.file);
      const relative = path.relative(hostModules, load.file);
      if (relative.startsWith("..")) {
        throw environmentError(
          "LB_MODULE_OUTSIDE",
          `modprobe named ${load.file}, which is outside ${hostModules}.`,
        );
      }
      const imagePath = `/lib/modules/${spec.version}/${relative}`;
      image.copy(load.file, imagePath, 0o644);
      loads.push({ path: imagePath, params: load.params, later });
    }
  }
  if (unknown.length > 0) {
    throw inputError(
      "LB_MODULE_UNKNOWN",
      `Kernel ${spec.version} has no module named ${unknown.join(", ")} (looked in ${hostModules}).`,
      "Check the names with `modinfo -b ROOT -k VERSION NAME`; drop modules this kernel lacks.",
    );
  }
  // modules.dep for the image's own modprobe, built from the modules it actually holds.
  for (const meta of ["modules.order", "modules.builtin", "modules.builtin.modinfo"]) {
    const source = path.join(hostModules, meta);
    if (existsSync(source)) image.copy(source, `/lib/modules/${spec.version}/${meta}`, 0o644);
  }
  await runTool(["depmod", "-b", image.root, spec.version]);
  for (const [file, later] of [
    [MODULE_LOAD_ORDER, false],
    [MODULE_LOAD_LATER, true],
  ] as const) {
    const lines = loads
      .filter((l) => l.later === later)
      .map((l) => (l.params ? `${l.path} ${l.params}` : l.path));
    image.write(file, lines.map((line) => `${line}\n`).join(""), 0o644);
  }
  return { loads, builtin: [...new Set(builtin)] };
}

async function packCpioZstd(staging: string, out: string, level: number) {
  const tmp = `${out}.tmp-${process.pid}`;
  // Sorted names and --reproducible give the same bytes for the same tree.
  const script = [
    "set -euo pipefail",
    'cd "$1"',
    "find . -mindepth 1 -print0 | LC_ALL=C sort -z |",
    "  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet |",
    '  zstd -q -T0 "-$3" -o "$2" -f',
  ].join("\n");
  try {
    await runTool(["bash", "-c", script, "pack", staging, tmp, String(level)]);
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * The start of an /init script for a busybox initramfs: mounts the pseudo filesystems and
 * loads the modules listed in MODULE_LOAD_ORDER. `body` runs after that.
 *
 * Debian's busybox-static runs its own applets ahead of PATH (tar, mount, blkid, mkfs.vfat,
 * ...), even when the image holds the real program. Run scripts that need the real tools
 * with bash (add it to `programs`), or call them by full path.
 */
export function busyboxInit(body: string): string {
  return `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
for list in ${MODULE_LOAD_ORDER} ${MODULE_LOAD_LATER}; do
  [ -f "$list" ] || continue
  while read -r module params; do
    [ -n "$module" ] || continue
    # A module already loaded (by the kernel's own request_module) is fine.
    grep -q "^$(basename "$module" .ko | tr - _) " /proc/modules && continue
    # shellcheck disable=SC2086
    insmod "$module" $params || echo "init: could not load $module" >&2
  done < "$list"
done
if [ -d /sys/firmware/efi/efivars ]; then
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars
fi
${body}
`;
}
