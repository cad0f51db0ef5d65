// Measuring one command: wall-clock time and peak memory (GNU time's maximum resident set
// size), and measuring a long-running process (the Lifeboat server) by its VmHWM, reset
// between phases through /proc/PID/clear_refs.

import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { environmentError } from "../../common/errors.ts";
import { findTool, missingToolError, runTool } from "../../common/exec.ts";

export interface Measured {
  seconds: number;
  /** Maximum resident set size in bytes, of the largest process in the command's tree. */
  peakBytes: number;
  stdout: string;
}

export interface MeasureOptions {
  cwd?: string;
  env?: Record<string, string>;
}

const GNU_TIME = "/usr/bin/time";

/** Runs argv under GNU time; a failing command is an error naming it, with its last output. */
export async function measure(argv: readonly string[], options: MeasureOptions = {}) {
  if (findTool(GNU_TIME) === undefined) {
    throw environmentError(
      "LB_TOOL_MISSING",
      `${GNU_TIME} is not installed, and the benchmark reads peak memory from it.`,
      "Install it: apt-get install time",
    );
  }
  const [tool] = argv;
  if (tool === undefined || findTool(tool) === undefined) throw missingToolError(String(tool));
  const scratch = await mkdtemp(path.join(os.tmpdir(), "lifeboat-bench-"));
  const timeFile = path.join(scratch, "time");
  try {
    const started = performance.now();
    const result = await execa(GNU_TIME, ["-f", "%M", "-o", timeFile, ...argv], {
      cwd: options.cwd,
      env: { LC_ALL: "C", LANG: "C", ...options.env },
      extendEnv: true,
      reject: false,
      all: true,
      maxBuffer: 256 * 1024 * 1024,
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.exitCode !== 0) {
      const tail = String(result.all ?? "")
        .trim()
        .split("\n")
        .slice(-12)
        .join("\n  ");
      throw environmentError(
        "LB_BENCH_COMMAND_FAILED",
        `${argv.join(" ")} failed with exit code ${result.exitCode}:\n  ${tail}`,
        "Run the command by hand (the repositories are kept with --keep) to see why.",
      );
    }
    const kib = Number((await readFile(timeFile, "utf8")).trim().split("\n").at(-1));
    if (!Number.isFinite(kib)) throw new Error(`GNU time wrote no peak memory for ${tool}`);
    return { seconds, peakBytes: kib * 1024, stdout: String(result.stdout ?? "") } as Measured;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A process's peak resident set size since start or since the last resetPeak, in bytes. */
export function peakOfProcess(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (match === null) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Resets VmHWM to the current RSS (Linux 4.0+: writing 5 to clear_refs). */
export function resetPeak(pid: number) {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

export interface DiskUsage {
  /** Blocks the files occupy (du), what the disk pays. */
  allocated: number;
  /** Sum of file sizes (du --apparent-size). */
  apparent: number;
}

export async function diskUsage(dir: string): Promise<DiskUsage> {
  const allocated = await runTool(["du", "-s", "--block-size=1", dir]);
  const apparent = await runTool(["du", "-s", "--block-size=1", "--apparent-size", dir]);
  return { allocated: firstNumber(allocated.stdout), apparent: firstNumber(apparent.stdout) };
}

function firstNumber(duOutput: string): number {
  const value = Number(duOutput.trim().split(/\s+/)[0]);
  if (!Number.isFinite(value)) throw new Error(`unexpected du output: ${duOutput}`);
  return value;
}

/** Write back everything dirty, so one tool's writes are not flushed during the next one's run. */
export async function flush() {
  await runTool(["sync"]);
}
