// Warm standby ("no restore"): the disks of each host's last passed drill are kept, so the
// machine can be started at once instead of restored.
//
//   DATA/standby/HOST/standby.json   which drill and snapshot, the VM's shape, the drill's RTO
//   DATA/standby/HOST/diskN.qcow2    the drilled disks, as the drill left them
//   DATA/standby/HOST/vars.fd        UEFI variables (boot entries) for UEFI hosts
//   DATA/standby/HOST/run/           a started standby: overlays on the disks, logs, pid
//
// A new passed drill replaces the host's image with one rename (the old one is deleted
// after). Disk use is capped: when the images together exceed the cap, the oldest are
// dropped (never the one just kept), and each drop is recorded with its reason in
// DATA/standby/dropped.json, which `lifeboat standby list` shows.
//
// A started standby boots overlays on the image (the image stays as drilled), with the
// network the operator asked for: isolated (no network), or user networking with port
// forwards. Its RTO is the time from QEMU's start to LIFEBOAT-STANDBY-READY, the marker the
// drill left in the image. It runs as a child of the server; stopping the server stops it.

import {
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import {
  StandbyDropSchema,
  StandbyImageSchema,
  type StandbyImage,
  type StandbyStart,
  type StandbyState,
} from "../../common/drills.ts";
import { runTool } from "../../common/exec.ts";
import { formatBytes } from "../../common/units.ts";
import { STANDBY_READY_MARKER } from "../../rescue/recover/drill-check.ts";
import { HttpError } from "../store.ts";
import { createQcow2, startVm, stopStaleQemu, type Vm } from "./qemu.ts";
import type { VmShape } from "./shape.ts";

/** Bytes a file or tree takes on disk. */
function allocated(file: string): number {
  const stat = statSync(file);
  if (!stat.isDirectory()) return stat.blocks * 512;
  return readdirSync(file).reduce((sum, name) => sum + allocated(path.join(file, name)), 0);
}

export class StandbyManager {
  readonly #dir: string;
  readonly #capBytes: number;
  readonly #running = new Map<string, { vm: Vm; bootSeconds: number | null }>();

  constructor(dataDir: string, capBytes: number) {
    this.#dir = path.join(dataDir, "standby");
    this.#capBytes = capBytes;
    // A standby a killed server left running has no owner any more: stop it. A folder
    // starting with "." is a keep() a crash cut short: incomplete, so it goes.
    if (existsSync(this.#dir)) {
      for (const name of readdirSync(this.#dir)) {
        if (name.startsWith(".")) {
          rmSync(path.join(this.#dir, name), { recursive: true, force: true });
          continue;
        }
        const run = path.join(this.#dir, name, "run");
        if (!existsSync(path.join(run, "qemu.pid"))) continue;
        stopStaleQemu(path.join(run, "qemu.pid"));
        rmSync(run, { recursive: true, force: true });
      }
    }
  }

  get enabled(): boolean {
    return this.#capBytes > 0;
  }

  #isRunning(host: string): boolean {
    return this.#running.get(host)?.vm.running === true;
  }

  #hostDir(host: string) {
    return path.join(this.#dir, host);
  }

  /** Takes over a passed drill's disks (moved, not copied) as the host's standby image. */
  async keep(input: {
    host: string;
    drill: string;
    snapshot: string;
    shape: VmShape;
    disks: string[];
    vars: string | undefined;
    drillRtoSeconds: number | null;
  }): Promise<void> {
    if (!this.enabled) return;
    if (this.#isRunning(input.host)) {
      // Never swap disks under a running standby; the drill's disks are deleted with it.
      this.#recordDrops([
        {
          host: input.host,
          drill: input.drill,
          at: new Date().toISOString(),
          reason: `not kept: the standby of ${input.host} was running, and its disks are not replaced under it`,
        },
      ]);
      return;
    }
    const staging = path.join(this.#dir, `.${input.host}.${input.drill}`);
    rmSync(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true, mode: 0o700 });
    const disks = input.disks.map((file, i) => {
      const name = `disk${i}.qcow2`;
      renameSync(file, path.join(staging, name));
      return { file: name, bus: input.shape.disks[i]?.bus ?? "virtio" };
    });
    if (input.vars) await copyFile(input.vars, path.join(staging, "vars.fd"));
    const image: StandbyImage = {
      host: input.host,
      drill: input.drill,
      snapshot: input.snapshot,
      keptAt: new Date().toISOString(),
      firmware: input.shape.firmware,
      secureBoot: input.shape.secureBoot,
      memoryMiB: input.shape.memoryMiB,
      disks,
      drillRtoSeconds: input.drillRtoSeconds,
      bytes: allocated(staging),
    };
    await writeFile(path.join(staging, "standby.json"), `${JSON.stringify(image, null, 2)}\n`);
    const target = this.#hostDir(input.host);
    const old = `${staging}.old`;
    if (existsSync(target)) renameSync(target, old);
    renameSync(staging, target);
    rmSync(old, { recursive: true, force: true });
    this.#enforceCap(input.host);
  }

  #images(): StandbyImage[] {
    if (!existsSync(this.#dir)) return [];
    const out: StandbyImage[] = [];
    for (const name of readdirSync(this.#dir)) {
      if (name.startsWith(".")) continue; // a keep() in progress
      const file = path.join(this.#dir, name, "standby.json");
      if (!existsSync(file)) continue;
      const parsed = StandbyImageSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
      if (parsed.success) out.push(parsed.data);
    }
    return out.sort((a, b) => b.keptAt.localeCompare(a.keptAt));
  }

  #dropped(): z.infer<typeof StandbyDropSchema>[] {
    const file = path.join(this.#dir, "dropped.json");
    if (!existsSync(file)) return [];
    const parsed = z.array(StandbyDropSchema).safeParse(JSON.parse(readFileSync(file, "utf8")));
    return parsed.success ? parsed.data : [];
  }

  /** Prepends to dropped.json (the newest 50 are kept). */
  #recordDrops(drops: z.infer<typeof StandbyDropSchema>[]) {
    if (drops.length === 0) return;
    writeFileSync(
      path.join(this.#dir, "dropped.json"),
      `${JSON.stringify([...drops, ...this.#dropped()].slice(0, 50), null, 2)}\n`,
    );
  }

  /** What a host's folder takes: its image, and an export of it waiting to be fetched. */
  #usedBy(image: StandbyImage): number {
    const out = path.join(this.#hostDir(image.host), "export");
    return image.bytes + (existsSync(out) ? allocated(out) : 0);
  }

  #enforceCap(justKept: string) {
    const images = this.#images(); // newest first
    let used = images.reduce((sum, i) => sum + this.#usedBy(i), 0);
    const drops: z.infer<typeof StandbyDropSchema>[] = [];
    for (const image of [...images].reverse()) {
      if (used <= this.#capBytes) break;
      if (image.host === justKept || this.#isRunning(image.host)) continue;
      used -= this.#usedBy(image);
      rmSync(this.#hostDir(image.host), { recursive: true, force: true });
      drops.push({
        host: image.host,
        drill: image.drill,
        at: new Date().toISOString(),
        reason: `dropped to stay under the standby cap of ${formatBytes(this.#capBytes)} (it was the oldest image, ${formatBytes(image.bytes)})`,
      });
    }
    this.#recordDrops(drops.reverse()); // newest first, like the file
  }

  state(): StandbyState {
    const images = this.#images();
    return {
      capBytes: this.#capBytes,
      usedBytes: images.reduce((sum, i) => sum + this.#usedBy(i), 0),
      images: images.map((image) => {
        const running = this.#isRunning(image.host);
        return {
          ...image,
          running,
          bootSeconds: running ? (this.#running.get(image.host)!.bootSeconds ?? null) : null,
        };
      }),
      dropped: this.#dropped(),
    };
  }

  #image(host: string): StandbyImage {
    const image = this.#images().find((i) => i.host === host);
    if (!image) {
      throw new HttpError(
        404,
        "LB_STANDBY_NONE",
        `There is no standby image of ${host}.`,
        this.enabled
          ? "A host gets one with its first passed drill ('lifeboat drill run HOST'); see 'lifeboat standby list' for what was dropped."
          : "Warm standby is off on this server (--standby-max 0).",
      );
    }
    return image;
  }

  /** Boots the host's standby and waits for its marker; returns the boot time (its RTO). */
  async start(host: string, request: StandbyStart): Promise<{ bootSeconds: number; log: string }> {
    const image = this.#image(host);
    if (this.#isRunning(host)) {
      throw new HttpError(
        409,
        "LB_STANDBY_RUNNING",
        `The standby of ${host} is already running.`,
        "Stop it first with 'lifeboat standby stop'.",
      );
    }
    const dir = this.#hostDir(host);
    const run = path.join(dir, "run");
    rmSync(run, { recursive: true, force: true });
    await mkdir(run, { recursive: true });
    const disks = [];
    for (const [i, disk] of image.disks.entries()) {
      const overlay = path.join(run, `disk${i}.qcow2`);
      await createQcow2(overlay, { backing: path.join(dir, disk.file), format: "qcow2" });
      disks.push({
        file: overlay,
        format: "qcow2" as const,
        bus: disk.bus,
        serial: `LBSTANDBY${i}`,
        bootIndex: image.firmware === "bios" ? i : undefined,
      });
    }
    let vars: string | undefined;
    if (image.firmware === "uefi" && existsSync(path.join(dir, "vars.fd"))) {
      vars = path.join(run, "vars.fd");
      await copyFile(path.join(dir, "vars.fd"), vars);
    }
    const vm = await startVm({
      name: "standby",
      dir: run,
      firmware: image.firmware,
      uefi: { secureBoot: image.secureBoot, vars },
      disks,
      memoryMiB: image.memoryMiB,
      cpus: 1,
      network:
        request.network === "isolated" ? undefined : { restrict: false, hostfwd: request.hostfwd },
    });
    await writeFile(path.join(run, "qemu.pid"), `${vm.pid}\n`);
    const entry = { vm, bootSeconds: null as number | null };
    this.#running.set(host, entry);
    try {
      const found = await vm.waitFor(new RegExp(STANDBY_READY_MARKER), {
        timeoutMs: request.timeoutSeconds * 1000,
        what: "the standby's ready marker",
      });
      entry.bootSeconds = found.elapsedMs / 1000;
      return { bootSeconds: entry.bootSeconds, log: vm.consoleLog };
    } catch (error) {
      await this.stop(host);
      throw new HttpError(
        500,
        "LB_STANDBY_BOOT",
        `The standby of ${host} did not come up: ${(error as Error).message.split("\n")[0]}`,
        `Read ${vm.consoleLog}.`,
      );
    }
  }

  async stop(host: string): Promise<boolean> {
    const entry = this.#running.get(host);
    if (!entry) return false;
    await entry.vm.stop();
    this.#running.delete(host);
    rmSync(path.join(this.#hostDir(host), "run", "qemu.pid"), { force: true });
    return true;
  }

  async stopAll() {
    for (const host of [...this.#running.keys()]) await this.stop(host);
  }

  /** The image's disks, converted for another hypervisor into `outDir` (on this machine). */
  async export(host: string, format: "qcow2" | "raw"): Promise<{ files: string[] }> {
    const image = this.#image(host);
    const dir = this.#hostDir(host);
    const out = path.join(dir, "export");
    rmSync(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    const files: string[] = [];
    for (const disk of image.disks) {
      const target = path.join(out, disk.file.replace(/\.qcow2$/, `.${format}`));
      await runTool(["qemu-img", "convert", "-O", format, path.join(dir, disk.file), target]);
      files.push(target);
    }
    // The export counts against the cap like the image: older images of other hosts make room.
    this.#enforceCap(host);
    return { files };
  }

  exportFile(host: string, name: string): string | null {
    if (!/^disk\d+\.(qcow2|raw)$/.test(name)) return null;
    const file = path.join(this.#hostDir(host), "export", name);
    return existsSync(file) ? file : null;
  }
}
