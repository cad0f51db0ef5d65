// Drills that must fail, on a snapshot scenario 1 just drilled successfully, and a server
// killed in the middle of a drill. Each failure must name its phase and a readable reason,
// and leave no QEMU process and no drill disk behind:
//
//   budget   an RTO budget of 20 s: the drill is stopped during the rescue boot
//   probe    a user probe that exits 3: the restored machine boots, level 4 fails (only
//            with { probe: true }: it costs a whole restore, so `make vm-test-all` runs it)
//   killed   `lifeboat server` (a child process) is killed with SIGKILL while the drill's
//            rescue VM runs; the restarted server stops that QEMU, deletes the disks and
//            marks the drill failed
//   standby  the disks of scenario 1's passed drill were kept as the host's warm standby:
//            it boots (isolated) to its ready marker, and exports as a qcow2 file
//
// The drill whose snapshot has a broken bootloader is scenario "1x" in run.ts (a source
// system without GRUB's platform files), in `make vm-test-all`.

import { spawn, type ChildProcess } from "node:child_process";
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import path from "node:path";
import { ApiClient } from "../agent/client/api.ts";
import type { Drill, DrillSettings } from "../common/drills.ts";
import { PROJECT_ROOT } from "./lib/debian-kernel.ts";

export interface DrillFaultsContext {
  /** The data directory of the server that drilled scenario 1 (closed by now). */
  dataDir: string;
  host: string;
  snapshot: string;
  kernel: string;
  modules: string;
  keyring: string;
}

const say = (line: string) => console.log(`[drill-faults] ${line}`);

/** QEMU processes whose command line names this data directory. */
function qemuProcessesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8");
      if (cmdline.includes("qemu-system") && cmdline.includes(dir)) out.push(Number(name));
    } catch {
      // gone in between
    }
  }
  return out;
}

/** What a finished drill left in its folder that it should not have. */
function leftovers(dataDir: string, drill: Drill): string[] {
  const dir = path.join(dataDir, "drills", drill.id);
  const problems: string[] = [];
  if (existsSync(path.join(dir, "tmp")))
    problems.push(`${drill.id}: its disks (tmp/) are still there`);
  if (existsSync(path.join(dir, "qemu.pid"))) problems.push(`${drill.id}: qemu.pid is still there`);
  const running = qemuProcessesUnder(dir);
  if (running.length > 0) problems.push(`${drill.id}: QEMU still runs (pid ${running.join(", ")})`);
  return problems;
}

interface ChildServer {
  child: ChildProcess;
  admin: ApiClient;
  exited: Promise<void>;
}

async function startServer(context: DrillFaultsContext, port: number): Promise<ChildServer> {
  const child = spawn(
    path.join(PROJECT_ROOT, "bin", "lifeboat"),
    [
      "server",
      "--data",
      context.dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--rescue-kernel",
      context.kernel,
      "--rescue-modules",
      context.modules,
      "--drill-keys",
      context.keyring,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const token = readFileSync(path.join(context.dataDir, "admin.token"), "utf8").trim();
  const admin = new ApiClient(`http://127.0.0.1:${port}`, token);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${log.slice(-2000)}`);
    try {
      await admin.whoami();
      return { child, admin, exited };
    } catch {
      if (Date.now() > deadline) throw new Error(`the server did not start: ${log.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function follow(admin: ApiClient, drill: Drill, until?: (phase: string) => boolean) {
  let last = drill;
  for await (const event of admin.drillEvents(drill.id)) {
    if (event.type === "state") last = event.drill;
    else if (until?.(`${event.phase} ${event.state}`)) return last;
  }
  return last;
}

/** A drill whose user probe exits 3 must fail at level 4 and name the probe. */
async function probeFault(
  admin: ApiClient,
  context: DrillFaultsContext,
  settings: DrillSettings,
): Promise<string[]> {
  const problems: string[] = [];
  await admin.putDrillSettings(context.host, {
    ...settings,
    schedule: "off",
    probes: [{ name: "must-fail", command: "echo not healthy; exit 3", timeoutSeconds: 30 }],
  });
  const probe = await follow(
    admin,
    await admin.requestDrill({ host: context.host, snapshot: context.snapshot }),
  );
  say(`probe: ${probe.state} in ${probe.failedPhase}: ${probe.reason}`);
  if (
    probe.state !== "failed" ||
    probe.failedPhase !== "probes" ||
    probe.levels.boot !== true ||
    probe.levels.probes !== false ||
    !/must-fail/.test(probe.reason ?? "")
  )
    problems.push(
      `probe: expected a level-4 failure naming the probe, got ${probe.state} in ${probe.failedPhase}: ${probe.reason}`,
    );
  problems.push(...leftovers(context.dataDir, probe));
  await admin.putDrillSettings(context.host, settings);
  return problems;
}

/** Runs the cases; returns the problems (none when every case failed as it should). */
export async function runDrillFaults(
  context: DrillFaultsContext,
  options: { probe: boolean },
): Promise<string[]> {
  const problems: string[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let server = await startServer(context, port);
  try {
    const { admin } = server;
    const settings = await admin.getDrillSettings(context.host);

    // budget
    const budget = await follow(
      admin,
      await admin.requestDrill({
        host: context.host,
        snapshot: context.snapshot,
        maxRtoSeconds: 20,
      }),
    );
    say(`budget: ${budget.state} in ${budget.failedPhase}: ${budget.reason}`);
    if (budget.state !== "failed" || !/RTO budget of 20 s/.test(budget.reason ?? ""))
      problems.push(
        `budget: expected a failure for the RTO budget, got ${budget.state}: ${budget.reason}`,
      );
    problems.push(...leftovers(context.dataDir, budget));

    if (options.probe) problems.push(...(await probeFault(admin, context, settings)));

    // killed
    const victim = await admin.requestDrill({ host: context.host, snapshot: context.snapshot });
    await follow(admin, victim, (e) => e === "rescue-boot start");
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const dir = path.join(context.dataDir, "drills", victim.id);
    const before = qemuProcessesUnder(dir);
    if (before.length === 0) problems.push("killed: no QEMU ran for the drill before the kill");
    server.child.kill("SIGKILL");
    await server.exited;
    say(`killed: server killed with the drill's QEMU running (pid ${before.join(", ")})`);
    server = await startServer(context, port);
    const after = await server.admin.getDrill(victim.id);
    say(`killed: after the restart ${after.state} in ${after.failedPhase}: ${after.reason}`);
    if (after.state !== "failed" || !/server stopped during the drill/.test(after.reason ?? ""))
      problems.push(
        `killed: expected the drill marked failed, got ${after.state}: ${after.reason}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    problems.push(...leftovers(context.dataDir, after));

    // standby
    const state = await server.admin.standbyState();
    const image = state.images.find((i) => i.host === context.host);
    if (!image)
      problems.push(`standby: no image of ${context.host} was kept: ${JSON.stringify(state)}`);
    else {
      const started = await server.admin.standbyStart(context.host, { network: "isolated" });
      say(
        `standby: ${context.host} (drill ${image.drill}, ${(image.bytes / 2 ** 30).toFixed(2)} GiB) booted in ${started.bootSeconds.toFixed(0)} s; the drill's RTO was ${image.drillRtoSeconds?.toFixed(0)} s`,
      );
      const running = (await server.admin.standbyState()).images.find(
        (i) => i.host === context.host,
      );
      if (!running?.running) problems.push("standby: it does not show as running after its start");
      await server.admin.standbyStop(context.host);
      const out = mkdtempSync(path.join(context.dataDir, "..", "standby-export-"));
      const { files } = await server.admin.standbyExport(context.host, "qcow2");
      for (const file of files)
        await server.admin.standbyDownload(
          context.host,
          file.name,
          createWriteStream(path.join(out, file.name)),
        );
      const got = files.map((f) => statSync(path.join(out, f.name)).size);
      say(
        `standby: exported ${files.map((f, i) => `${f.name} ${(got[i]! / 2 ** 20).toFixed(0)} MiB`).join(", ")}`,
      );
      if (files.length !== image.disks.length || got.some((size, i) => size !== files[i]!.bytes))
        problems.push(
          `standby: the export is incomplete: ${JSON.stringify(files)} vs ${got.join(", ")}`,
        );
      rmSync(out, { recursive: true, force: true });
    }
  } finally {
    server.child.kill("SIGTERM");
    await server.exited;
  }
  return problems;
}
