import { describe, expect, it } from "vitest";
import { z } from "zod";
import { measure } from "../../bench/lib/measure.ts";
import {
  BenchResults,
  combineRuns,
  compare,
  renderTable,
  type ToolResult,
} from "../../bench/lib/report.ts";
import { parseJsonOutput } from "../../bench/lib/tools.ts";

const MiB = 1024 * 1024;

function tool(seconds: number[], repo: number, memory: number, verified = true): ToolResult {
  const phase = (s: number) => ({ seconds: s, peakBytes: memory, peaks: { main: memory } });
  return {
    version: "1",
    settings: "",
    phases: {
      first: phase(seconds[0]!),
      unchanged: phase(seconds[1]!),
      changed: phase(seconds[2]!),
      restore: { ...phase(seconds[3]!), verified, problems: verified ? [] : ["missing: x"] },
    },
    repository: { allocated: repo, apparent: repo },
  };
}

function results(tools: BenchResults["tools"]): BenchResults {
  return BenchResults.parse({
    kind: "lifeboat/bench-backup",
    version: 1,
    startedAt: "2026-11-22T00:00:00Z",
    finishedAt: "2026-11-22T00:10:00Z",
    machine: { cpus: 2, cpuModel: "x", memoryBytes: 1, kernel: "6.1", node: "v24" },
    dataset: { files: 1, bytes: 1, changedFiles: 0 },
    notes: [],
    tools,
    runs: [tools],
    comparisons: compare(tools),
  });
}

describe("compare", () => {
  it("computes ratios to restic and checks Lifeboat's targets", () => {
    const tools = {
      restic: tool([10, 2, 3, 10], 100 * MiB, 100 * MiB),
      borg: tool([15, 3, 3, 20], 100 * MiB, 50 * MiB),
      lifeboat: tool([9, 2.5, 3, 7], 106 * MiB, 150 * MiB),
    };
    const byKey = (metric: string, t: "borg" | "lifeboat") =>
      compare(tools).find((c) => c.metric === metric && c.tool === t)!;
    expect(byKey("time.first", "lifeboat")).toMatchObject({ ratio: 0.9, target: 1, pass: true });
    expect(byKey("time.unchanged", "lifeboat")).toMatchObject({ ratio: 1.25, pass: false });
    expect(byKey("time.restore", "lifeboat")).toMatchObject({ ratio: 0.7, pass: true });
    expect(byKey("time.changed", "lifeboat")).toMatchObject({ target: null, pass: null });
    expect(byKey("repository.allocated", "lifeboat")).toMatchObject({ target: 1.05, pass: false });
    expect(byKey("memory.first", "lifeboat")).toMatchObject({ ratio: 1.5, pass: true });
    expect(byKey("time.first", "borg")).toMatchObject({ ratio: 1.5, target: null, pass: null });
  });

  it("gives a wrong restore no ratio, so it can't pass", () => {
    const tools = {
      restic: tool([10, 2, 3, 10], 100, 100),
      lifeboat: tool([9, 2, 3, 1], 100, 100, false),
    };
    const restore = compare(tools).find((c) => c.metric === "time.restore")!;
    expect(restore).toMatchObject({ ratio: null, pass: false });
    const table = renderTable(results(tools));
    expect(table).toMatch(/time: full restore\s+10\.0 s\s+WRONG\s+—\s+≤ 0\.80× MISS/);
    expect(table).toContain(
      "lifeboat: the restored tree does not match the dataset (full restore):",
    );
  });
});

describe("renderTable", () => {
  it("prints values, ratios and PASS/MISS", () => {
    const table = renderTable(
      results({
        restic: tool([10, 2, 3, 10], 100 * MiB, 100 * MiB),
        borg: tool([15, 3, 3, 20], 100 * MiB, 50 * MiB),
        lifeboat: tool([9, 2.5, 3, 7], 100 * MiB, 150 * MiB),
      }),
    );
    expect(table).toMatch(
      /time: first backup\s+10\.0 s\s+15\.0 s\s+9\.0 s\s+1\.50×\s+0\.90×\s+≤ 1\.00× PASS/,
    );
    expect(table).toMatch(/time: unchanged backup .* 1\.25×\s+≤ 1\.00× MISS/);
    expect(table).toMatch(/repository size \(du\)\s+100\.0 MiB/);
    expect(table).toContain("lifeboat peak memory by process:");
  });

  it("compares Lifeboat's restore from the data directory with restic's one restore", () => {
    const lifeboat = tool([9, 2, 3, 12], 100 * MiB, 300 * MiB);
    lifeboat.phases.restoreDir = {
      seconds: 7,
      peakBytes: 180 * MiB,
      peaks: { agent: 180 * MiB },
      verified: true,
      problems: [],
    };
    const tools = { restic: tool([10, 2, 3, 10], 100 * MiB, 100 * MiB), lifeboat };
    const byKey = (metric: string) =>
      compare(tools).find((c) => c.metric === metric && c.tool === "lifeboat")!;
    expect(byKey("time.restore")).toMatchObject({ ratio: 1.2, pass: false });
    expect(byKey("time.restoreDir")).toMatchObject({ ratio: 0.7, target: 0.8, pass: true });
    expect(byKey("memory.restoreDir")).toMatchObject({ ratio: 1.8, target: 2, pass: true });
    const table = renderTable(results(tools));
    expect(table).toMatch(/time: restore, data dir\s+—\s+7\.0 s\s+0\.70×\s+≤ 0\.80× PASS/);
    expect(table).toContain("  restore, data dir: agent 180.0 MiB");

    lifeboat.phases.restoreDir.verified = false;
    expect(byKey("time.restoreDir")).toMatchObject({ ratio: null, pass: false });
    const combined = combineRuns([lifeboat, lifeboat]);
    expect(combined.phases.restoreDir).toMatchObject({ seconds: 7, verified: false });
  });
});

describe("measure", () => {
  it("reads wall time and peak memory from GNU time", async () => {
    const m = await measure([process.execPath, "-e", "Buffer.alloc(64 * 1024 * 1024, 1)"]);
    expect(m.peakBytes).toBeGreaterThan(64 * MiB);
    expect(m.seconds).toBeGreaterThan(0);
  });

  it("turns a failing command into an error with its output", async () => {
    await expect(measure(["sh", "-c", "echo broken >&2; exit 3"])).rejects.toThrow(
      /exit code 3:\n {2}broken/,
    );
  });
});

describe("parseJsonOutput", () => {
  const Shape = z.object({ id: z.string() });
  it("takes the last line that has the expected shape", () => {
    expect(parseJsonOutput(Shape, 'log line\n{"id":"abc","stats":{}}\n', "x").id).toBe("abc");
  });
  it("names the command when nothing fits", () => {
    expect(() => parseJsonOutput(Shape, '{"token":"t"}', "lifeboat backup --json")).toThrow(
      /lifeboat backup --json printed no JSON object/,
    );
  });
});

describe("combineRuns", () => {
  it("takes the median of every figure and keeps a failed verification", () => {
    const combined = combineRuns([
      tool([10, 2, 3, 10], 100, 100),
      tool([30, 1, 3, 11], 300, 120, false),
      tool([20, 3, 3, 12], 200, 110),
    ]);
    expect(combined.phases.first?.seconds).toBe(20);
    expect(combined.phases.unchanged?.seconds).toBe(2);
    expect(combined.phases.restore).toMatchObject({ seconds: 11, verified: false });
    expect(combined.phases.restore?.problems).toEqual(["missing: x"]);
    expect(combined.repository).toEqual({ allocated: 200, apparent: 200 });
    expect(combined.phases.first?.peaks).toEqual({ main: 110 });
  });

  it("uses the runs that got that far, and keeps the first error", () => {
    const failed: ToolResult = { version: "1", settings: "", phases: {}, error: "boom" };
    const combined = combineRuns([
      tool([10, 2, 3, 10], 100, 100),
      failed,
      tool([12, 2, 3, 10], 100, 100),
    ]);
    expect(combined.phases.first?.seconds).toBe(11);
    expect(combined.error).toBe("boom");
  });
});
