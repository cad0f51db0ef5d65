// The drill orchestrator: the server's queue of restore drills and the runs behind it.
//
//   queued    a drill was asked for (by hand, after a snapshot, or by the schedule)
//   running   at most `concurrency` at once (each VM takes a core under TCG)
//   passed    the restored machine booted and every verification level held
//   failed    with the phase that failed and a reason an operator can act on
//
// One run: a drill token for the host (read-only, valid for this drill only, held in
// memory), the snapshot's manifest and layout read back through the server's own API, the
// expected hashes of sampled files, the host's rescue ISO built with a drill spec, then
// recoverOntoVm() (vm.ts) and judgeDrill() (verify.ts). The guest reaches the server
// through a plain-HTTP listener the engine opens on 127.0.0.1, whatever --listen and TLS
// say, and nothing else.
//
// Every path out stops the VM and deletes the drill's disks. A server killed mid-drill
// leaves DATA/drills/ID/qemu.pid: the next start stops that QEMU, deletes DATA/drills/ID/tmp
// and marks the drill failed. Evidence (serial logs, screenshots, probe output) stays in
// DATA/drills/ID for the newest `keepEvidence` drills of each host.

import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { ApiClient } from "../../agent/client/api.ts";
import { loadManifest } from "../../agent/restore/restore.ts";
import {
  DrillSettingsSchema,
  type Drill,
  type DrillEvent,
  type DrillPhaseName,
  type DrillRequest,
  type DrillSettings,
} from "../../common/drills.ts";
import { LifeboatError, usageError } from "../../common/errors.ts";
import { loadKeyFile, type RepoKeys } from "../../common/repository/keys.ts";
import { serializeLayout } from "../../layouts/document.ts";
import type { Layout } from "../../layouts/schema.ts";
import { buildRescueImage } from "../../rescue/build.ts";
import { DrillSpecSchema, type DrillSpec } from "../../rescue/recover/drill-check.ts";
import type { Catalog } from "../catalog.ts";
import { HttpError } from "../store.ts";
import { sampleFileHashes } from "./samples.ts";
import { formatSchedule, isDue, parseSchedule } from "./schedule.ts";
import { shapeVm } from "./shape.ts";
import { judgeDrill } from "./verify.ts";
import { stopStaleQemu } from "./qemu.ts";
import { StandbyManager } from "./standby.ts";
import { DRILL_SERVER_URL, recoverOntoVm, type PhaseTimeouts } from "./vm.ts";

export const DEFAULT_DRILL_KEYRING = "/etc/lifeboat/drill-keys";

export interface DrillEngineOptions {
  dataDir: string;
  /** The rescue image's kernel and its module directory (default: this machine's). */
  kernel?: string;
  modules?: string;
  /** Per host: HOST.key (the repository key) and HOST.luks (a LUKS passphrase). */
  keyring?: string;
  /** Debian's signed shim and GRUB, for hosts that boot with Secure Boot. */
  signedBootRoot?: string | null;
  /** Drills running at once (default 1). */
  concurrency?: number;
  memoryMiB?: number;
  /** Drills per host whose evidence files are kept (default 20). */
  keepEvidence?: number;
  timeouts?: Partial<PhaseTimeouts>;
  /** Files whose checksums level 3 compares (default 24). */
  sampleCount?: number;
  /** Cap on the disk use of warm standby images (0: keep none; default 20 GiB). */
  standbyMaxBytes?: number;
  /** Replaces the VM run (tests of the queue). */
  runner?: DrillRunner;
}

/** What a run reports back; the engine turns it into the drill's record. */
export type DrillOutcome = Pick<
  Drill,
  "failedPhase" | "reason" | "phases" | "levels" | "probes" | "rtoSeconds" | "evidence"
> & { failedUnits?: string[]; rescueImage?: Drill["rescueImage"] };

export interface DrillRun {
  drill: Drill;
  dir: string;
  /** The server's API as the drilled host sees it (read-only drill token). */
  client: ApiClient;
  /** The internal listener's port on 127.0.0.1, which the guest reaches. */
  serverPort: number;
  token: string;
  settings: DrillSettings;
  signal: AbortSignal;
  phase(phase: DrillPhaseName, state: "start" | "done" | "failed"): void;
}
export type DrillRunner = (run: DrillRun) => Promise<DrillOutcome>;

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");
const TERMINAL = new Set(["passed", "failed"]);

/** A drill id: time-ordered, then random. */
function newDrillId(): string {
  return `d${Date.now().toString(36)}${randomBytes(5).toString("hex")}`;
}

function emptyOutcome(failedPhase: DrillPhaseName, reason: string): DrillOutcome {
  return {
    failedPhase,
    reason,
    phases: [],
    levels: { boot: null, mounts: null, files: null, probes: null },
    probes: [],
    rtoSeconds: null,
    evidence: [],
  };
}

export class DrillEngine {
  readonly #catalog: Catalog;
  readonly #options: DrillEngineOptions;
  readonly #log: FastifyBaseLogger;
  readonly #drillsDir: string;
  readonly #events = new EventEmitter();
  readonly #tokens = new Map<string, { host: string; drill: string }>();
  readonly #running = new Map<string, AbortController>();
  readonly #finished = new Set<Promise<void>>();
  readonly standby: StandbyManager;
  #listener: http.Server | null = null;
  #port = 0;
  #timer: NodeJS.Timeout | null = null;
  #closing = false;

  constructor(catalog: Catalog, log: FastifyBaseLogger, options: DrillEngineOptions) {
    this.#catalog = catalog;
    this.#log = log;
    this.#options = options;
    this.#drillsDir = path.join(options.dataDir, "drills");
    this.#events.setMaxListeners(0);
    this.standby = new StandbyManager(options.dataDir, options.standbyMaxBytes ?? 20 * 2 ** 30);
    this.#recoverStale();
  }

  /**
   * A restart after a crash or kill: drills that were running can't be resumed (their VM
   * ran under the old process). Stop what they left running, delete their disks, and mark
   * them failed; queued drills stay queued.
   */
  #recoverStale() {
    for (const drill of this.#catalog.listDrills({ state: "running" })) {
      const dir = path.join(this.#drillsDir, drill.id);
      const stopped = stopStaleQemu(path.join(dir, "qemu.pid"));
      rmSync(path.join(dir, "qemu.pid"), { force: true });
      rmSync(path.join(dir, "tmp"), { recursive: true, force: true });
      const phase = drill.phases.at(-1)?.name ?? "provision";
      this.#save({
        ...drill,
        state: "failed",
        finishedAt: new Date().toISOString(),
        failedPhase: drill.failedPhase ?? phase,
        reason: `the server stopped during the drill (in ${phase}); it was not finished${stopped ? ` (${stopped})` : ""}`,
      });
      this.#log.warn({ drill: drill.id, host: drill.host, stopped }, "stale drill marked failed");
    }
  }

  /** Opens the guests' listener and starts the schedule; call once the app is ready. */
  async start(app: FastifyInstance): Promise<void> {
    const listener = http.createServer((request, response) => app.routing(request, response));
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen({ host: "127.0.0.1", port: 0 }, resolve);
    });
    this.#listener = listener;
    this.#port = (listener.address() as AddressInfo).port;
    this.#timer = setInterval(() => this.tick(new Date()), 60_000);
    this.#timer.unref();
    this.tick(new Date());
    this.#pump();
  }

  /** Stops taking work, aborts running drills (they clean up and are marked failed). */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const controller of this.#running.values())
      controller.abort(new Error("the server was stopped during the drill"));
    await Promise.allSettled([...this.#finished]);
    await this.standby.stopAll();
    if (this.#listener) {
      this.#listener.closeAllConnections();
      await new Promise((resolve) => this.#listener!.close(resolve));
    }
  }

  /** The drill a token was minted for, if it is one. */
  actorForToken(hash: string): { host: string; drill: string } | null {
    return this.#tokens.get(hash) ?? null;
  }

  get port(): number {
    return this.#port;
  }

  // --- asking for drills --------------------------------------------------------------

  request(request: DrillRequest, trigger: Drill["trigger"]): Drill {
    if (!this.#catalog.hostExists(request.host)) {
      throw new HttpError(
        404,
        "LB_SERVER_NO_SUCH_HOST",
        `No host ${request.host}.`,
        "List hosts with 'lifeboat host list'.",
      );
    }
    // The one asked for (committed, this host's), else the newest.
    const asked = request.snapshot ? this.#catalog.snapshot(request.snapshot) : null;
    const snapshot = request.snapshot
      ? asked?.host === request.host && asked.state === "committed" && asked
      : this.#catalog.listSnapshots(request.host)[0];
    if (!snapshot) {
      throw new HttpError(
        404,
        "LB_DRILL_NO_SNAPSHOT",
        request.snapshot
          ? `Host ${request.host} has no snapshot ${request.snapshot}.`
          : `Host ${request.host} has no snapshot to drill.`,
        "Back the host up first ('lifeboat backup'), or pick one from 'lifeboat snapshots'.",
      );
    }
    const settings = this.#catalog.drillSettings(request.host);
    const drill: Drill = {
      id: newDrillId(),
      host: request.host,
      snapshot: snapshot.id,
      trigger,
      state: "queued",
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      failedPhase: null,
      reason: null,
      phases: [],
      levels: { boot: null, mounts: null, files: null, probes: null },
      probes: [],
      failedUnits: [],
      rescueImage: null,
      rtoSeconds: null,
      rpoSeconds: null,
      maxRtoSeconds: request.maxRtoSeconds ?? settings.maxRtoSeconds,
      evidence: [],
      migrate: request.migrate ?? settings.migrate,
    };
    this.#save(drill);
    this.#log.info(
      { drill: drill.id, host: drill.host, snapshot: drill.snapshot, trigger },
      "drill queued",
    );
    this.#pump();
    return drill;
  }

  /** A snapshot was committed: drill it if the host asks for that. */
  snapshotCommitted(host: string, snapshot: string) {
    if (this.#closing) return;
    if (this.#catalog.drillSettings(host).schedule !== "after-snapshot") return;
    this.request({ host, snapshot }, "snapshot");
  }

  /** Clock-driven drills that are due now. */
  tick(now: Date) {
    if (this.#closing) return;
    for (const { host, settings, createdAt } of this.#catalog.scheduledHosts()) {
      let schedule;
      try {
        schedule = parseSchedule(settings.schedule);
      } catch {
        continue; // refused when set; an old row with a bad schedule is ignored
      }
      const last = this.#catalog.lastDrillAt(host);
      if (!isDue(schedule, last ? new Date(last) : null, new Date(createdAt), now)) continue;
      try {
        this.request({ host }, "schedule");
      } catch (error) {
        this.#log.warn({ host, err: error }, "scheduled drill not started");
      }
    }
  }

  settings(host: string): DrillSettings {
    return this.#catalog.drillSettings(host);
  }

  /** Refuses a bad schedule now, not at 2 a.m., and stores it in its one spelling. */
  setSettings(host: string, settings: DrillSettings) {
    const schedule = formatSchedule(parseSchedule(settings.schedule));
    this.#catalog.setDrillSettings(host, DrillSettingsSchema.parse({ ...settings, schedule }));
  }

  // --- progress -----------------------------------------------------------------------

  /** Calls `listener` with each event of this drill until it ends; returns unsubscribe. */
  subscribe(id: string, listener: (event: DrillEvent) => void): () => void {
    this.#events.on(id, listener);
    return () => this.#events.off(id, listener);
  }

  #save(drill: Drill) {
    this.#catalog.saveDrill(drill);
    this.#events.emit(drill.id, { type: "state", drill } satisfies DrillEvent);
  }

  // --- running ------------------------------------------------------------------------

  #pump() {
    if (this.#closing || this.#listener === null) return;
    const limit = Math.max(1, this.#options.concurrency ?? 1);
    const queued = this.#catalog.listDrills({ state: "queued" }).reverse(); // oldest first
    for (const drill of queued) {
      if (this.#running.size >= limit) break;
      const controller = new AbortController();
      this.#running.set(drill.id, controller);
      const done = this.#run(drill, controller.signal)
        .catch((error) => this.#log.error({ drill: drill.id, err: error }, "drill crashed"))
        .finally(() => {
          this.#running.delete(drill.id);
          this.#finished.delete(done);
          this.#pump();
        });
      this.#finished.add(done);
    }
  }

  async #run(queued: Drill, signal: AbortSignal): Promise<void> {
    const dir = path.join(this.#drillsDir, queued.id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const snapshotRow = this.#catalog.snapshot(queued.snapshot);
    const started = new Date();
    let drill: Drill = {
      ...queued,
      state: "running",
      startedAt: started.toISOString(),
      rpoSeconds: snapshotRow?.committed_at
        ? Math.max(0, (started.getTime() - Date.parse(snapshotRow.committed_at)) / 1000)
        : null,
    };
    this.#save(drill);
    this.#log.info({ drill: drill.id, host: drill.host }, "drill started");

    const token = `lbd_${randomBytes(32).toString("hex")}`;
    const tokenHash = hashToken(token);
    this.#tokens.set(tokenHash, { host: drill.host, drill: drill.id });
    const client = new ApiClient(`http://127.0.0.1:${this.#port}`, token);
    const phases: Drill["phases"] = [];
    let inProgress: DrillPhaseName = "provision";
    let phaseStarted = performance.now();
    let outcome: DrillOutcome;
    try {
      outcome = await (this.#options.runner ?? this.#runVm.bind(this))({
        drill,
        dir,
        client,
        serverPort: this.#port,
        token,
        settings: this.#catalog.drillSettings(drill.host),
        signal,
        phase: (phase, state) => {
          // While it runs, the record's last phase is the one in progress (a restarted
          // server names it when it marks the drill failed).
          if (state === "start") {
            inProgress = phase;
            phaseStarted = performance.now();
            this.#catalog.saveDrill({
              ...drill,
              phases: [...phases, { name: phase, seconds: 0, ok: true }],
            });
          } else {
            phases.push({
              name: phase,
              seconds: (performance.now() - phaseStarted) / 1000,
              ok: state === "done",
            });
            this.#catalog.saveDrill({ ...drill, phases: [...phases] });
          }
          this.#events.emit(drill.id, {
            type: "phase",
            phase,
            state,
            at: new Date().toISOString(),
          } satisfies DrillEvent);
        },
      });
    } catch (error) {
      const reason =
        error instanceof LifeboatError
          ? `${error.message}${error.hint ? ` (${error.hint})` : ""}`
          : (error as Error).message;
      outcome = { ...emptyOutcome(inProgress, reason), phases };
    } finally {
      this.#tokens.delete(tokenHash);
      rmSync(path.join(dir, "tmp"), { recursive: true, force: true });
      rmSync(path.join(dir, "qemu.pid"), { force: true });
    }
    if (
      outcome.failedPhase === null &&
      drill.maxRtoSeconds !== null &&
      outcome.rtoSeconds !== null &&
      outcome.rtoSeconds > drill.maxRtoSeconds
    ) {
      outcome = {
        ...outcome,
        failedPhase: outcome.phases.at(-1)?.name ?? "probes",
        reason: `the RTO of ${Math.round(outcome.rtoSeconds)} s exceeded the budget of ${drill.maxRtoSeconds} s`,
      };
    }
    const finished: Drill = {
      ...drill,
      ...outcome,
      state: outcome.failedPhase === null ? "passed" : "failed",
      finishedAt: new Date().toISOString(),
    };
    await writeFile(path.join(dir, "drill.json"), `${JSON.stringify(finished, null, 2)}\n`);
    this.#save(finished);
    this.#log.info(
      {
        drill: finished.id,
        host: finished.host,
        state: finished.state,
        rtoSeconds: finished.rtoSeconds,
        failedPhase: finished.failedPhase,
        reason: finished.reason,
      },
      "drill finished",
    );
    this.#expireEvidence(finished.host);
  }

  /** Keeps the evidence of the newest drills of a host; older ones keep their record only. */
  #expireEvidence(host: string) {
    const keep = this.#options.keepEvidence ?? 20;
    const done = this.#catalog.listDrills({ host }).filter((d) => TERMINAL.has(d.state));
    for (const drill of done.slice(keep)) {
      const dir = path.join(this.#drillsDir, drill.id);
      if (!existsSync(dir)) continue;
      rmSync(dir, { recursive: true, force: true });
      this.#catalog.saveDrill({ ...drill, evidence: [] });
    }
  }

  /** The drill's folder, if its evidence is still kept. */
  evidenceFile(drill: Drill, name: string): string | null {
    if (!drill.evidence.includes(name) || name.includes("/")) return null;
    const file = path.join(this.#drillsDir, drill.id, name);
    return existsSync(file) ? file : null;
  }

  // --- the real run -------------------------------------------------------------------

  async #runVm(run: DrillRun): Promise<DrillOutcome> {
    const { drill, dir, client } = run;
    const tmp = path.join(dir, "tmp");
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    const prepareStarted = performance.now();
    run.phase("provision", "start");

    // The snapshot, read back as the host would: its key comes from the drill keyring.
    const info = await client.getSnapshot(drill.snapshot);
    const keyring = this.#options.keyring ?? DEFAULT_DRILL_KEYRING;
    let keys: RepoKeys | null = null;
    let keyFile: string | null = null;
    if (info.keyId) {
      keyFile = path.join(keyring, `${drill.host}.key`);
      if (!existsSync(keyFile)) {
        throw usageError(
          "LB_DRILL_NO_KEY",
          `Snapshot ${drill.snapshot} of ${drill.host} is encrypted, and the drill keyring has no ${keyFile}.`,
          `Copy the host's key file there (mode 0600) to allow drills of ${drill.host}; see docs/repository.md.`,
        );
      }
      keys = (await loadKeyFile(keyFile)).keys;
    }
    const manifest = await loadManifest(client, drill.snapshot, keys);
    const layout: Layout | null = manifest.layout ?? null;
    if (!layout) {
      throw usageError(
        "LB_DRILL_NO_LAYOUT",
        `Snapshot ${drill.snapshot} holds no layout, so there is no machine to restore.`,
        "Back the host up with its layout (lifeboat backup without --no-layout).",
      );
    }
    const shape = shapeVm(layout, {
      memoryMiB: this.#options.memoryMiB ?? 1536,
      migrate: drill.migrate ?? undefined,
    });
    const expected = await sampleFileHashes({
      source: client,
      manifest,
      keys,
      count: this.#options.sampleCount ?? 24,
      seed: drill.id,
    });
    const spec: DrillSpec = DrillSpecSchema.parse({
      probes: run.settings.probes,
      sampleFiles: [...expected.keys()],
    });

    // The host's rescue image, set up for this drill: automatic, drill check on, and
    // credentials that reach only this server and only this host's snapshots.
    const layoutFile = path.join(tmp, "layout.json");
    await writeFile(layoutFile, serializeLayout(layout));
    const tokenFile = path.join(tmp, "token");
    await writeFile(tokenFile, run.token, { mode: 0o600 });
    const configFile = path.join(tmp, "agent.json");
    await writeFile(
      configFile,
      JSON.stringify({
        server: DRILL_SERVER_URL,
        host: drill.host,
        tokenFile,
        ...(keyFile ? { keyFile } : {}),
      }),
    );
    const luksFile = path.join(keyring, `${drill.host}.luks`);
    if (layout.luks.length > 0 && !existsSync(luksFile)) {
      throw usageError(
        "LB_DRILL_NO_PASSPHRASE",
        `${drill.host} has LUKS volumes, and the drill keyring has no ${luksFile}.`,
        "Put the LUKS passphrase there (mode 0600) to allow drills of this host.",
      );
    }
    const secureBoot = layout.boot.secureBoot === "enabled";
    const iso = path.join(tmp, "rescue.iso");
    const built = await buildRescueImage({
      out: iso,
      kernel: this.#options.kernel,
      modules: this.#options.modules,
      layoutFile,
      configFile,
      luksKeys: layout.luks.length > 0 ? { "*": luksFile } : undefined,
      signedBootRoot: secureBoot ? (this.#options.signedBootRoot ?? "/") : null,
      defaultEntry: "auto",
      // The drill's snapshot, not whatever is newest when the VM asks.
      cmdline: `lifeboat.drill=1 lifeboat.snapshot=${drill.snapshot}`,
      timeoutSeconds: 1,
      drillSpec: spec,
    });
    const prepareSeconds = (performance.now() - prepareStarted) / 1000;
    run.signal.throwIfAborted();

    // The RTO budget: from the VM's start, the drill is stopped once it is spent.
    const budget = new AbortController();
    const stop = () => budget.abort(run.signal.reason);
    run.signal.addEventListener("abort", stop, { once: true });
    let budgetTimer: NodeJS.Timeout | null = null;
    let current: DrillPhaseName = "provision";
    try {
      const result = await recoverOntoVm({
        name: "drill",
        dir,
        iso,
        shape,
        serverPort: run.serverPort,
        timeouts: this.#options.timeouts,
        keepDisks: this.standby.enabled,
        signal: budget.signal,
        onPhase: (event) => {
          if (event.phase === "provision" && event.state === "start") return; // already said
          if (event.state === "start") current = event.phase;
          run.phase(event.phase, event.state);
          if (event.phase === "rescue-boot" && event.state === "start" && drill.maxRtoSeconds) {
            budgetTimer = setTimeout(
              () =>
                budget.abort(
                  new Error(`the RTO budget of ${drill.maxRtoSeconds} s ran out during ${current}`),
                ),
              drill.maxRtoSeconds * 1000,
            );
          }
        },
      });
      const phases = result.phases.map((p) =>
        p.name === "provision" ? { ...p, seconds: p.seconds + prepareSeconds } : p,
      );
      const evidence = [...result.evidence];
      const outcome: DrillOutcome = {
        rescueImage: built.iso
          ? { bytes: built.iso.sizeBytes, seconds: built.seconds.total }
          : null,
        failedPhase: result.failedPhase,
        reason: result.reason,
        phases,
        levels: {
          boot: result.failedPhase === "first-boot" ? false : result.report ? true : null,
          mounts: null,
          files: null,
          probes: null,
        },
        probes: [],
        rtoSeconds: result.rtoSeconds,
        evidence,
      };
      if (!result.ok || !result.report) return outcome;
      const verdict = judgeDrill(layout, result.report, spec, expected);
      const probeLog = verdict.probes
        .map(
          (p) =>
            `== ${p.name}: ${p.command}\nexit ${p.exitCode ?? "none (timed out)"} after ${p.seconds.toFixed(1)} s\n${p.output}\n`,
        )
        .join("\n");
      await writeFile(path.join(dir, "probes.txt"), probeLog || "no probes configured\n");
      evidence.push("probes.txt");
      if (verdict.problems.length === 0) {
        // The last passed drill's disks become the host's warm standby.
        await this.standby.keep({
          host: drill.host,
          drill: drill.id,
          snapshot: drill.snapshot,
          shape,
          disks: result.disks,
          vars: shape.firmware === "uefi" ? path.join(dir, "drill-rescue.vars.fd") : undefined,
          drillRtoSeconds: result.rtoSeconds,
        });
      }
      return {
        ...outcome,
        levels: verdict.levels,
        probes: verdict.probes,
        failedUnits: verdict.failedUnits,
        failedPhase: verdict.problems.length > 0 ? "probes" : null,
        reason: verdict.problems.length > 0 ? verdict.problems.join("; ") : null,
      };
    } finally {
      if (budgetTimer) clearTimeout(budgetTimer);
      run.signal.removeEventListener("abort", stop);
      // The VM's own UEFI variable copies are not evidence.
      for (const name of readdirSync(dir)) if (name.endsWith(".fd")) rmSync(path.join(dir, name));
    }
  }
}
