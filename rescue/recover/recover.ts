// The recovery engine: what `lifeboat recover` runs inside the rescue system. It takes a
// machine with blank (or dead-machine) disks to a bootable copy of the snapshot:
//
//   connect     find the snapshot (newest by default) and its layout on the server
//   plan        map the layout's disks to this machine's, fit sizes, list the steps
//   (confirm)   interactive mode asks once; automatic mode never asks
//   layout      wipe old signatures, partition, md, LUKS, LVM, mkfs, mount (the planner's steps)
//   data        restore every filesystem's streams into the mounted tree
//   esp         check the ESP came back complete (UEFI)
//   identifiers rewrite device paths and UUIDs that changed in fstab, crypttab, mdadm.conf, GRUB
//   initramfs   rebuild it in a chroot when identifiers or storage drivers changed
//   bootloader  grub-install on every BIOS boot disk, or on the ESP + fallback path + NVRAM
//   finish      copy the log onto the system, unmount, close LUKS/LVM/md
//
// Every step can run again: the layout steps are journaled (agent/layout/apply.ts), the data
// step re-extracts over what is there, and the rest rewrite what they own. A failure stops
// with an error that names the step; rerunning `lifeboat recover` picks up from there.

import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { environmentError, inputError, LifeboatError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import type { RepoKeys } from "../../common/repository/keys.ts";
import type { Manifest } from "../../common/repository/manifest.ts";
import { formatBytes } from "../../common/units.ts";
import { parseBlkidExport } from "../../layouts/parse/blkid.ts";
import { parseEfibootmgr } from "../../layouts/parse/efibootmgr.ts";
import { planRestore } from "../../layouts/plan/plan.ts";
import { keyFileFor, LVM_CONFIG, luksMapperName } from "../../layouts/plan/steps.ts";
import type { Plan } from "../../layouts/plan/types.ts";
import type { Layout } from "../../layouts/schema.ts";
import type { ApiClient } from "../../agent/client/api.ts";
import { readChunk, type SnapshotSource } from "../../agent/client/local.ts";
import { renderSummary } from "../../agent/cli/commands/layout-plan.ts";
import { applyPlan, preflight } from "../../agent/layout/apply.ts";
import { readInventory } from "../../agent/layout/inventory.ts";
import { createProgress, type ProgressSink } from "../../agent/progress.ts";
import { loadManifest, runRestore } from "../../agent/restore/restore.ts";
import {
  bootOrder,
  efibootmgrCreate,
  efibootmgrDeletes,
  planBootloader,
  type BootPlan,
} from "./bootloader.ts";
import {
  deviceChanges,
  driversChanged,
  IDENTIFIER_FILES,
  rewriteIdentifiers,
  type IdentifierChange,
} from "./identifiers.ts";
import { DRILL_ENABLE_LINKS, drillCheckFiles, type DrillSpec } from "./drill-check.ts";
import { RecoveryLog } from "./log.ts";
import { MODULES_PENDING, RESCUE_PATHS } from "../contract.ts";
import type { SnapshotInfo } from "../../common/api.ts";

export interface RecoverOptions {
  auto: boolean;
  /** The server, or a snapshot exported to the rescue medium (which takes no reports). */
  client: SnapshotSource & Partial<Pick<ApiClient, "reportRecovery">>;
  keys: RepoKeys | null;
  /** The host whose snapshots to look at (a host token only sees its own anyway). */
  host: string | null;
  /** A snapshot id, or null for the newest committed one. */
  snapshot: string | null;
  /** The layout built into the rescue image: used when the snapshot carries none. */
  fallbackLayout: Layout | null;
  maps: Record<string, string>;
  /** LUKS passphrase files by mapper name or UUID ('*' for all). */
  keyFiles: Record<string, string>;
  /** LUKS passphrases to fetch from a key server, by mapper name or UUID. */
  keyUrls: Record<string, string>;
  targetRoot: string;
  /** Resume journal and fetched keys (tmpfs in the rescue system). */
  stateDir: string;
  console: ProgressSink;
  log: RecoveryLog;
  /** A restore drill: leave the one-shot check in the recovered system (drill-check.ts). */
  drill: DrillSpec | null;
  /** Show every tool's output on the console, not only in the log. */
  verbose: boolean;
  /** Interactive mode: ask the operator (a line of input); not called in automatic mode. */
  ask?: (question: string) => Promise<string>;
  /** Interactive mode: ask for a secret without echoing it (a LUKS passphrase). */
  askSecret?: (question: string) => Promise<string>;
  now?: () => Date;
}

export interface RecoverResult {
  host: string;
  snapshot: string;
  steps: { name: string; seconds: number; skipped?: boolean }[];
  seconds: number;
  identifierChanges: IdentifierChange[];
  initramfsRebuilt: boolean;
  logFile: string | null;
}

/** The newest committed snapshot, or the one asked for (which must exist and be committed). */
export function chooseSnapshot(snapshots: SnapshotInfo[], wanted: string | null): SnapshotInfo {
  const committed = snapshots.filter((s) => s.committedAt !== null && s.manifestId !== null);
  if (wanted) {
    const found = snapshots.find((s) => s.id === wanted);
    if (!found) {
      throw inputError(
        "LB_RECOVER_NO_SNAPSHOT",
        `Snapshot ${wanted} is not on the server (or belongs to another host).`,
        `Pick one of: ${
          committed
            .map((s) => s.id)
            .slice(-5)
            .join(", ") || "(none)"
        }.`,
      );
    }
    if (!committed.includes(found)) {
      throw inputError(
        "LB_RECOVER_UNCOMMITTED",
        `Snapshot ${wanted} was never committed; it holds no complete backup.`,
        "Pick a committed snapshot ('lifeboat snapshots' lists them).",
      );
    }
    return found;
  }
  const newest = [...committed].sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
  if (!newest) {
    throw inputError(
      "LB_RECOVER_NO_SNAPSHOT",
      "The server has no committed snapshot for this host.",
      "Back the machine up first (lifeboat backup), or check the host name and token in /etc/lifeboat/agent.json.",
    );
  }
  // A server's data directory, or an admin token, shows every host's snapshots: "the newest"
  // would be whichever host backed up last, and recovery would write it onto these disks.
  const hosts = [...new Set(committed.map((s) => s.host))].sort();
  if (hosts.length > 1) {
    throw inputError(
      "LB_RECOVER_WHICH_HOST",
      `The snapshots here belong to ${hosts.length} hosts (${hosts.slice(0, 5).join(", ")}${hosts.length > 5 ? ", ..." : ""}), and nothing says which one this machine is.`,
      "Name the snapshot (--snapshot ID or lifeboat.snapshot=ID; 'lifeboat snapshots', with the same --from or server, lists them), or put the host into the agent config (\"host\" in /etc/lifeboat/agent.json).",
    );
  }
  return newest;
}

/**
 * Recovers, then files the outcome and the whole log with the server (best effort: a server
 * that can't be reached must not turn a good recovery into a failure).
 */
export async function runRecovery(options: RecoverOptions): Promise<RecoverResult> {
  const started = performance.now();
  const steps: RecoverResult["steps"] = [];
  const seen: { host: string | null; snapshot: string | null } = {
    host: options.host,
    snapshot: options.snapshot,
  };
  const report = async (error: unknown) => {
    const failure =
      error === null
        ? null
        : error instanceof LifeboatError
          ? { code: error.code, message: error.message }
          : { code: "LB_INTERNAL", message: String((error as Error)?.message ?? error) };
    if (failure) options.log.say(`Recovery failed: ${failure.code}: ${failure.message}`);
    if (!options.client.reportRecovery) {
      options.log.say(
        `Offline recovery: the log stays in ${options.log.file ?? "the console output"} and on the recovered system.`,
      );
      return;
    }
    try {
      const { id } = await options.client.reportRecovery({
        ...(seen.host ? { host: seen.host } : {}),
        snapshot: seen.snapshot,
        ok: failure === null,
        seconds: (performance.now() - started) / 1000,
        steps,
        error: failure,
        log: options.log.text().slice(-4 * 1024 * 1024),
      });
      options.log.say(`The recovery log is on the server as recovery ${id}.`);
    } catch (reportError) {
      options.log.say(
        `warning: could not send the recovery log to the server (${(reportError as Error).message}); it is in ${options.log.file ?? "the console output"}.`,
      );
    }
  };
  try {
    const result = await recoverSteps(options, started, steps, seen);
    await report(null);
    return result;
  } catch (error) {
    await report(error);
    throw error;
  }
}

async function recoverSteps(
  options: RecoverOptions,
  started: number,
  steps: RecoverResult["steps"],
  seen: { host: string | null; snapshot: string | null },
): Promise<RecoverResult> {
  const { log } = options;
  const step = async <T>(name: string, body: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    log.mark(name, "start");
    try {
      const value = await body();
      log.mark(name, "done");
      steps.push({ name, seconds: (performance.now() - t0) / 1000 });
      return value;
    } catch (error) {
      log.mark(name, "failed");
      throw error;
    }
  };

  // connect: which snapshot, and which layout.
  let { snapshotInfo, manifest, layout } = await step("connect", () => connect(options, null));
  Object.assign(seen, { host: snapshotInfo.host, snapshot: snapshotInfo.id });
  let plan: Plan;
  let keyFiles: Record<string, string>;
  for (;;) {
    ({ plan, keyFiles } = await step("plan", () => makePlan(options, layout, manifest)));
    log.say(describeRecovery(snapshotInfo, manifest, plan));
    if (options.auto || !options.ask) break;
    const answer = (
      await options.ask(
        `Recover snapshot ${snapshotInfo.id} onto ${plan.disks.map((d) => d.to).join(", ")}? ` +
          "Everything on those disks is destroyed.\n" +
          "Type 'yes' to go on, a snapshot id to pick another, anything else to stop: ",
      )
    ).trim();
    if (answer === "yes") break;
    if (/^[0-9a-z]{8,}$/i.test(answer) && answer !== "no") {
      ({ snapshotInfo, manifest, layout } = await step("connect", () => connect(options, answer)));
      Object.assign(seen, { host: snapshotInfo.host, snapshot: snapshotInfo.id });
      continue;
    }
    throw inputError(
      "LB_RECOVER_DECLINED",
      "Recovery stopped at the confirmation; nothing was written.",
      "Run 'lifeboat recover' again when ready.",
    );
  }

  await step("layout", async () => {
    await waitForModules(options.stateDir, log);
    await preflight(plan, layout, { keyFiles });
    await applyPlan(plan, {
      keyFiles,
      stateDir: options.stateDir,
      onEvent: (event) => {
        if (event.type === "step-start") {
          log.say(`[${event.index}/${event.total}] ${event.step.title}`);
        } else if (event.type === "step-output") {
          log.detail(event.text, options.verbose);
        } else if (event.skipped) {
          log.say("      already done (journal)");
        }
      },
    });
  });

  await step("data", async () => {
    const summary = await runRestore({
      client: options.client,
      keys: options.keys,
      snapshot: snapshotInfo.id,
      target: options.targetRoot,
      paths: [],
      progress: createProgress(options.console),
    });
    log.say(
      `restored ${summary.files} entries, ${formatBytes(summary.bytes)} in ${summary.seconds.toFixed(1)} s`,
    );
  });

  let changes: IdentifierChange[] = [];
  let rebuild = false;
  if (!recoversBootPath(layout)) {
    log.say(
      "The layout covers only some disks (captured with --disk) and none of the boot path: " +
        "the data is back; the initramfs and the bootloader are left alone.",
    );
  } else {
    if (layout.boot.firmware === "uefi") await step("esp", () => checkEsp(options, layout));
    changes = await step("identifiers", () => fixIdentifiers(options, layout, plan));
    rebuild = changes.length > 0 || driversChanged(plan.disks);
    const chroot = new Chroot(options.targetRoot, log, options.verbose);
    try {
      await chroot.enter(layout.boot.firmware === "uefi");
      if (rebuild) {
        await step("initramfs", () => rebuildInitramfs(chroot, layout, changes, plan));
      } else {
        log.say("The initramfs stays as it was: no identifier or storage driver changed.");
      }
      await step("bootloader", () =>
        installBootloader(options, chroot, layout, plan, changes.length > 0),
      );
      const drill = options.drill;
      if (drill) await step("drill-check", () => installDrillCheck(options.targetRoot, drill));
    } finally {
      await chroot.leave();
    }
  }

  const seconds = (performance.now() - started) / 1000;
  const logFile = await step("finish", () => finish(options, layout, snapshotInfo.id, seconds));
  return {
    host: snapshotInfo.host,
    snapshot: snapshotInfo.id,
    steps,
    seconds,
    identifierChanges: changes,
    initramfsRebuilt: rebuild,
    logFile,
  };
}

/**
 * Whether the layout holds the machine's boot path. A layout captured with --disk for data
 * disks only does not: recovering it brings the data back and leaves booting alone.
 */
export function recoversBootPath(layout: Layout): boolean {
  if (layout.scope.wholeMachine) return true;
  const partitions = new Set(
    layout.disks.flatMap((d) => (d.partitionTable?.partitions ?? []).map((p) => p.device)),
  );
  const disks = new Set(layout.disks.map((d) => d.device));
  return (
    layout.boot.grubBiosDisks.some((d) => disks.has(d)) ||
    (layout.boot.esp?.devices ?? []).some((d) => partitions.has(d))
  );
}

async function connect(options: RecoverOptions, wanted: string | null) {
  const { log } = options;
  let snapshots: SnapshotInfo[];
  try {
    snapshots = await options.client.listSnapshots(options.host ?? undefined);
  } catch (error) {
    if (error instanceof LifeboatError) {
      throw new LifeboatError({
        kind: error.kind,
        code: error.code,
        message: `Can't list the snapshots on the backup server: ${error.message}`,
        hint:
          error.hint ??
          "Check the network (ip addr), the server URL (lifeboat.server= on the kernel command line) and the token.",
      });
    }
    throw error;
  }
  const snapshotInfo = chooseSnapshot(snapshots, wanted ?? options.snapshot);
  const manifest = await loadManifest(options.client, snapshotInfo.id, options.keys);
  const layout = manifest.layout ?? options.fallbackLayout;
  if (!layout) {
    throw inputError(
      "LB_RECOVER_NO_LAYOUT",
      `Snapshot ${snapshotInfo.id} carries no disk layout, and the rescue image has none either.`,
      "Recover from a whole-machine backup (lifeboat backup without --no-layout), or rebuild the rescue image with --layout.",
    );
  }
  if (!manifest.layout) {
    log.say("The snapshot has no layout of its own; using the one built into the rescue image.");
  }
  log.say(`Snapshot ${snapshotInfo.id} of ${snapshotInfo.host}, made ${snapshotInfo.createdAt}.`);
  return { snapshotInfo, manifest, layout };
}

/**
 * The rescue init loads the md, dm, filesystem and crypto modules in the background after
 * its prompt (rescue/init.ts); nothing below may run before they are in. Outside the rescue
 * system there is no marker and no wait.
 */
export async function waitForModules(
  stateDir: string,
  log: Pick<RecoveryLog, "say">,
  timeoutMs = 300_000,
) {
  const marker = path.join(stateDir, MODULES_PENDING);
  if (!existsSync(marker)) return;
  log.say("Waiting for the kernel modules (md, dm, filesystems, crypto) to finish loading...");
  const deadline = performance.now() + timeoutMs;
  while (existsSync(marker)) {
    if (performance.now() > deadline) {
      throw environmentError(
        "LB_RECOVER_MODULES",
        `The rescue system was still loading kernel modules after ${timeoutMs / 1000} s (${marker} is still there).`,
        `Look for the stuck module in ${RESCUE_PATHS.initLog} and dmesg; remove ${marker} to go on without it.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function makePlan(options: RecoverOptions, layout: Layout, manifest: Manifest) {
  const keyFiles = { ...options.keyFiles };
  const luksHeaders = await fetchLuksHeaders(options, layout, manifest);
  for (const [name, url] of Object.entries(options.keyUrls)) {
    keyFiles[name] = await fetchKey(name, url, options.stateDir);
  }
  // Interactive mode asks for the passphrase of every LUKS device nothing else provides.
  if (!options.auto && options.askSecret) {
    for (const luks of layout.luks) {
      const name = luksMapperName(luks);
      if (existsSync(keyFileFor(luks, keyFiles))) continue;
      const secret = await options.askSecret(
        `Passphrase for LUKS device ${name} (UUID ${luks.uuid}): `,
      );
      if (secret === "") {
        throw inputError(
          "LB_RECOVER_NO_PASSPHRASE",
          `No passphrase given for LUKS device ${name}.`,
          "Run again and type it, or pass --luks-key NAME=FILE.",
        );
      }
      keyFiles[name] = await writeKey(name, Buffer.from(secret), options.stateDir);
    }
  }
  const inventory = await readInventory([]);
  const plan = planRestore(layout, inventory.targets, {
    maps: options.maps,
    protect: inventory.protect,
    targetRoot: options.targetRoot,
    keyFiles,
    luksHeaders,
  });
  return { plan, keyFiles };
}

/**
 * The snapshot's luksHeaderBackup of each LUKS device in the layout, checked against its
 * SHA-256 and written to the rescue system's tmpfs: restoring the header brings back every
 * keyslot, so the restored system's crypttab key files and passphrases work unchanged.
 */
async function fetchLuksHeaders(
  options: RecoverOptions,
  layout: Layout,
  manifest: Manifest,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const dir = path.join(options.stateDir, "luks-headers");
  for (const luks of layout.luks) {
    const backup = manifest.luksHeaders.find((h) => h.uuid === luks.uuid);
    if (!backup) continue;
    const parts: Buffer[] = [];
    for (const [id] of backup.chunks) {
      parts.push(await readChunk(options.client, id, options.keys));
    }
    const header = Buffer.concat(parts);
    if (createHash("sha256").update(header).digest("hex") !== backup.sha256) {
      throw inputError(
        "LB_REPO_CORRUPT_CHUNK",
        `The LUKS header backup of ${luks.device} (UUID ${luks.uuid}) in snapshot ${manifest.id} does not match its checksum.`,
        "Run 'lifeboat verify --read-data' on the server.",
      );
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${luks.uuid}.img`);
    await writeFile(file, header, { mode: 0o600 });
    out[luks.uuid] = file;
    options.log.say(`LUKS ${luks.device}: the captured header (every keyslot) will be restored.`);
  }
  return out;
}

/** A LUKS passphrase from a key server: fetched once, kept in the rescue system's tmpfs. */
async function fetchKey(name: string, url: string, stateDir: string): Promise<string> {
  if (!/^https?:\/\//.test(url)) {
    throw inputError(
      "LB_RECOVER_KEY_URL",
      `The key URL for ${name} (${url}) is not an http:// or https:// URL.`,
      "Give lifeboat.keyurl=NAME=https://... on the kernel command line.",
    );
  }
  let body: Buffer;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    body = Buffer.from(await response.arrayBuffer());
  } catch (error) {
    throw environmentError(
      "LB_RECOVER_KEY_URL",
      `Can't fetch the LUKS key for ${name} from ${url}: ${(error as Error).message}.`,
      "Check the key server and the network, or pass the passphrase in a file (lifeboat.keyfile=NAME=PATH).",
    );
  }
  return writeKey(name, body, stateDir);
}

/** A LUKS passphrase into the rescue system's tmpfs, readable by root only. */
async function writeKey(name: string, secret: Buffer, stateDir: string): Promise<string> {
  const dir = path.join(stateDir, "keys");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${name.replace(/[^A-Za-z0-9_.-]/g, "_")}.key`);
  await writeFile(file, secret, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

function describeRecovery(info: SnapshotInfo, manifest: Manifest, plan: Plan): string {
  const data = manifest.filesystems
    .map((fs) => `  ${fs.mountPoint} (${fs.fsType ?? "?"}): ${fs.index.entries} entries`)
    .join("\n");
  return [
    `Host:     ${info.host}`,
    `Snapshot: ${info.id} (${info.createdAt})`,
    "Data:",
    data,
    "",
    renderSummary(plan).trimEnd(),
  ].join("\n");
}

/** The captured ESP files must be back, with their sizes, before GRUB is reinstalled. */
async function checkEsp(options: RecoverOptions, layout: Layout) {
  const esp = layout.boot.esp;
  if (!esp?.mountPoint) return;
  const root = path.join(options.targetRoot, esp.mountPoint);
  const missing: string[] = [];
  for (const file of esp.files) {
    const size = await readFile(path.join(root, file.path))
      .then((b) => b.length)
      .catch(() => null);
    if (size !== file.sizeBytes) missing.push(file.path);
  }
  if (missing.length > 0) {
    options.log.say(
      `warning: ${missing.length} file(s) of the captured ESP are missing or differ (${missing.slice(0, 3).join(", ")}); grub-install rewrites GRUB's own files next.`,
    );
  } else {
    options.log.say(`ESP complete: ${esp.files.length} captured file(s) present.`);
  }
}

/** UUIDs on the new devices compared with the captured ones, plus renamed devices. */
async function fixIdentifiers(
  options: RecoverOptions,
  layout: Layout,
  plan: Plan,
): Promise<IdentifierChange[]> {
  const changes: IdentifierChange[] = deviceChanges(plan.deviceMap);
  const captured = [
    ...layout.filesystems.map((f) => ({ device: f.device, uuid: f.uuid })),
    ...layout.luks.map((l) => ({ device: l.device, uuid: l.uuid })),
  ];
  for (const item of captured) {
    if (!item.uuid) continue;
    const device = plan.deviceMap[item.device] ?? item.device;
    const out = await runTool(["blkid", "-p", "-o", "export", device], { allowFailure: true });
    const now = parseBlkidExport(device, out.stdout).uuid;
    if (now && now.toLowerCase() !== item.uuid.toLowerCase()) {
      changes.push({ kind: "uuid", from: item.uuid, to: now });
    }
  }
  if (changes.length === 0) {
    options.log.say("Every identifier is as captured; no configuration file needs a change.");
    return changes;
  }
  for (const change of changes) options.log.say(`  ${change.kind} ${change.from} -> ${change.to}`);
  for (const relative of IDENTIFIER_FILES) {
    const file = path.join(options.targetRoot, relative);
    if (!existsSync(file)) continue;
    const text = await readFile(file, "utf8");
    const result = rewriteIdentifiers(text, changes);
    if (result.replaced > 0) {
      await writeFile(`${file}.lifeboat-orig`, text);
      await writeFile(file, result.text);
      options.log.say(
        `  /${relative}: ${result.replaced} reference(s) fixed (old copy kept as .lifeboat-orig)`,
      );
    }
  }
  return changes;
}

/** The drill's one-shot check and the standby marker, enabled as `systemctl enable` would. */
async function installDrillCheck(root: string, spec: DrillSpec) {
  for (const file of drillCheckFiles(spec)) {
    const target = path.join(root, file.path);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, file.content, { mode: file.mode });
    await chmod(target, file.mode);
  }
  for (const { path: relative, target } of DRILL_ENABLE_LINKS) {
    const link = path.join(root, relative);
    await mkdir(path.dirname(link), { recursive: true });
    await rm(link, { force: true });
    await symlink(target, link);
  }
}

/** The pseudo filesystems a chroot into the recovered system needs, mounted and undone. */
class Chroot {
  readonly #root: string;
  readonly #log: RecoveryLog;
  readonly #verbose: boolean;
  readonly #mounted: string[] = [];

  constructor(root: string, log: RecoveryLog, verbose: boolean) {
    this.#root = root;
    this.#log = log;
    this.#verbose = verbose;
  }

  async enter(efi: boolean) {
    const binds = ["dev", "dev/pts", "proc", "sys", "run"];
    if (efi && existsSync("/sys/firmware/efi/efivars")) binds.push("sys/firmware/efi/efivars");
    for (const dir of binds) {
      const target = path.join(this.#root, dir);
      await mkdir(target, { recursive: true });
      const mounted = await execa("mountpoint", ["-q", target], { reject: false });
      if (mounted.exitCode === 0) continue;
      await runTool(["mount", "--bind", `/${dir}`, target]);
      this.#mounted.push(target);
    }
  }

  async run(argv: string[], title: string, env: Record<string, string> = {}) {
    this.#log.say(`  ${title}: ${argv.join(" ")}`);
    return runLogged(["chroot", this.#root, ...argv], this.#log, this.#verbose, title, env);
  }

  async leave() {
    for (const target of this.#mounted.splice(0).reverse()) {
      await execa("umount", ["-l", target], { reject: false });
    }
  }
}

/** Runs a tool with its output in the log; a non-zero exit is an error naming the step. */
async function runLogged(
  argv: string[],
  log: RecoveryLog,
  verbose: boolean,
  title: string,
  env: Record<string, string> = {},
) {
  const child = await execa(argv[0]!, argv.slice(1), {
    reject: false,
    all: true,
    env: { LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    extendEnv: true,
  });
  const output = String(child.all ?? "");
  if (output.trim()) log.detail(output, verbose);
  if (child.exitCode !== 0) {
    const tail = output.trim().split("\n").slice(-3).join(" / ");
    throw environmentError(
      "LB_RECOVER_STEP_FAILED",
      `${title} failed (exit ${child.exitCode ?? child.signal}): ${tail || "no output"}.`,
      `The full output is in the recovery log. Fix the cause, then run 'lifeboat recover' again: finished layout steps are skipped.`,
    );
  }
  return output;
}

async function rebuildInitramfs(
  chroot: Chroot,
  layout: Layout,
  changes: IdentifierChange[],
  plan: Plan,
) {
  const why = [
    changes.length > 0 ? `${changes.length} identifier(s) changed` : null,
    driversChanged(plan.disks) ? "the disks need other storage drivers" : null,
  ].filter(Boolean);
  if (layout.boot.initramfsTool === "dracut") {
    await chroot.run(
      ["dracut", "--force", "--regenerate-all"],
      `Rebuild the initramfs (${why.join(", ")})`,
    );
  } else {
    await chroot.run(
      ["update-initramfs", "-u", "-k", "all"],
      `Rebuild the initramfs (${why.join(", ")})`,
    );
  }
}

async function installBootloader(
  options: RecoverOptions,
  chroot: Chroot,
  layout: Layout,
  plan: Plan,
  regenerateConfig: boolean,
) {
  const boot: BootPlan = planBootloader(layout, plan);
  if (boot.firmware === "uefi" && !existsSync("/sys/firmware/efi")) {
    throw environmentError(
      "LB_RECOVER_FIRMWARE",
      "The captured machine booted with UEFI, but this rescue system was started in BIOS (legacy) mode, so the firmware's boot entries can't be written.",
      "Boot the rescue medium in UEFI mode (the firmware's boot menu lists it as 'UEFI: ...') and run the recovery again.",
    );
  }
  for (const command of boot.commands) await chroot.run(command.argv, command.title);
  if (regenerateConfig) {
    await chroot.run(
      ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"],
      "Regenerate GRUB's configuration for the changed identifiers",
    );
  }
  if (boot.firmware === "uefi") await rebuildEfiEntries(options, boot);
}

async function rebuildEfiEntries(options: RecoverOptions, boot: BootPlan) {
  const { log } = options;
  const read = async () => parseEfibootmgr((await runTool(["efibootmgr"])).stdout);
  const before = await read();
  for (const argv of efibootmgrDeletes(before.entries, boot.efiEntries)) {
    await runLogged(argv, log, options.verbose, `Remove the old boot entry ${argv[3]}`);
  }
  const created: string[] = [];
  for (const entry of boot.efiEntries) {
    const known = new Set((await read()).entries.map((e) => e.number));
    await runLogged(
      efibootmgrCreate(entry),
      log,
      options.verbose,
      `Create the boot entry '${entry.label}' (${entry.loader} on ${entry.disk} partition ${entry.partition})`,
    );
    const added = (await read()).entries.find((e) => !known.has(e.number));
    if (!added) {
      throw environmentError(
        "LB_RECOVER_EFI_ENTRY",
        `efibootmgr reported success, but no new boot entry '${entry.label}' appeared.`,
        "The firmware may refuse new variables; the removable path EFI/BOOT/BOOTX64.EFI still boots.",
      );
    }
    created.push(added.number);
    log.say(`  Boot${added.number} ${entry.label} ${entry.loader}`);
  }
  const order = bootOrder(created, (await read()).bootOrder);
  await runLogged(
    ["efibootmgr", "--quiet", "--bootorder", order.join(",")],
    log,
    options.verbose,
    "Set the boot order",
  );
  log.say(`  BootOrder ${order.join(",")}`);
}

/** The log onto the recovered system, then everything unmounted and closed. */
async function finish(
  options: RecoverOptions,
  layout: Layout,
  snapshot: string,
  seconds: number,
): Promise<string | null> {
  const { log } = options;
  log.say(`Recovered snapshot ${snapshot} in ${seconds.toFixed(0)} s.`);
  const stamp = (options.now?.() ?? new Date()).toISOString().replace(/[:.]/g, "-");
  const logDir = path.join(options.targetRoot, "var", "log", "lifeboat");
  let written: string | null = null;
  try {
    await mkdir(logDir, { recursive: true });
    written = path.join(logDir, `recover-${stamp}.log`);
    await writeFile(written, log.text());
  } catch (error) {
    log.say(
      `warning: could not write the log onto the recovered system: ${(error as Error).message}`,
    );
  }
  await execa("sync", [], { reject: false });
  for (const target of await mountsUnder(options.targetRoot)) {
    const umount = await execa("umount", [target], { reject: false, all: true });
    if (umount.exitCode !== 0) {
      throw environmentError(
        "LB_RECOVER_UMOUNT",
        `Could not unmount ${target}: ${String(umount.all ?? "").trim()}.`,
        `Something still uses the recovered tree; close it and run 'umount -R ${options.targetRoot}' before rebooting.`,
      );
    }
  }
  // Best effort: a device left open is harmless to the reboot that follows.
  for (const vg of layout.lvm.vgs) {
    await execa("vgchange", ["--config", LVM_CONFIG, "-an", vg.name], { reject: false });
  }
  for (const luks of layout.luks) {
    await execa("cryptsetup", ["close", luksMapperName(luks)], { reject: false });
  }
  for (const md of layout.md) await execa("mdadm", ["--stop", md.device], { reject: false });
  await execa("sync", [], { reject: false });
  return written ? written.slice(options.targetRoot.length) : null;
}

/** Mount points at or below `root`, deepest first (the order to unmount them in). */
async function mountsUnder(root: string): Promise<string[]> {
  const { stdout } = await runTool(["findmnt", "-J", "-l", "-o", "TARGET"]);
  const parsed = JSON.parse(stdout) as { filesystems?: { target: string }[] };
  return (parsed.filesystems ?? [])
    .map((f) => f.target)
    .filter((t) => t === root || t.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}
