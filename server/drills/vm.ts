// One restore onto a fresh VM, measured: the engine behind restore drills, and what the
// VM harness uses for its recoveries.
//
//   provision    blank qcow2 disks shaped like the captured ones (not part of the RTO)
//   rescue-boot  the VM boots the rescue ISO in automatic mode, up to LIFEBOAT-RESCUE-READY
//   layout       recovery's connect, plan and layout steps
//   data         the data step (and the ESP check)
//   bootloader   identifiers, initramfs, bootloader, drill check, finish, and the reboot
//   first-boot   the disks alone boot, up to LIFEBOAT-DRILL-BOOTED
//   probes       the drill check's report (mounts, sampled files, probes) on the data port
//
// The RTO runs from the rescue VM's start to the drill check's report. The guest reaches
// only the Lifeboat server, at 10.0.2.100:80 (QEMU user networking with restrict=on and one
// guestfwd), never the network around it. QEMU's pid goes into DIR/qemu.pid while it runs,
// so a restarted server can stop a VM a killed one left; the disks live in DIR/tmp and are
// deleted at the end unless kept. Every path out stops the VM.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { DrillPhase, DrillPhaseName } from "../../common/drills.ts";
import {
  DRILL_BOOTED_MARKER,
  DRILL_DONE_MARKER,
  DRILL_REPORT_BLOCK,
  DrillCheckReportSchema,
  type DrillCheckReport,
} from "../../rescue/recover/drill-check.ts";
import { parseStepMarkers } from "../../rescue/recover/log.ts";
import { RESCUE_READY_MARKER } from "../../rescue/contract.ts";
import { createQcow2, extractDataBlocks, startVm, type Vm, type VmDisk } from "./qemu.ts";
import type { VmShape } from "./shape.ts";

/** Where the guest finds the Lifeboat server (a guestfwd to the host's loopback). */
export const DRILL_SERVER_ADDRESS = { address: "10.0.2.100", port: 80 };
export const DRILL_SERVER_URL = `http://${DRILL_SERVER_ADDRESS.address}:${DRILL_SERVER_ADDRESS.port}`;

export type PhaseTimeouts = Record<Exclude<DrillPhaseName, "provision">, number>;

/** Generous for TCG (software emulation); KVM machines finish far inside them. */
export const DEFAULT_PHASE_TIMEOUTS: PhaseTimeouts = {
  "rescue-boot": 180_000,
  layout: 900_000,
  data: 3_600_000,
  bootloader: 1_200_000,
  "first-boot": 600_000,
  probes: 900_000,
};

export interface RecoverVmOptions {
  name: string;
  /** Logs, screenshots and the pid file go here; the disks under DIR/tmp. */
  dir: string;
  iso: string;
  shape: VmShape;
  /** The Lifeboat server's port on 127.0.0.1. */
  serverPort: number;
  timeouts?: Partial<PhaseTimeouts>;
  /** Keep the recovered disks (a warm standby); they are deleted otherwise. */
  keepDisks?: boolean;
  signal?: AbortSignal;
  onPhase?: (event: { phase: DrillPhaseName; state: "start" | "done" | "failed" }) => void;
}

export interface RecoverVmResult {
  ok: boolean;
  failedPhase: DrillPhaseName | null;
  reason: string | null;
  phases: DrillPhase[];
  rtoSeconds: number | null;
  report: DrillCheckReport | null;
  /** Files in DIR worth keeping: console logs, the data log, screenshots. */
  evidence: string[];
  /** The recovered disks, when kept. */
  disks: string[];
}

class PhaseFailure extends Error {
  readonly phase: DrillPhaseName;
  constructor(phase: DrillPhaseName, message: string) {
    super(message);
    this.phase = phase;
  }
}

/** Which drill phase each recovery step belongs to. */
const STEP_PHASE: Record<string, DrillPhaseName> = {
  connect: "layout",
  plan: "layout",
  layout: "layout",
  data: "data",
  esp: "data",
  identifiers: "bootloader",
  initramfs: "bootloader",
  bootloader: "bootloader",
  "drill-check": "bootloader",
  finish: "bootloader",
};

/** The recovery's own words for why it failed, from its log on the console. */
export function recoveryFailure(consoleText: string): string | null {
  const lines = consoleText.replace(/\r/g, "").split("\n");
  const failed = lines.findLast((l) => l.includes("Recovery failed: "));
  if (failed) return failed.slice(failed.indexOf("Recovery failed: ") + 17).trim();
  const error = lines.findLast((l) => /lifeboat: error LB_/.test(l));
  return error ? error.replace(/^.*lifeboat: error /, "").trim() : null;
}

export async function recoverOntoVm(options: RecoverVmOptions): Promise<RecoverVmResult> {
  const timeouts = { ...DEFAULT_PHASE_TIMEOUTS, ...options.timeouts };
  const tmp = path.join(options.dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  const pidFile = path.join(options.dir, "qemu.pid");
  const phases: DrillPhase[] = [];
  const evidence = new Set<string>();
  let current: DrillPhaseName = "provision";
  let phaseStarted = performance.now();
  let vmStarted: number | null = null;
  let vm: Vm | null = null;
  const begin = (phase: DrillPhaseName) => {
    current = phase;
    phaseStarted = performance.now();
    options.onPhase?.({ phase, state: "start" });
  };
  const end = () => {
    phases.push({ name: current, seconds: (performance.now() - phaseStarted) / 1000, ok: true });
    options.onPhase?.({ phase: current, state: "done" });
  };
  const keep = (file: string | undefined) => {
    if (file) evidence.add(path.basename(file));
  };
  const stopVm = async (shot: string) => {
    if (!vm) return;
    if (vm.running) {
      await vm.screendump(path.join(options.dir, shot)).then(keep, () => undefined);
    }
    await vm.stop();
    keep(vm.consoleLog);
    keep(vm.dataLog);
    rmSync(pidFile, { force: true });
    vm = null;
  };
  const start = async (name: string, disks: VmDisk[], extraArgs: string[], vars?: string) => {
    options.signal?.throwIfAborted();
    vm = await startVm({
      name,
      dir: options.dir,
      firmware: options.shape.firmware,
      uefi: { secureBoot: options.shape.secureBoot, vars },
      disks,
      memoryMiB: options.shape.memoryMiB,
      cpus: 1,
      network: {
        restrict: true,
        guestfwd: [{ ...DRILL_SERVER_ADDRESS, hostPort: options.serverPort }],
      },
      extraArgs,
    });
    writeFileSync(pidFile, `${vm.pid}\n`);
    return vm;
  };
  // Stopped from outside: the screen as it was, then the VM off at once.
  const abort = () => {
    const running = vm as Vm | null;
    if (!running) return;
    void running
      .screendump(path.join(options.dir, "failure.png"))
      .then(keep, () => undefined)
      .finally(() => running.stop());
  };
  options.signal?.addEventListener("abort", abort, { once: true });

  const diskFiles = options.shape.disks.map((_, i) => path.join(tmp, `disk${i}.qcow2`));
  let report: DrillCheckReport | null = null;
  try {
    // provision
    begin("provision");
    for (const [i, disk] of options.shape.disks.entries())
      await createQcow2(diskFiles[i]!, { sizeBytes: disk.sizeBytes });
    const disks: VmDisk[] = options.shape.disks.map((disk, i) => ({
      file: diskFiles[i]!,
      format: "qcow2",
      bus: disk.bus,
      serial: `LBDRILL${i}`,
      bootIndex: options.shape.firmware === "bios" ? i : undefined,
    }));
    end();

    // The rescue system: from VM start to the reboot after recovery.
    begin("rescue-boot");
    const cdrom = [
      "-drive",
      `file=${path.resolve(options.iso)},format=raw,if=none,id=cd0,media=cdrom,readonly=on`,
      "-device",
      `ide-cd,drive=cd0,bus=ide.0,bootindex=${options.shape.disks.length}`,
    ];
    const rescue = await start(`${options.name}-rescue`, disks, cdrom);
    vmStarted = performance.now();
    await waitOrFail(
      rescue,
      new RegExp(RESCUE_READY_MARKER),
      timeouts["rescue-boot"],
      "rescue-boot",
      "the rescue system's ready marker",
    );
    end();
    for (const phase of ["layout", "data", "bootloader"] as const) {
      begin(phase);
      await followRecovery(rescue, phase, timeouts[phase]);
      end();
    }
    const vars = rescue.varsFile;
    // The rescue system reboots after recovery; QEMU runs with -no-reboot, so it exits.
    await rescue.waitForExit(120_000).catch(() => {
      throw new PhaseFailure("bootloader", "the rescue system did not reboot after recovering");
    });
    await stopVm("rescue-end.png");

    begin("first-boot");
    const booted = await start(`${options.name}-boot`, disks, [], vars);
    await waitOrFail(
      booted,
      new RegExp(DRILL_BOOTED_MARKER),
      timeouts["first-boot"],
      "first-boot",
      "the drill check's boot marker (the restored system did not boot)",
    );
    end();

    begin("probes");
    await waitOrFail(
      booted,
      new RegExp(DRILL_DONE_MARKER),
      timeouts.probes,
      "probes",
      "the drill check's report",
    );
    const block = extractDataBlocks(booted.dataText()).blocks.get(DRILL_REPORT_BLOCK);
    if (!block)
      throw new PhaseFailure(
        "probes",
        "the drill check finished but its report did not arrive on the data port",
      );
    const parsed = DrillCheckReportSchema.safeParse(JSON.parse(block.toString("utf8")));
    if (!parsed.success) {
      throw new PhaseFailure(
        "probes",
        `the drill check's report is malformed: ${parsed.error.issues[0]?.message}`,
      );
    }
    report = parsed.data;
    end();
    const rtoSeconds = (performance.now() - vmStarted) / 1000;
    await stopVm("final.png");
    return {
      ok: true,
      failedPhase: null,
      reason: null,
      phases,
      rtoSeconds,
      report,
      evidence: [...evidence],
      disks: options.keepDisks ? diskFiles : [],
    };
  } catch (error) {
    // Stopped from outside (an RTO budget, the server stopping): that is the reason, not
    // the VM exit the stop caused.
    const failure = options.signal?.aborted
      ? new PhaseFailure(
          current,
          (options.signal.reason as Error | undefined)?.message ?? "the drill was stopped",
        )
      : error instanceof PhaseFailure
        ? error
        : new PhaseFailure(current, (error as Error).message);
    phases.push({ name: current, seconds: (performance.now() - phaseStarted) / 1000, ok: false });
    options.onPhase?.({ phase: current, state: "failed" });
    await stopVm("failure.png");
    return {
      ok: false,
      failedPhase: failure.phase,
      reason: failure.message,
      phases,
      rtoSeconds: null,
      report,
      evidence: [...evidence],
      disks: [],
    };
  } finally {
    options.signal?.removeEventListener("abort", abort);
    await stopVm("stopped.png");
    if (!options.keepDisks) rmSync(tmp, { recursive: true, force: true });
  }
}

/** Waits for a console pattern; a timeout or an early exit becomes the phase's failure. */
async function waitOrFail(
  vm: Vm,
  pattern: RegExp,
  timeoutMs: number,
  phase: DrillPhaseName,
  what: string,
) {
  try {
    await vm.waitFor(pattern, { timeoutMs, what });
  } catch (error) {
    const why = recoveryFailure(vm.consoleText());
    throw new PhaseFailure(
      phase,
      why ? `${what} never came: ${why}` : (error as Error).message.split("\n")[0]!,
    );
  }
}

/** Follows recovery's step markers until every step of this phase is done. */
async function followRecovery(vm: Vm, phase: DrillPhaseName, timeoutMs: number) {
  const lastStep: Record<string, string> = { layout: "layout", data: "data", bootloader: "finish" };
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const text = vm.consoleText();
    const marks = parseStepMarkers(text);
    const failed = marks.find((m) => m.state === "failed");
    if (failed) {
      // Recovery prints its reason right after the marker, then files its report with the
      // server: give it a moment before the VM is stopped.
      const waitUntil = performance.now() + 20_000;
      while (
        recoveryFailure(vm.consoleText()) === null &&
        vm.running &&
        performance.now() < waitUntil
      )
        await new Promise((resolve) => setTimeout(resolve, 250));
      const why = recoveryFailure(vm.consoleText());
      if (why !== null)
        await vm
          .waitFor(/recovery log is on the server|Offline recovery/, { timeoutMs: 10_000 })
          .catch(() => undefined);
      throw new PhaseFailure(
        STEP_PHASE[failed.name] ?? phase,
        `recovery step ${failed.name} failed: ${why ?? "it gave no reason on the console"}`,
      );
    }
    if (marks.some((m) => m.name === lastStep[phase] && m.state === "done")) return;
    if (!vm.running) {
      throw new PhaseFailure(
        phase,
        `the rescue VM stopped during ${phase}: ${recoveryFailure(text) ?? "see the console log"}`,
      );
    }
    if (performance.now() > deadline) {
      throw new PhaseFailure(phase, `${phase} took longer than ${Math.round(timeoutMs / 1000)} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
