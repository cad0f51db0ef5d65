// The backup benchmark: Lifeboat, restic and borg side by side on the same dataset, on the
// same disk, in one run. Phases: first backup, unchanged second backup, third backup after
// 1% of the files changed, full restore (checked against the dataset), repository size.
// Prints a table with ratios to restic and Lifeboat's targets, and writes the results as
// JSON to .work/bench/results-<timestamp>.json. See bench/README.md.

import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { environmentError, LifeboatError, usageError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fs.ts";
import { formatBytes } from "../common/units.ts";
import {
  changeFiles,
  type Dataset,
  datasetPaths,
  ensureDataset,
  undoChanges,
} from "./lib/dataset.ts";
import { compareManifests, treeManifest } from "./lib/manifest.ts";
import { diskUsage, flush } from "./lib/measure.ts";
import { BenchResults, combineRuns, compare, renderTable, type ToolResult } from "./lib/report.ts";
import { mountScratch, type ScratchFilesystem, unmountLeftovers } from "./lib/scratchfs.ts";
import {
  borg,
  type Contender,
  lifeboat,
  type PhaseMeasure,
  restic,
  TOOL_NAMES,
  type ToolName,
} from "./lib/tools.ts";

const PROJECT_ROOT = path.resolve(import.meta.dirname, "..");
const WORK_DIR = path.join(PROJECT_ROOT, ".work", "bench");

const USAGE = `usage: bench/backup.ts [--only restic,borg,lifeboat] [--runs N] [--keep]
  --only LIST  run only these tools (default: all three)
  --runs N     repeat the whole sequence N times with fresh repositories; report medians
  --keep       keep the repositories and restored trees under .work/bench/run-*/`;

const Options = z.object({
  only: z.array(z.enum(TOOL_NAMES)).min(1),
  runs: z.coerce.number().int().min(1).max(20),
});

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: "string", default: TOOL_NAMES.join(",") },
      runs: { type: "string", default: "1" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const parsed = Options.safeParse({
    only: values.only.split(",").map((name) => name.trim()),
    runs: values.runs,
  });
  if (!parsed.success) {
    throw usageError(
      "LB_BENCH_USAGE",
      `Bad option: --only takes a comma-separated list of ${TOOL_NAMES.join(", ")} ` +
        `(got "${values.only}"); --runs a whole number from 1 to 20 (got "${values.runs}").`,
      USAGE,
    );
  }
  // Always in the same order, so every phase runs the tools in the same sequence.
  const tools = TOOL_NAMES.filter((t) => parsed.data.only.includes(t));
  return { tools, runs: parsed.data.runs, keep: values.keep };
}

const say = (line: string) => console.error(`bench: ${line}`);

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const BACKUPS = [
  { phase: "first", label: "first backup" },
  { phase: "unchanged", label: "second backup, nothing changed" },
  { phase: "changed", label: "third backup, 1% of the files changed" },
] as const;

/**
 * One pass of every phase for every tool, with fresh repositories under runDir. A tool that
 * fails drops out with its error recorded; the others go on.
 */
async function runOnce(
  dataset: Dataset,
  tools: readonly ToolName[],
  runDir: string,
  keep: boolean,
  run: number,
) {
  const results: Partial<Record<ToolName, ToolResult>> = {};
  const active: Contender[] = [];
  const started: Contender[] = [];
  const scratch: ScratchFilesystem[] = [];
  let changedFiles = 0;
  const fail = (tool: ToolName, error: unknown) => {
    results[tool]!.error = message(error);
    say(`${tool} failed: ${message(error)}`);
    const index = active.findIndex((c) => c.name === tool);
    if (index >= 0) active.splice(index, 1);
  };

  try {
    for (const tool of tools) {
      const dir = path.join(runDir, tool);
      results[tool] = { version: "?", settings: "", phases: {} };
      try {
        await mkdir(dir, { recursive: true });
        const contender =
          tool === "restic"
            ? await restic(dir)
            : tool === "borg"
              ? await borg(dir)
              : await lifeboat(dir, PROJECT_ROOT);
        started.push(contender);
        results[tool] = { version: contender.version, settings: contender.settings, phases: {} };
        await contender.init();
        active.push(contender);
      } catch (error) {
        fail(tool, error);
      }
    }

    for (const [n, { phase, label }] of BACKUPS.entries()) {
      if (phase === "changed") {
        changedFiles = (await changeFiles(WORK_DIR, dataset)).length;
        say(`changed ${changedFiles} files`);
      }
      for (const contender of [...active]) {
        await flush();
        try {
          const m = await contender.backup(dataset.dir, n + 1);
          results[contender.name]!.phases[phase] = m;
          say(`${label}: ${contender.name} ${m.seconds.toFixed(1)} s, ${formatBytes(m.peakBytes)}`);
        } catch (error) {
          fail(contender.name, error);
        }
      }
    }

    await flush();
    for (const contender of active) {
      results[contender.name]!.repository = await diskUsage(contender.repositoryDir);
      if (existsSync(contender.clientStateDir)) {
        results[contender.name]!.clientState = await diskUsage(contender.clientStateDir);
      }
    }

    say("recording the changed dataset's manifest, to check the restores against");
    const expected = await treeManifest(dataset.dir);
    // Each tool restores onto a freshly made filesystem of its own, as a recovery does
    // (scratchfs.ts says why not into a directory of the shared disk). The images are
    // deleted only after every tool has restored, and the order turns with each run, so
    // that no tool always writes while the disk is busy with another's leftovers.
    const restoring = [
      ...active.slice((run - 1) % active.length),
      ...active.slice(0, (run - 1) % active.length),
    ];
    const restoreOnce = async (
      contender: Contender,
      phase: "restore" | "restoreDir",
      restore: (target: string) => Promise<PhaseMeasure>,
    ) => {
      const target = path.join(runDir, contender.name, phase);
      await rm(target, { recursive: true, force: true });
      await mkdir(target, { recursive: true });
      try {
        scratch.push(await mountScratch(target, 2 * dataset.bytes + 256 * 1024 * 1024));
      } catch (error) {
        fail(contender.name, error);
        return;
      }
      await flush();
      try {
        const m = await restore(target);
        // restic and borg were given ".", but a tool may also restore under the full path.
        const nested = path.join(target, dataset.dir);
        const root = existsSync(nested) ? nested : target;
        const problems = compareManifests(expected, await treeManifest(root));
        results[contender.name]!.phases[phase] = {
          ...m,
          verified: problems.length === 0,
          problems,
        };
        say(
          `${phase === "restore" ? "full restore" : "full restore from the data directory"}: ` +
            `${contender.name} ${m.seconds.toFixed(1)} s, ` +
            `${formatBytes(m.peakBytes)}, ${problems.length === 0 ? "verified" : "WRONG"}`,
        );
      } catch (error) {
        fail(contender.name, error);
      }
      await scratch.at(-1)!.unmount();
    };
    for (const contender of restoring) {
      await restoreOnce(contender, "restore", (target) => contender.restore(target));
      const fromDirectory = contender.restoreFromDirectory?.bind(contender);
      if (fromDirectory && active.includes(contender)) {
        await restoreOnce(contender, "restoreDir", fromDirectory);
      }
    }
    if (keep) for (const fs of scratch) say(`restored tree kept in ${fs.image}`);
  } finally {
    // Never left mounted, whatever failed: the run directory is deleted below.
    for (const fs of scratch) {
      await (keep ? fs.unmount() : fs.release()).catch((error: unknown) => say(message(error)));
    }
    for (const contender of started) {
      await contender.stop().catch((error: unknown) => say(`${contender.name}: ${message(error)}`));
    }
    await undoChanges(datasetPaths(WORK_DIR));
    if (!keep) await rm(runDir, { recursive: true, force: true });
  }
  return { results, changedFiles };
}

async function main() {
  const { tools, runs, keep } = options(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    throw environmentError(
      "LB_NOT_ROOT",
      "The benchmark needs root: it builds a Debian root filesystem and restores its owners.",
      "Run it as root (make bench).",
    );
  }
  const startedAt = new Date();
  await mkdir(WORK_DIR, { recursive: true });
  for (const target of await unmountLeftovers(WORK_DIR)) {
    say(`unmounted ${target}, left mounted by an interrupted run`);
  }
  const dataset = await ensureDataset(WORK_DIR, say);
  say(`dataset: ${dataset.files} files, ${formatBytes(dataset.bytes)} in ${dataset.dir}`);

  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const perRun: Partial<Record<ToolName, ToolResult>>[] = [];
  let changedFiles = 0;
  for (let run = 1; run <= runs; run++) {
    if (runs > 1) say(`run ${run} of ${runs}`);
    const suffix = runs > 1 ? `-${run}` : "";
    const once = await runOnce(
      dataset,
      tools,
      path.join(WORK_DIR, `run-${stamp}${suffix}`),
      keep,
      run,
    );
    perRun.push(once.results);
    changedFiles = once.changedFiles;
  }
  const combined: Partial<Record<ToolName, ToolResult>> = {};
  for (const tool of tools) combined[tool] = combineRuns(perRun.map((r) => r[tool]!));

  const cpus = os.cpus();
  const report = BenchResults.parse({
    kind: "lifeboat/bench-backup",
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? "unknown",
      memoryBytes: os.totalmem(),
      kernel: os.release(),
      node: process.version,
    },
    dataset: { files: dataset.files, bytes: dataset.bytes, changedFiles },
    notes: [
      `Medians over ${runs} run(s), each with fresh repositories.`,
      "Wall-clock seconds. Page caches are not dropped: the dataset was read in full (checked " +
        "against its manifest) just before, and every phase runs all tools back to back, with " +
        "sync before each command.",
      "Peak memory: GNU time's maximum RSS (the largest process of the command's tree); for " +
        "Lifeboat the agent's plus the server's VmHWM over the same span (the agent's alone " +
        "when it restores from the data directory).",
      "Repository size: allocated bytes (du), measured after the third backup; apparent " +
        "bytes are recorded too. Client-side caches and state are reported apart.",
      "Full restore: each tool onto a freshly made ext4 of its own (a loop device over a " +
        "sparse image on the same disk, mounted without discard), checked against the dataset.",
      "Restore, data dir: Lifeboat reading the server's data directory itself (restore --from), " +
        "as restic and borg read their local repositories; compared with restic's restore.",
    ],
    tools: combined,
    runs: perRun,
    comparisons: compare(combined),
  });
  const file = path.join(WORK_DIR, `results-${stamp}.json`);
  await writeFileAtomic(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(renderTable(report));
  console.log(`\nresults: ${path.relative(PROJECT_ROOT, file)}`);
  if (keep) console.log(`repositories kept in .work/bench/run-${stamp}*`);
}

try {
  await main();
} catch (error) {
  if (error instanceof LifeboatError) {
    console.error(`bench: error ${error.code}: ${error.message}`);
    if (error.hint) console.error(`  hint: ${error.hint}`);
    process.exit(error.kind === "usage" ? 2 : 3);
  }
  throw error;
}
