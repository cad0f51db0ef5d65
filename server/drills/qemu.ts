// QEMU virtual machines for tests and drills: start one (direct kernel boot or firmware boot
// from disk, SeaBIOS or OVMF), watch its serial console for markers, take screenshots over
// QMP, and stop it on every path out.
//
// Two serial ports: ttyS0 is the console (kernel and guest messages, the human-readable
// log) and ttyS1 carries data out of the guest as marked base64 blocks, so kernel messages
// never land inside the data. See serialEmitShell() and extractDataBlocks().
//
// Acceleration is TCG unless LIFEBOAT_QEMU_ACCEL=kvm: KVM hangs on the machines this
// project is built on (docs in ../shared/docs/environment.md).

import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import { checkFailed, environmentError, usageError } from "../../common/errors.ts";
import { findTool, missingToolError, runTool } from "../../common/exec.ts";

export type Firmware = "bios" | "uefi";

export interface VmDisk {
  file: string;
  format?: "raw" | "qcow2";
  /** virtio-blk (vdX in the guest) or NVMe (nvmeXn1). */
  bus?: "virtio" | "nvme";
  /** The serial number the guest sees; required by QEMU for NVMe, so one is made up then. */
  serial?: string;
  readOnly?: boolean;
  /** Firmware boot priority (lower first); leave unset to let NVRAM decide under UEFI. */
  bootIndex?: number;
}

export interface VmNetwork {
  /** Isolate the guest: it reaches nothing but the guestfwd targets. Default true. */
  restrict?: boolean;
  /** guest address:port -> a host loopback port, through socat (one process per connection). */
  guestfwd?: { address: string; port: number; hostPort: number }[];
  /** host loopback port -> guest port. */
  hostfwd?: { hostPort: number; guestPort: number }[];
  /** Network boot: QEMU's TFTP server serves `dir`, DHCP names `bootfile`. */
  tftp?: { dir: string; bootfile: string };
  /** The NIC's place in the firmware's boot order (network boot when it comes first). */
  bootIndex?: number;
}

export interface UefiOptions {
  /** An existing VARS file to boot with (and update), e.g. the one a previous boot wrote. */
  vars?: string;
  /** Secure Boot with Microsoft's keys enrolled (the OVMF .ms pair). */
  secureBoot?: boolean;
}

export interface VmOptions {
  name: string;
  /** Logs, the QMP socket and the VM's own VARS copy go here. */
  dir: string;
  firmware?: Firmware;
  uefi?: UefiOptions;
  /** Direct kernel boot; without it the firmware boots from the disks. */
  kernel?: { vmlinuz: string; initrd?: string; append?: string };
  disks?: readonly VmDisk[];
  memoryMiB?: number;
  cpus?: number;
  /** QEMU user networking; off (no NIC at all) unless given. */
  network?: VmNetwork;
  accel?: "tcg" | "kvm";
  /** The CPU model; by default "qemu64" under TCG and "host" under KVM (see TCG_CPU). */
  cpu?: string;
  /**
   * Let the harness type on the console (Vm.typeLine): ttyS0 becomes a socket chardev that
   * still logs everything to the console log, connected or not.
   */
  consoleInput?: boolean;
  extraArgs?: readonly string[];
}

const OVMF_DIR = "/usr/share/OVMF";

/**
 * The CPU model under software emulation. With "max", glibc and OpenSSL pick their SSE4.2 and
 * AVX2 routines, whose instructions TCG emulates slowly: booting a test system to power-off
 * took 115-118 s with "max", 100-106 s with Nehalem or Westmere, and 76-86 s with "qemu64"
 * (the x86-64 baseline, SSE2), on one machine in one run.
 */
export const TCG_CPU = "qemu64";

export function qemuAccel(): "tcg" | "kvm" {
  const wanted = process.env.LIFEBOAT_QEMU_ACCEL;
  if (wanted === undefined || wanted === "" || wanted === "tcg") return "tcg";
  if (wanted === "kvm") return "kvm";
  throw usageError(
    "LB_QEMU_ACCEL",
    `LIFEBOAT_QEMU_ACCEL is "${wanted}".`,
    'Set it to "tcg" (the default) or "kvm".',
  );
}

/** The OVMF code and VARS template for the chosen Secure Boot mode. */
export function ovmfFiles(secureBoot = false): { code: string; varsTemplate: string } {
  const suffix = secureBoot ? ".ms.fd" : ".fd";
  const code = path.join(OVMF_DIR, `OVMF_CODE_4M${suffix}`);
  const varsTemplate = path.join(OVMF_DIR, `OVMF_VARS_4M${suffix}`);
  for (const file of [code, varsTemplate]) {
    if (!existsSync(file)) {
      throw environmentError("LB_OVMF_MISSING", `${file} is missing.`, "apt-get install ovmf");
    }
  }
  return { code, varsTemplate };
}

function consoleChardev(consoleLog: string, socket: string | undefined): string[] {
  if (socket === undefined) throw new Error("console input needs a socket path");
  return [
    "-chardev",
    `socket,id=console0,path=${socket},server=on,wait=off,logfile=${consoleLog}`,
    "-serial",
    "chardev:console0",
  ];
}

/** The QEMU command line for these options (pure apart from the OVMF existence check). */
export function qemuArgs(
  options: VmOptions,
  files: {
    consoleLog: string;
    dataLog: string;
    qmpSocket: string;
    consoleSocket?: string;
    vars?: string;
  },
): string[] {
  const accel = options.accel ?? qemuAccel();
  const firmware = options.firmware ?? "bios";
  const secureBoot = firmware === "uefi" && options.uefi?.secureBoot === true;
  const args = [
    "-name",
    options.name,
    "-nodefaults",
    "-machine",
    secureBoot ? "q35,smm=on" : "q35",
    "-accel",
    accel,
    "-cpu",
    options.cpu ?? (accel === "kvm" ? "host" : TCG_CPU),
    "-m",
    String(options.memoryMiB ?? 1024),
    "-smp",
    String(options.cpus ?? 2),
    "-display",
    "none",
    "-vga",
    "std",
    ...(options.consoleInput === true
      ? consoleChardev(files.consoleLog, files.consoleSocket)
      : ["-serial", `file:${files.consoleLog}`]),
    "-serial",
    `file:${files.dataLog}`,
    "-qmp",
    `unix:${files.qmpSocket},server=on,wait=off`,
    "-no-reboot",
  ];
  if (firmware === "uefi") {
    if (files.vars === undefined) throw new Error("UEFI needs a VARS file");
    const { code } = ovmfFiles(secureBoot);
    if (secureBoot) args.push("-global", "driver=cfi.pflash01,property=secure,value=on");
    args.push("-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${code}`);
    args.push("-drive", `if=pflash,format=raw,unit=1,file=${files.vars}`);
  }
  if (options.kernel !== undefined) {
    args.push("-kernel", options.kernel.vmlinuz);
    if (options.kernel.initrd !== undefined) args.push("-initrd", options.kernel.initrd);
    if (options.kernel.append !== undefined) args.push("-append", options.kernel.append);
  }
  (options.disks ?? []).forEach((disk, index) => {
    const id = `disk${index}`;
    const drive = [
      `file=${disk.file}`,
      `format=${disk.format ?? "raw"}`,
      "if=none",
      `id=${id}`,
      // The images are scratch: skipping flushes is much faster and QEMU still writes
      // everything to the file before it exits.
      "cache=unsafe",
      disk.readOnly ? "readonly=on" : "discard=unmap",
    ];
    args.push("-drive", drive.join(","));
    const bus = disk.bus ?? "virtio";
    const device = [bus === "nvme" ? "nvme" : "virtio-blk-pci", `drive=${id}`];
    const serial = disk.serial ?? (bus === "nvme" ? `LBNVME${index}` : undefined);
    if (serial !== undefined) device.push(`serial=${serial}`);
    if (disk.bootIndex !== undefined) device.push(`bootindex=${disk.bootIndex}`);
    args.push("-device", device.join(","));
  });
  if (options.network === undefined) {
    args.push("-nic", "none");
  } else {
    const netdev = ["user", "id=net0"];
    if (options.network.restrict !== false) netdev.push("restrict=on");
    for (const fwd of options.network.guestfwd ?? []) {
      netdev.push(
        `guestfwd=tcp:${fwd.address}:${fwd.port}-cmd:socat - TCP:127.0.0.1:${fwd.hostPort}`,
      );
    }
    for (const fwd of options.network.hostfwd ?? []) {
      netdev.push(`hostfwd=tcp:127.0.0.1:${fwd.hostPort}-:${fwd.guestPort}`);
    }
    if (options.network.tftp !== undefined) {
      netdev.push(`tftp=${options.network.tftp.dir}`, `bootfile=${options.network.tftp.bootfile}`);
    }
    const nic = ["virtio-net-pci", "netdev=net0"];
    if (options.network.bootIndex !== undefined) nic.push(`bootindex=${options.network.bootIndex}`);
    args.push("-netdev", netdev.join(","), "-device", nic.join(","));
  }
  args.push(...(options.extraArgs ?? []));
  return args;
}

export interface WaitResult {
  /** The whole log at the moment the pattern matched. */
  text: string;
  match: RegExpMatchArray;
  /** Milliseconds since the VM was started. */
  elapsedMs: number;
}

export class Vm {
  readonly name: string;
  readonly dir: string;
  readonly consoleLog: string;
  readonly dataLog: string;
  readonly qmpSocket: string;
  readonly consoleSocket: string;
  readonly qemuLog: string;
  /** The UEFI VARS file this VM boots with; keep it to boot the same disks again. */
  readonly varsFile: string | undefined;
  readonly startedAt: number;
  private readonly process: ResultPromise;
  private exitCode: number | undefined;
  private exited = false;
  private readonly exitPromise: Promise<number | undefined>;

  constructor(init: {
    options: VmOptions;
    files: {
      consoleLog: string;
      dataLog: string;
      qmpSocket: string;
      consoleSocket: string;
      qemuLog: string;
    };
    vars: string | undefined;
    process: ResultPromise;
  }) {
    this.name = init.options.name;
    this.dir = init.options.dir;
    this.consoleLog = init.files.consoleLog;
    this.dataLog = init.files.dataLog;
    this.qmpSocket = init.files.qmpSocket;
    this.consoleSocket = init.files.consoleSocket;
    this.qemuLog = init.files.qemuLog;
    this.varsFile = init.vars;
    this.process = init.process;
    this.startedAt = performance.now();
    this.exitPromise = this.process.then((result) => {
      this.exited = true;
      this.exitCode = result.exitCode;
      return result.exitCode;
    });
  }

  get running(): boolean {
    return !this.exited;
  }

  /** QEMU's process id (for pid files that let a restarted server clean up). */
  get pid(): number | undefined {
    return this.process.pid;
  }

  elapsedMs(): number {
    return performance.now() - this.startedAt;
  }

  consoleText(): string {
    return readText(this.consoleLog);
  }

  dataText(): string {
    return readText(this.dataLog);
  }

  /**
   * Waits until `pattern` appears on the console (or on the data port). On a timeout, or
   * when QEMU exits first, the VM is stopped (with a screenshot next to the logs) and the
   * error names the log to read.
   */
  async waitFor(
    pattern: RegExp,
    options: { timeoutMs: number; port?: "console" | "data"; what?: string },
  ): Promise<WaitResult> {
    const file = options.port === "data" ? this.dataLog : this.consoleLog;
    const what = options.what ?? String(pattern);
    const deadline = performance.now() + options.timeoutMs;
    for (;;) {
      const exitedBefore = this.exited;
      const text = readText(file);
      const match = text.match(pattern);
      if (match !== null) return { text, match, elapsedMs: this.elapsedMs() };
      if (exitedBefore) {
        throw checkFailed(
          "LB_VM_EXITED",
          `VM ${this.name} stopped (QEMU exit code ${this.exitCode}) before ${what} appeared.`,
          `Read ${file}${existsSync(this.qemuLog) ? ` and ${this.qemuLog}` : ""}. Last lines:\n${tail(readText(this.consoleLog))}`,
        );
      }
      if (performance.now() > deadline) {
        const shot = path.join(this.dir, `${this.name}.timeout.png`);
        await this.screendump(shot).catch(() => undefined);
        await this.stop();
        throw checkFailed(
          "LB_VM_TIMEOUT",
          `VM ${this.name}: ${what} did not appear within ${Math.round(options.timeoutMs / 1000)} s.`,
          `Read ${file} (screenshot: ${shot}). Last lines:\n${tail(readText(this.consoleLog))}`,
        );
      }
      await Promise.race([sleep(250), this.exitPromise]);
    }
  }

  /** Waits for QEMU to exit by itself (the guest powered off); stops it on a timeout. */
  async waitForExit(timeoutMs: number): Promise<number | undefined> {
    const outcome = await Promise.race([
      this.exitPromise.then(() => "exited" as const),
      sleep(timeoutMs).then(() => "timeout" as const),
    ]);
    if (outcome === "timeout") {
      await this.stop();
      throw checkFailed(
        "LB_VM_NO_POWEROFF",
        `VM ${this.name} did not power off within ${Math.round(timeoutMs / 1000)} s.`,
        `Read ${this.consoleLog}.`,
      );
    }
    return this.exitCode;
  }

  /**
   * Types a line on the console, as an operator at the serial port would (Enter is CR). The
   * VM must have been started with consoleInput.
   */
  async typeLine(text: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const socket = net.createConnection(this.consoleSocket);
      socket.on("error", reject);
      // Whatever the guest prints meanwhile is in the console log already.
      socket.on("data", () => undefined);
      socket.on("connect", () => socket.end(`${text}\r`, () => resolve()));
    });
  }

  /** Sends one QMP command and returns its result. */
  async qmp(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return qmpExecute(this.qmpSocket, command, args);
  }

  /** A PNG picture of the VM's screen. */
  async screendump(file: string): Promise<string> {
    await this.qmp("screendump", { filename: path.resolve(file), format: "png" });
    return file;
  }

  /** Stops QEMU (TERM, then KILL) and waits for it. Safe to call more than once. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.process.kill("SIGTERM");
    const outcome = await Promise.race([
      this.exitPromise.then(() => "exited" as const),
      sleep(5000).then(() => "slow" as const),
    ]);
    if (outcome === "slow") {
      this.process.kill("SIGKILL");
      await this.exitPromise;
    }
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }
}

/**
 * A qcow2 disk: blank with a virtual size in bytes, or an overlay on `backing` that takes
 * every write while the backing file stays as it is.
 */
export async function createQcow2(
  file: string,
  from: { sizeBytes: number } | { backing: string; format: "raw" | "qcow2" },
): Promise<void> {
  const source = "backing" in from ? ["-F", from.format, "-b", from.backing] : [];
  await runTool([
    "qemu-img",
    "create",
    "-q",
    "-f",
    "qcow2",
    ...source,
    file,
    ...("sizeBytes" in from ? [String(from.sizeBytes)] : []),
  ]);
}

/** Starts a VM. Call stop() in a finally block, or use withVm(). */
export async function startVm(options: VmOptions): Promise<Vm> {
  const qemu = findTool("qemu-system-x86_64");
  if (qemu === undefined) throw missingToolError("qemu-system-x86_64", "VMs need it");
  mkdirSync(options.dir, { recursive: true });
  const base = path.join(options.dir, options.name);
  const files = {
    consoleLog: `${base}.console.log`,
    dataLog: `${base}.data.log`,
    // Unix socket paths are limited to 108 bytes; keep it short and absolute.
    qmpSocket: path.resolve(`${base}.qmp`),
    consoleSocket: path.resolve(`${base}.tty`),
    qemuLog: `${base}.qemu.log`,
  };
  for (const file of [files.consoleLog, files.dataLog, files.qmpSocket, files.consoleSocket])
    rmSync(file, { force: true });
  let vars: string | undefined;
  if ((options.firmware ?? "bios") === "uefi") {
    if (options.uefi?.vars !== undefined) {
      vars = options.uefi.vars;
    } else {
      vars = `${base}.vars.fd`;
      copyFileSync(ovmfFiles(options.uefi?.secureBoot).varsTemplate, vars);
    }
  }
  const args = qemuArgs(options, { ...files, vars });
  const child = execa(qemu, args, {
    reject: false,
    stdin: "ignore",
    stdout: { file: files.qemuLog },
    stderr: { file: files.qemuLog, append: true },
  });
  const vm = new Vm({ options, files, vars, process: child });
  // QEMU fails fast on bad arguments; report that instead of a later timeout.
  await Promise.race([sleep(300), child.then(() => undefined)]);
  if (!vm.running) {
    throw environmentError(
      "LB_QEMU_START",
      `QEMU did not start: ${readText(files.qemuLog).trim()}`,
      `The command was: qemu-system-x86_64 ${args.join(" ")}`,
    );
  }
  return vm;
}

/** Runs `body` with a started VM and always stops the VM afterwards. */
export async function withVm<T>(options: VmOptions, body: (vm: Vm) => Promise<T>): Promise<T> {
  const vm = await startVm(options);
  try {
    return await body(vm);
  } finally {
    await vm.stop();
  }
}

// ---------------------------------------------------------------------------------------
// QMP

async function qmpExecute(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const socket = net.createConnection(socketPath);
  socket.setEncoding("utf8");
  try {
    const lines = qmpLines(socket);
    const next = async (): Promise<Record<string, unknown>> => {
      for (;;) {
        const { value, done } = await lines.next();
        if (done) throw new Error("QMP connection closed");
        const message = JSON.parse(value) as Record<string, unknown>;
        if (!("event" in message)) return message;
      }
    };
    await next(); // greeting
    socket.write(`${JSON.stringify({ execute: "qmp_capabilities" })}\n`);
    await next();
    socket.write(`${JSON.stringify({ execute: command, arguments: args ?? {} })}\n`);
    const reply = await next();
    if ("error" in reply) {
      throw environmentError("LB_QMP", `QMP ${command} failed: ${JSON.stringify(reply.error)}`);
    }
    return reply.return;
  } finally {
    socket.destroy();
  }
}

async function* qmpLines(socket: net.Socket): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of socket) {
    buffer += String(chunk);
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line !== "") yield line;
      newline = buffer.indexOf("\n");
    }
  }
}

// ---------------------------------------------------------------------------------------
// Data out of the guest over a serial port

export interface DataBlocks {
  blocks: Map<string, Buffer>;
  /** Blocks that began but never ended (the guest died, or the log is still growing). */
  unterminated: string[];
  /** Lines inside blocks that were not base64 and were skipped (interleaved messages). */
  skippedLines: number;
}

const BEGIN = /^===BEGIN (.+)===$/;
const END = /^===END (.+)===$/;
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Extracts `===BEGIN name===` / base64 lines / `===END name===` blocks from serial output.
 * Tolerates CR LF line ends, lines that aren't base64 inside a block (a kernel message), and
 * anything outside blocks. A later block with the same name replaces an earlier one.
 */
export function extractDataBlocks(text: string): DataBlocks {
  const blocks = new Map<string, Buffer>();
  const unterminated: string[] = [];
  let skippedLines = 0;
  let current: { name: string; lines: string[] } | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r/g, "").trim();
    const begin = BEGIN.exec(line);
    if (begin?.[1] !== undefined) {
      if (current !== undefined) unterminated.push(current.name);
      current = { name: begin[1], lines: [] };
      continue;
    }
    if (current === undefined) continue;
    const end = END.exec(line);
    if (end?.[1] === current.name) {
      blocks.set(current.name, Buffer.from(current.lines.join(""), "base64"));
      current = undefined;
      continue;
    }
    if (line !== "" && BASE64_LINE.test(line)) current.lines.push(line);
    else if (line !== "") skippedLines++;
  }
  if (current !== undefined) unterminated.push(current.name);
  return { blocks, unterminated, skippedLines };
}

/**
 * Shell functions for the guest side: `emit_file NAME FILE` and `emit_text NAME TEXT` write
 * a block to the data port (ttyS1), which is put in raw mode first so nothing is translated.
 */
export function serialEmitShell(port = "/dev/ttyS1"): string {
  return `
LB_DATA_PORT=${port}
stty -F "$LB_DATA_PORT" raw -echo 2>/dev/null || true
emit_file() {
  { echo "===BEGIN $1==="; base64 < "$2"; echo "===END $1==="; } > "$LB_DATA_PORT"
}
emit_text() {
  { echo "===BEGIN $1==="; printf '%s' "$2" | base64; echo "===END $1==="; } > "$LB_DATA_PORT"
}
`;
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function tail(text: string, lines = 15): string {
  return text
    .replace(/\r/g, "")
    .split("\n")
    .slice(-lines)
    .map((line) => `    ${line}`)
    .join("\n");
}

/** Stops a QEMU a killed server left behind, if the pid still names one. */
export function stopStaleQemu(pidFile: string): string | null {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return null; // gone already
  }
  if (!cmdline.includes("qemu-system")) return null; // the pid was reused by something else
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return null;
  }
  return `stopped QEMU ${pid}`;
}
