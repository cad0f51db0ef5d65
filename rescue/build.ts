// lifeboat rescue build: the host's rescue image.
//
// One initramfs holds everything (busybox and the real tools with their libraries, the
// kernel modules recovery needs, the pinned Node and the bundled CLI, the host's layout,
// agent config and keys, and the /init from rescue/init.ts). grub-mkrescue wraps it with
// the kernel into a hybrid ISO: El Torito + GRUB i386-pc for BIOS, an ESP image with GRUB
// x86_64-efi for UEFI, and an MBR/GPT so the same file can be written raw to a USB stick.
// --pxe DIR writes the kernel and the initrd (plus boot configs for pxelinux, GRUB and iPXE).
//
// Nothing here needs root (capturing the layout does, unless --layout gives one). The work
// happens in a temporary directory that is removed on every path out, and the ISO appears
// under its final name only when it is complete (temp name, fsync, rename), mode 0600
// because it may hold the host's token and repository key.

import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, open } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadAgentConfig, DEFAULT_CONFIG_FILE, type AgentConfig } from "../agent/config.ts";
import { environmentError, inputError, usageError } from "../common/errors.ts";
import { findTool, missingToolError, runTool } from "../common/exec.ts";
import { writeFileAtomic } from "../common/fs.ts";
import { NODE_FLAGS } from "../common/runtime.ts";
import { LIFEBOAT_VERSION } from "../common/version.ts";
import { readLayoutFile, serializeLayout } from "../layouts/document.ts";
import { LVM_CONFIG } from "../layouts/plan/steps.ts";
import type { Layout } from "../layouts/schema.ts";
import {
  EMBEDDED_SNAPSHOT_DIR,
  EMBEDDED_SNAPSHOT_MOUNTED,
  luksKeyDest,
  RESCUE_PATHS,
  RESCUE_VOLUME_ID,
  rewriteAgentConfig,
  RescueInfoSchema,
  type EmbeddedFile,
  type RescueInfo,
} from "./contract.ts";
import {
  parseExtraCmdline,
  renderGrubConfig,
  renderGrubNetConfig,
  renderIpxeScript,
  renderPxelinuxConfig,
  type RescueEntry,
} from "./grub.ts";
import { renderInit, UDHCPC_SCRIPT, UDHCPC_SCRIPT_PATH } from "./init.ts";
import { DrillSpecSchema, type DrillSpec } from "./recover/drill-check.ts";
import {
  buildSignedEfiImage,
  locateSignedBootFiles,
  renderXorrisoHook,
  SIGNED_BOOT_PATHS,
} from "./secureboot.ts";
import { buildInitramfs, type InitramfsFile, type InitramfsProgram } from "./initramfs.ts";
import { locateKernel, type RescueKernel } from "./kernel.ts";
import {
  BOOT_RESCUE_MODULES,
  DEFAULT_RESCUE_MODULES,
  LATER_RESCUE_MODULES,
  readModuleIndex,
  resolveModuleNames,
} from "./modules.ts";
import {
  GRUB_PLATFORM_DIRS,
  isEssential,
  layoutFeatures,
  RESCUE_PROGRAMS,
  type RescueProgram,
} from "./programs.ts";

export interface RescueBuildOptions {
  /** The ISO to write; at least one of out and pxeDir. */
  out?: string;
  /** Also (or only) write vmlinuz + initrd + sample boot configs here. */
  pxeDir?: string;
  kernel?: string;
  /** The kernel's module directory itself: .../lib/modules/<version>. */
  modules?: string;
  /** A captured layout; without it this machine's layout is captured now (root). */
  layoutFile?: string;
  /** The agent config; default LIFEBOAT_CONFIG, then /etc/lifeboat/agent.json (may be absent); null: none. */
  configFile?: string | null;
  addModules?: readonly string[];
  addPrograms?: readonly string[];
  /** LUKS passphrase files: mapper name or UUID → host file. */
  luksKeys?: Readonly<Record<string, string>>;
  defaultEntry?: RescueEntry;
  /** Extra kernel command line words for every menu entry. */
  cmdline?: string;
  /**
   * A snapshot export ('snapshots export') to put on the ISO for offline recovery; the
   * rescue system mounts the medium and recovers from it (lifeboat.from=...).
   */
  embedDir?: string;
  /**
   * Where Debian's signed shim and GRUB are (a root holding usr/lib/shim/... and
   * usr/lib/grub/x86_64-efi-signed/...): the host's / by default; null builds an ISO
   * that boots only with Secure Boot off.
   */
  signedBootRoot?: string | null;
  /** A restore drill's check (probes, sampled files), read by recover with lifeboat.drill=1. */
  drillSpec?: DrillSpec;
  timeoutSeconds?: number;
  /** zstd level for the initramfs (1-19). */
  compressionLevel?: number;
  env?: NodeJS.ProcessEnv;
  /** Progress lines ("bundling the CLI"). */
  progress?: (line: string) => void;
  /** Capture this machine's layout (injected so tests can avoid root). */
  captureLayout?: () => Promise<Layout>;
}

export interface RescueBuildResult {
  iso: { path: string; sizeBytes: number } | null;
  pxe: { dir: string; files: string[] } | null;
  host: string | null;
  kernelVersion: string;
  initramfsBytes: number;
  modules: { loaded: number; builtin: string[]; absent: string[] };
  programs: { included: string[]; missingOptional: string[] };
  /** What secret material the image holds, in words (empty: none). */
  secrets: string[];
  warnings: string[];
  seconds: { total: number; initramfs: number; iso: number };
  defaultEntry: RescueEntry;
  cmdline: string[];
  /** Whether the UEFI side boots through signed shim and GRUB (works with Secure Boot on). */
  secureBoot: boolean;
}

export const DEFAULT_COMPRESSION_LEVEL = 9;

const PROJECT_ROOT = path.resolve(import.meta.dirname, "..");

/** Checks everything the user gave before any work starts. */
export function checkBuildOptions(options: RescueBuildOptions) {
  if (options.out === undefined && options.pxeDir === undefined) {
    throw usageError(
      "LB_RESCUE_NO_OUTPUT",
      "lifeboat rescue build needs --out FILE.iso, --pxe DIR, or both.",
      "For example: lifeboat rescue build --out /root/rescue.iso",
    );
  }
  if (options.out !== undefined) {
    const dir = path.dirname(path.resolve(options.out));
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw inputError(
        "LB_RESCUE_OUT_DIR",
        `The directory for --out ${options.out} does not exist.`,
        `Create ${dir} first, or write the ISO elsewhere.`,
      );
    }
    if (existsSync(options.out) && statSync(options.out).isDirectory()) {
      throw inputError("LB_RESCUE_OUT_DIR", `--out ${options.out} is a directory.`);
    }
  }
  const level = options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 19) {
    throw usageError("LB_RESCUE_LEVEL", `The zstd level ${level} is not between 1 and 19.`);
  }
  const timeout = options.timeoutSeconds ?? 5;
  if (!Number.isFinite(timeout) || timeout < 0 || timeout > 3600) {
    throw usageError(
      "LB_RESCUE_TIMEOUT",
      `The menu timeout ${timeout} s is not between 0 and 3600.`,
    );
  }
  for (const [name, file] of Object.entries(options.luksKeys ?? {})) {
    if (luksKeyDest(name) === undefined) {
      throw usageError(
        "LB_RESCUE_LUKS_KEY",
        `--luks-key ${name}=...: "${name}" is not a mapper name, LUKS UUID or '*'.`,
        "Use NAME=FILE, e.g. --luks-key cr_root=/root/cr_root.key",
      );
    }
    if (!existsSync(file) || !statSync(file).isFile()) {
      throw inputError(
        "LB_RESCUE_LUKS_KEY",
        `The LUKS key file ${file} (for ${name}) does not exist.`,
      );
    }
  }
  for (const program of options.addPrograms ?? []) {
    if (findTool(program) === undefined) {
      throw inputError(
        "LB_RESCUE_PROGRAM",
        `--add-program ${program}: no such executable${program.includes("/") ? "" : " on PATH"}.`,
        "Give an absolute path or a command name that is installed.",
      );
    }
  }
  parseExtraCmdline(options.cmdline);
}

/** The files and links the image needs for each program, and what is missing. */
export function resolvePrograms(
  programs: readonly RescueProgram[],
  layout: Layout | null,
  find: (name: string) => string | undefined = findTool,
) {
  const features = layoutFeatures(layout);
  const found: { program: RescueProgram; path: string }[] = [];
  const missingEssential: RescueProgram[] = [];
  const missingOptional: RescueProgram[] = [];
  for (const program of programs) {
    const file = find(program.name);
    if (file !== undefined) found.push({ program, path: file });
    else if (isEssential(program, features)) missingEssential.push(program);
    else missingOptional.push(program);
  }
  if (missingEssential.length > 0) {
    const packages = [...new Set(missingEssential.map((p) => p.package))];
    throw environmentError(
      "LB_RESCUE_TOOL_MISSING",
      `The rescue image needs ${missingEssential.map((p) => `${p.name} (${p.why})`).join(", ")}, ` +
        "which this machine does not have.",
      `Install them: apt-get install ${packages.join(" ")}`,
    );
  }
  return { found, missingOptional };
}

/** Static files of the rescue system's /etc. */
function etcFiles(hostname: string): InitramfsFile[] {
  return [
    { dest: "/etc/passwd", content: "root:x:0:0:root:/root:/bin/bash\n" },
    { dest: "/etc/shadow", content: "root:*:19000:0:99999:7:::\n", mode: 0o600 },
    { dest: "/etc/group", content: "root:x:0:\ntty:x:5:\ndisk:x:6:\n" },
    { dest: "/etc/nsswitch.conf", content: "passwd: files\ngroup: files\nhosts: files dns\n" },
    { dest: "/etc/hosts", content: `127.0.0.1 localhost\n127.0.1.1 ${hostname}\n` },
    { dest: "/etc/resolv.conf", content: "" },
    { dest: "/etc/fstab", content: "" },
    { dest: "/etc/hostname", content: `${hostname}\n` },
    // No udev here: LVM creates its /dev nodes itself (docs/environment.md).
    { dest: "/etc/lvm/lvm.conf", content: `${LVM_CONFIG.replace(/ } /g, " }\n")}\n` },
    { dest: "/etc/mdadm/mdadm.conf", content: "HOMEHOST <ignore>\n" },
    {
      dest: "/etc/profile",
      content:
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
        "export LC_ALL=C\n" +
        "PS1='lifeboat-rescue:\\w# '\n",
    },
    { dest: "/root/.bashrc", content: ". /etc/profile\n" },
    { dest: UDHCPC_SCRIPT_PATH, content: UDHCPC_SCRIPT, mode: 0o755 },
    {
      dest: RESCUE_PATHS.wrapper,
      content: `#!/bin/sh\nexec ${[RESCUE_PATHS.node, ...NODE_FLAGS, RESCUE_PATHS.bundle].join(" ")} "$@"\n`,
      mode: 0o755,
    },
  ];
}

/** Terminal descriptions for bash's line editing on the console and over serial. */
function terminfoFiles(): InitramfsFile[] {
  const out: InitramfsFile[] = [];
  for (const name of ["l/linux", "v/vt100", "v/vt102", "v/vt220", "x/xterm", "d/dumb"]) {
    for (const dir of ["/lib/terminfo", "/usr/share/terminfo"]) {
      const file = path.join(dir, name);
      if (existsSync(file)) {
        out.push({ dest: file, source: file, mode: 0o644 });
        break;
      }
    }
  }
  return out;
}

/** Every file under GRUB's platform directories (signed monolithic images left out). */
function grubPlatformFiles(): { files: InitramfsFile[]; missing: string[] } {
  const files: InitramfsFile[] = [];
  const missing: string[] = [];
  for (const dir of GRUB_PLATFORM_DIRS) {
    if (!existsSync(dir)) {
      missing.push(dir);
      continue;
    }
    const walk = (current: string) => {
      for (const entry of readdirSync(current, { withFileTypes: true })) {
        const full = path.join(current, entry.name);
        if (entry.isDirectory()) {
          if (entry.name !== "monolithic") walk(full);
        } else if (entry.isFile()) {
          files.push({ dest: full, source: full });
        }
      }
    };
    walk(dir);
  }
  return { files, missing };
}

/** The bundled CLI: this file when running as the bundle, else a fresh esbuild bundle. */
async function ensureBundle(workDir: string): Promise<string> {
  const self = fileURLToPath(import.meta.url);
  if (!self.endsWith(".ts")) return self;
  const script = path.join(PROJECT_ROOT, "scripts", "bundle.ts");
  // A computed specifier: esbuild must not pull the bundler into the bundle itself.
  const module = (await import(pathToFileURL(script).href)) as {
    bundleCli(out?: string): Promise<string>;
  };
  return module.bundleCli(path.join(workDir, "lifeboat.mjs"));
}

/**
 * The Node runtime for the image, without the symbol and debug tables the published binary
 * carries (126 → 108 MB, 3 MB less in the initramfs). The rescue system holds every byte in
 * RAM, and the boot loader reads and the kernel unpacks every byte under emulation too.
 * Without binutils' strip the image takes Node as it is.
 */
async function strippedNode(workDir: string, warnings: string[]): Promise<string> {
  if (findTool("strip") === undefined) {
    warnings.push(
      "strip is not installed (binutils): the image carries Node with its 18 MB of symbols",
    );
    return process.execPath;
  }
  const out = path.join(workDir, "node");
  await runTool(["strip", "--strip-all", "-o", out, process.execPath]);
  return out;
}

/** modprobe -d wants the directory above lib/modules/<version>; make one if needed. */
function moduleRoot(kernel: RescueKernel, workDir: string): string {
  const suffix = path.join("lib", "modules", kernel.version);
  if (kernel.modulesDir.endsWith(`${path.sep}${suffix}`)) {
    return kernel.modulesDir.slice(0, -suffix.length - 1) || "/";
  }
  const root = path.join(workDir, "modroot");
  mkdirSync(path.join(root, "lib", "modules"), { recursive: true });
  symlinkSync(kernel.modulesDir, path.join(root, suffix));
  return root;
}

async function loadConfig(options: RescueBuildOptions) {
  if (options.configFile === null) return { config: null, file: null };
  const env = options.env ?? process.env;
  const explicit = options.configFile ?? (env.LIFEBOAT_CONFIG || undefined);
  const file = path.resolve(explicit ?? DEFAULT_CONFIG_FILE);
  const config = await loadAgentConfig(file, {});
  if (config === null && explicit !== undefined) {
    throw inputError("LB_CONFIG_UNREADABLE", `The agent config ${file} does not exist.`);
  }
  return { config, file };
}

async function fsyncFile(file: string) {
  const handle = await open(file, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Copies into a directory under a temp name, then renames: never a half-written file. */
async function placeFile(source: string, dest: string, mode: number) {
  const temp = `${dest}.tmp-${process.pid}`;
  try {
    copyFileSync(source, temp);
    chmodSync(temp, mode);
    await fsyncFile(temp);
    renameSync(temp, dest);
  } finally {
    rmSync(temp, { force: true });
  }
}

export async function buildRescueImage(options: RescueBuildOptions): Promise<RescueBuildResult> {
  const started = performance.now();
  const progress = options.progress ?? (() => undefined);
  checkBuildOptions(options);
  const warnings: string[] = [];
  const secrets: string[] = [];
  const defaultEntry = options.defaultEntry ?? "interactive";
  const extraArgs = parseExtraCmdline(options.cmdline);
  if (options.embedDir !== undefined) {
    if (options.out === undefined) {
      throw usageError(
        "LB_RESCUE_EMBED_PXE",
        "An embedded snapshot goes on the ISO; PXE files alone can't carry one.",
        "Add --out FILE.iso.",
      );
    }
    if (!existsSync(path.join(options.embedDir, "export.json"))) {
      throw inputError(
        "LB_EXPORT_INCOMPLETE",
        `${options.embedDir} holds no complete snapshot export.`,
        "Export it with 'lifeboat snapshots export ID --out DIR'.",
      );
    }
    extraArgs.push(`lifeboat.from=${EMBEDDED_SNAPSHOT_MOUNTED}`);
  }

  if (options.out !== undefined) {
    for (const tool of ["grub-mkrescue", "xorriso", "mformat"]) {
      if (findTool(tool) === undefined) throw missingToolError(tool, "building the ISO needs it");
    }
    for (const dir of GRUB_PLATFORM_DIRS) {
      if (!existsSync(path.join(dir, "moddep.lst"))) {
        throw environmentError(
          "LB_RESCUE_GRUB_MISSING",
          `GRUB's ${path.basename(dir)} files (${dir}) are missing; the ISO boots with them.`,
          "Install them: apt-get install grub-pc-bin grub-efi-amd64-bin",
        );
      }
    }
  }
  for (const tool of ["modprobe", "depmod", "cpio", "zstd", "ldd"]) {
    if (findTool(tool) === undefined) throw missingToolError(tool, "building the image needs it");
  }
  const kernel = locateKernel({ kernel: options.kernel, modules: options.modules });
  const signed =
    options.out === undefined || options.signedBootRoot === null
      ? null
      : locateSignedBootFiles(options.signedBootRoot ?? "/");
  if (options.signedBootRoot && signed === null) {
    throw inputError(
      "LB_RESCUE_SIGNED_BOOT",
      `${options.signedBootRoot} has no signed shim and GRUB (${SIGNED_BOOT_PATHS.shim}, ${SIGNED_BOOT_PATHS.grub}).`,
      "Unpack Debian's shim-signed and grub-efi-amd64-signed there (dpkg -x), or leave the option out.",
    );
  }

  // The host's data.
  let layout: Layout;
  if (options.layoutFile !== undefined) {
    layout = await readLayoutFile(options.layoutFile);
  } else {
    if (options.captureLayout === undefined) {
      throw usageError("LB_RESCUE_NO_LAYOUT", "No layout given and no way to capture one.");
    }
    progress("capturing this machine's layout");
    layout = await options.captureLayout();
  }
  const { config, file: configFile } = await loadConfig(options);
  const embedded: EmbeddedFile[] = [];
  let rewritten: AgentConfig | null = null;
  if (config === null) {
    warnings.push(
      `No agent config (${configFile ?? "--no-config"}): the image knows no server or token. Recovery will need ` +
        "lifeboat.server= on the kernel command line and a token, or files added by hand.",
    );
  } else {
    const result = rewriteAgentConfig(config, path.dirname(configFile ?? "/"));
    rewritten = result.config;
    embedded.push(...result.files);
    if (config.token !== undefined) secrets.push("the host token (inline in agent.json)");
    if (config.server === undefined) {
      warnings.push("The agent config names no server: recovery will need lifeboat.server=.");
    }
    if (config.keyFile === undefined) {
      warnings.push("The agent config names no keyFile: only unencrypted backups can be restored.");
    }
  }
  for (const [name, file] of Object.entries(options.luksKeys ?? {})) {
    embedded.push({
      source: file,
      dest: luksKeyDest(name)!,
      mode: 0o600,
      secret: true,
      what: `the LUKS passphrase for ${name}`,
    });
  }
  for (const file of embedded) {
    if (!existsSync(file.source)) {
      throw inputError(
        "LB_RESCUE_FILE_MISSING",
        `${file.what} (${file.source}, named in ${configFile}) does not exist.`,
        "Fix the path in the agent config, or give another config with --config.",
      );
    }
    if (file.secret) secrets.push(file.what);
  }
  const host = layout.host.hostname || config?.host || null;
  const info: RescueInfo = RescueInfoSchema.parse({
    version: LIFEBOAT_VERSION,
    builtAt: new Date().toISOString(),
    host,
    kernelVersion: kernel.version,
  });

  // Programs and modules.
  const programs = resolvePrograms(RESCUE_PROGRAMS, layout);
  for (const missing of programs.missingOptional) {
    warnings.push(
      `${missing.name} is not installed (${missing.why}); apt-get install ${missing.package}`,
    );
  }
  const index = readModuleIndex(kernel.modulesDir);
  const defaults = resolveModuleNames(DEFAULT_RESCUE_MODULES, index);
  const added = resolveModuleNames(options.addModules ?? [], index);
  if (added.missing.length > 0) {
    throw inputError(
      "LB_RESCUE_MODULE_UNKNOWN",
      `Kernel ${kernel.version} has no module named ${added.missing.join(", ")}.`,
      `Check the names in ${kernel.modulesDir}/modules.dep (or modinfo -k ${kernel.version} NAME).`,
    );
  }
  // Added modules load with the first ones: the init can't know what they are for.
  const bootNames = new Set(resolveModuleNames(BOOT_RESCUE_MODULES, index).load);
  const moduleNames = [
    ...new Set([...defaults.load.filter((name) => bootNames.has(name)), ...added.load]),
  ];
  const laterNames = resolveModuleNames(LATER_RESCUE_MODULES, index).load.filter(
    (name) => !moduleNames.includes(name),
  );

  const workDir = await mkdtemp(path.join(os.tmpdir(), "lifeboat-rescue-build-"));
  const isoTemp =
    options.out === undefined
      ? undefined
      : path.join(
          path.dirname(path.resolve(options.out)),
          `.${path.basename(options.out)}.tmp-${process.pid}`,
        );
  const cleanup = () => {
    rmSync(workDir, { recursive: true, force: true });
    if (isoTemp !== undefined) rmSync(isoTemp, { force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    cleanup();
    process.kill(process.pid, signal);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    progress("bundling the CLI");
    const bundle = await ensureBundle(workDir);
    const grub = grubPlatformFiles();
    for (const dir of grub.missing)
      warnings.push(`${dir} is missing: grub-install can't run inside the image`);

    const imagePrograms: InitramfsProgram[] = [
      // Node is most of the image; the init unpacks it while the modules load.
      { source: await strippedNode(workDir, warnings), dest: RESCUE_PATHS.node, compressed: true },
      ...programs.found
        .filter(({ program }) => program.name !== "busybox")
        .map(({ path: file }) => ({ source: file })),
      ...(options.addPrograms ?? []).map((program) => ({ source: findTool(program)! })),
    ];
    const symlinks = programs.found.flatMap(({ program, path: file }) =>
      (program.links ?? []).map((link) => ({
        path: path.join(path.dirname(file), link),
        target: path.basename(file),
      })),
    );
    const files: InitramfsFile[] = [
      ...etcFiles(host ?? "lifeboat-rescue"),
      ...terminfoFiles(),
      ...grub.files,
      { dest: RESCUE_PATHS.bundle, source: bundle, mode: 0o644 },
      { dest: RESCUE_PATHS.layout, content: serializeLayout(layout), mode: 0o600 },
      { dest: RESCUE_PATHS.info, content: `${JSON.stringify(info, null, 2)}\n` },
      ...(options.drillSpec
        ? [
            {
              dest: RESCUE_PATHS.drillSpec,
              content: `${JSON.stringify(DrillSpecSchema.parse(options.drillSpec), null, 2)}\n`,
              mode: 0o600,
            },
          ]
        : []),
      ...embedded.map((file) => ({ dest: file.dest, source: file.source, mode: file.mode })),
    ];
    if (rewritten !== null) {
      files.push({
        dest: RESCUE_PATHS.agentConfig,
        content: `${JSON.stringify(rewritten, null, 2)}\n`,
        mode: 0o600,
      });
    }

    progress(
      `building the initramfs (${moduleNames.length + laterNames.length} modules, zstd -${options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL})`,
    );
    const initramfsStarted = performance.now();
    const initrd = path.join(workDir, "initrd.zst");
    const busybox = programs.found.find(({ program }) => program.name === "busybox")!.path;
    const built = await buildInitramfs({
      out: initrd,
      init: renderInit({ hostname: host ?? "lifeboat-rescue" }),
      busybox,
      programs: imagePrograms,
      modules: {
        root: moduleRoot(kernel, workDir),
        version: kernel.version,
        names: moduleNames,
        later: laterNames,
      },
      files,
      symlinks: [
        ...symlinks,
        { path: "/etc/mtab", target: "/proc/self/mounts" },
        { path: "/usr/bin/node", target: "../lib/lifeboat/node" },
      ],
      directories: [
        "/root",
        "/mnt",
        "/var/lib",
        "/var/tmp",
        "/etc/lvm/backup",
        "/etc/lvm/archive",
        RESCUE_PATHS.luksDir,
      ],
      compressionLevel: options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
    });
    const initramfsSeconds = (performance.now() - initramfsStarted) / 1000;

    let iso: RescueBuildResult["iso"] = null;
    const isoStarted = performance.now();
    if (options.out !== undefined && isoTemp !== undefined) {
      progress("writing the ISO (grub-mkrescue)");
      const tree = path.join(workDir, "iso");
      mkdirSync(path.join(tree, "boot", "grub"), { recursive: true });
      copyFileSync(kernel.vmlinuz, path.join(tree, "boot", "vmlinuz"));
      renameSync(initrd, path.join(tree, "boot", "initrd.zst"));
      const grubCfg = renderGrubConfig({
        defaultEntry,
        timeoutSeconds: options.timeoutSeconds ?? 5,
        extraArgs,
        host,
        kernelPath: "/boot/vmlinuz",
        initrdPath: "/boot/initrd.zst",
      });
      writeFileSync(path.join(tree, "boot", "grub", "grub.cfg"), grubCfg);
      // Debian's signed GRUB finds the medium by this file.
      mkdirSync(path.join(tree, ".disk"), { recursive: true });
      writeFileSync(path.join(tree, ".disk", "info"), `Lifeboat rescue ${LIFEBOAT_VERSION}\n`);
      const hook: string[] = [];
      if (signed !== null) {
        progress("using signed shim and GRUB for UEFI (Secure Boot)");
        const efiImage = path.join(workDir, "efi-secureboot.img");
        await buildSignedEfiImage(signed, efiImage);
        const wrapper = path.join(workDir, "xorriso-hook");
        writeFileSync(wrapper, renderXorrisoHook(efiImage, findTool("xorriso")!), { mode: 0o755 });
        hook.push(`--xorriso=${wrapper}`);
      }
      if (options.embedDir !== undefined) {
        progress("adding the embedded snapshot");
        mkdirSync(path.dirname(path.join(tree, EMBEDDED_SNAPSHOT_DIR)), { recursive: true });
        await runTool([
          "cp",
          "-a",
          "--reflink=auto",
          options.embedDir,
          path.join(tree, EMBEDDED_SNAPSHOT_DIR),
        ]);
      }
      await runTool(
        [
          "grub-mkrescue",
          ...hook,
          "--compress=xz",
          "--fonts=",
          "--locales=",
          "--themes=",
          "-o",
          isoTemp,
          tree,
          "--",
          "-volid",
          RESCUE_VOLUME_ID,
        ],
        { timeoutMs: 300_000 },
      );
      chmodSync(isoTemp, 0o600);
      await fsyncFile(isoTemp);
      const out = path.resolve(options.out);
      renameSync(isoTemp, out);
      iso = { path: out, sizeBytes: statSync(out).size };
      if (options.pxeDir !== undefined) renameSync(path.join(tree, "boot", "initrd.zst"), initrd);
    }
    const isoSeconds = (performance.now() - isoStarted) / 1000;

    let pxe: RescueBuildResult["pxe"] = null;
    if (options.pxeDir !== undefined) {
      const dir = path.resolve(options.pxeDir);
      mkdirSync(path.join(dir, "pxelinux.cfg"), { recursive: true });
      await placeFile(kernel.vmlinuz, path.join(dir, "vmlinuz"), 0o644);
      await placeFile(initrd, path.join(dir, "initrd.zst"), 0o600);
      const net = { defaultEntry, extraArgs, kernel: "vmlinuz", initrd: "initrd.zst" };
      const configs: [string, string][] = [
        [path.join(dir, "pxelinux.cfg", "default"), renderPxelinuxConfig(net)],
        [path.join(dir, "grub.cfg"), renderGrubNetConfig(net)],
        [path.join(dir, "boot.ipxe"), renderIpxeScript(net)],
      ];
      for (const [file, text] of configs) await writeFileAtomic(file, text);
      pxe = {
        dir,
        files: ["vmlinuz", "initrd.zst", "pxelinux.cfg/default", "grub.cfg", "boot.ipxe"].map((f) =>
          path.join(dir, f),
        ),
      };
    }

    return {
      iso,
      pxe,
      host,
      kernelVersion: kernel.version,
      initramfsBytes: built.size,
      modules: {
        loaded: built.modules.length,
        builtin: [...defaults.builtin, ...added.builtin],
        absent: defaults.missing,
      },
      programs: {
        included: programs.found.map(({ program }) => program.name),
        missingOptional: programs.missingOptional.map((p) => p.name),
      },
      secrets,
      warnings,
      seconds: {
        total: (performance.now() - started) / 1000,
        initramfs: initramfsSeconds,
        iso: isoSeconds,
      },
      defaultEntry,
      cmdline: extraArgs,
      secureBoot: signed !== null,
    };
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    cleanup();
  }
}

/** Reads back what an image says it is (for tests and `rescue build --json`). */
export function parseRescueInfo(text: string): RescueInfo {
  return RescueInfoSchema.parse(JSON.parse(text));
}
