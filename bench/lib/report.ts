// The benchmark's results: their JSON shape (validated before it is written), the ratios
// against restic with the targets Lifeboat must meet, and the table printed at the end.

import { z } from "zod";
import { formatBytes } from "../../common/units.ts";
import { TOOL_NAMES, type ToolName } from "./tools.ts";

const Phase = z.object({
  seconds: z.number().nonnegative(),
  peakBytes: z.number().nonnegative(),
  peaks: z.record(z.string(), z.number().nonnegative()),
});

const Usage = z.object({ allocated: z.number(), apparent: z.number() });

/**
 * `restoreDir`: Lifeboat's restore straight from the server's data directory (`--from DIR`,
 * no server in between), what restic and borg do with their local repositories. The
 * server path is `restore`. Both are compared with restic's one restore.
 */
export const PHASES = ["first", "unchanged", "changed", "restore", "restoreDir"] as const;
export type PhaseName = (typeof PHASES)[number];
const RESTORES = ["restore", "restoreDir"] as const;
type RestoreName = (typeof RESTORES)[number];
const isRestore = (phase: PhaseName): phase is RestoreName =>
  (RESTORES as readonly string[]).includes(phase);
/** Which of restic's phases a phase is compared with. */
const REFERENCE_PHASE: Record<PhaseName, PhaseName> = {
  first: "first",
  unchanged: "unchanged",
  changed: "changed",
  restore: "restore",
  restoreDir: "restore",
};

const RestorePhase = Phase.extend({ verified: z.boolean(), problems: z.array(z.string()) });

const ToolResult = z.object({
  version: z.string(),
  settings: z.string(),
  phases: z.object({
    first: Phase.optional(),
    unchanged: Phase.optional(),
    changed: Phase.optional(),
    restore: RestorePhase.optional(),
    restoreDir: RestorePhase.optional(),
  }),
  repository: Usage.optional(),
  clientState: Usage.optional(),
  /** Why the tool's run stopped early, if it did. */
  error: z.string().optional(),
});
export type ToolResult = z.infer<typeof ToolResult>;

export const BenchResults = z.object({
  kind: z.literal("lifeboat/bench-backup"),
  version: z.literal(1),
  startedAt: z.string(),
  finishedAt: z.string(),
  machine: z.object({
    cpus: z.number(),
    cpuModel: z.string(),
    memoryBytes: z.number(),
    kernel: z.string(),
    node: z.string(),
  }),
  dataset: z.object({
    files: z.number(),
    bytes: z.number(),
    changedFiles: z.number(),
  }),
  notes: z.array(z.string()),
  /** Each tool's figures: the median over the runs. */
  tools: z.partialRecord(z.enum(TOOL_NAMES), ToolResult),
  /** Every run's own figures (fresh repositories each time), in order. */
  runs: z.array(z.partialRecord(z.enum(TOOL_NAMES), ToolResult)),
  comparisons: z.array(
    z.object({
      metric: z.string(),
      tool: z.enum(TOOL_NAMES),
      ratio: z.number().nullable(),
      target: z.number().nullable(),
      pass: z.boolean().nullable(),
    }),
  ),
});
export type BenchResults = z.infer<typeof BenchResults>;
export type Comparison = BenchResults["comparisons"][number];

type Tools = BenchResults["tools"];

interface Metric {
  key: string;
  label: string;
  /** Lifeboat's ratio to restic must be at most this; null: reported, no target. */
  target: number | null;
  value: (result: ToolResult) => number | undefined;
  /** restic's figure to divide by (default: `value` of restic's result). */
  reference?: (restic: ToolResult) => number | undefined;
  format: (value: number) => string;
}

const PHASE_LABELS: Record<PhaseName, string> = {
  first: "first backup",
  unchanged: "unchanged backup",
  changed: "1% changed backup",
  restore: "full restore",
  restoreDir: "restore, data dir",
};

const TIME_TARGETS: Record<PhaseName, number | null> = {
  first: 1.0,
  unchanged: 1.0,
  changed: null,
  restore: 0.8,
  restoreDir: 0.8,
};

const seconds = (value: number) => `${value.toFixed(1)} s`;

/** A restore that did not reproduce the data has no time worth comparing. */
function phaseOf(result: ToolResult, phase: PhaseName) {
  const measured = result.phases[phase];
  if (measured === undefined) return undefined;
  if (isRestore(phase) && !result.phases[phase]?.verified) return undefined;
  return measured;
}

export const METRICS: readonly Metric[] = [
  ...PHASES.map((phase) => ({
    key: `time.${phase}`,
    label: `time: ${PHASE_LABELS[phase]}`,
    target: TIME_TARGETS[phase],
    value: (r: ToolResult) => phaseOf(r, phase)?.seconds,
    reference: (r: ToolResult) => phaseOf(r, REFERENCE_PHASE[phase])?.seconds,
    format: seconds,
  })),
  {
    key: "repository.allocated",
    label: "repository size (du)",
    target: 1.05,
    value: (r) => r.repository?.allocated,
    format: formatBytes,
  },
  {
    key: "clientState.allocated",
    label: "client cache and state (du)",
    target: null,
    value: (r) => r.clientState?.allocated,
    format: formatBytes,
  },
  ...PHASES.map((phase) => ({
    key: `memory.${phase}`,
    label: `peak memory: ${PHASE_LABELS[phase]}`,
    target: 2.0,
    value: (r: ToolResult) => r.phases[phase]?.peakBytes,
    reference: (r: ToolResult) => r.phases[REFERENCE_PHASE[phase]]?.peakBytes,
    format: formatBytes,
  })),
];

/** Every tool's ratio to restic on every metric, with Lifeboat's targets. */
export function compare(tools: Tools): Comparison[] {
  const comparisons: Comparison[] = [];
  const base = tools.restic;
  for (const metric of METRICS) {
    for (const tool of ["borg", "lifeboat"] as const) {
      const result = tools[tool];
      if (result === undefined) continue;
      const value = result ? metric.value(result) : undefined;
      const reference = base ? (metric.reference ?? metric.value)(base) : undefined;
      const ratio =
        value === undefined || reference === undefined || reference === 0
          ? null
          : value / reference;
      const target = tool === "lifeboat" ? metric.target : null;
      const pass = target === null ? null : ratio !== null && ratio <= target;
      comparisons.push({ metric: metric.key, tool, ratio, target, pass });
    }
  }
  return comparisons;
}

function pad(text: string, width: number, left = false) {
  return left ? text.padEnd(width) : text.padStart(width);
}

/** The results as a plain-text table: values per tool, ratios to restic, targets. */
export function renderTable(results: BenchResults): string {
  const present = TOOL_NAMES.filter((tool) => results.tools[tool] !== undefined);
  const others = present.filter((tool): tool is Exclude<ToolName, "restic"> => tool !== "restic");
  const header = [
    pad("", 32, true),
    ...present.map((tool) => pad(tool, 11)),
    ...others.map((tool) => pad(`${tool}/restic`, 17)),
    "  target (lifeboat/restic)",
  ].join("");
  const { files, bytes, changedFiles } = results.dataset;
  const runs = results.runs.length;
  const title =
    `${files} files, ${formatBytes(bytes)}; third backup after ${changedFiles} changed; ` +
    (runs > 1 ? `medians of ${runs} runs` : "one run");
  const lines = [title, "", header, "-".repeat(header.length)];
  for (const metric of METRICS) {
    const cells = present.map((tool) => {
      const result = results.tools[tool]!;
      const value = metric.value(result);
      if (value !== undefined) return pad(metric.format(value), 11);
      const phase = PHASES.find((p) => metric.key === `time.${p}`);
      if (phase && isRestore(phase) && result.phases[phase] !== undefined) {
        return pad("WRONG", 11);
      }
      return pad(result.error === undefined ? "—" : "failed", 11);
    });
    const ratios = others.map((tool) => {
      const c = results.comparisons.find((x) => x.metric === metric.key && x.tool === tool);
      return pad(c?.ratio == null ? "—" : `${c.ratio.toFixed(2)}×`, 17);
    });
    const lifeboat = results.comparisons.find(
      (x) => x.metric === metric.key && x.tool === "lifeboat",
    );
    const target =
      metric.target === null
        ? ""
        : `  ≤ ${metric.target.toFixed(2)}× ${lifeboat === undefined ? "" : lifeboat.pass ? "PASS" : "MISS"}`;
    lines.push([pad(metric.label, 32, true), ...cells, ...ratios, target].join("").trimEnd());
  }
  for (const tool of present) {
    const result = results.tools[tool]!;
    for (const phase of RESTORES) {
      const restore = result.phases[phase];
      if (restore !== undefined && !restore.verified) {
        lines.push(
          "",
          `${tool}: the restored tree does not match the dataset (${PHASE_LABELS[phase]}):`,
        );
        lines.push(...restore.problems.map((p) => `  ${p}`));
      }
    }
    if (result.error !== undefined) lines.push("", `${tool} stopped: ${result.error}`);
  }
  const lifeboat = results.tools.lifeboat;
  if (lifeboat !== undefined) {
    const parts = PHASES.flatMap((phase) => {
      const peaks = lifeboat.phases[phase]?.peaks;
      if (peaks === undefined) return [];
      const text = Object.entries(peaks)
        .map(([name, bytes]) => `${name} ${formatBytes(bytes)}`)
        .join(" + ");
      return [`  ${PHASE_LABELS[phase]}: ${text}`];
    });
    if (parts.length > 0) lines.push("", "lifeboat peak memory by process:", ...parts);
  }
  return lines.join("\n");
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

type PhaseResult = z.infer<typeof Phase>;

function medianPhase(phases: PhaseResult[]): PhaseResult {
  const names = [...new Set(phases.flatMap((p) => Object.keys(p.peaks)))];
  return {
    seconds: median(phases.map((p) => p.seconds)),
    peakBytes: median(phases.map((p) => p.peakBytes)),
    peaks: Object.fromEntries(names.map((n) => [n, median(phases.map((p) => p.peaks[n] ?? 0))])),
  };
}

/**
 * One tool's runs as one result: the median of every figure over the runs that reached it.
 * A restore counts as verified only if every run's was; the first error is kept.
 */
export function combineRuns(runs: readonly ToolResult[]): ToolResult {
  const first = runs[0];
  if (first === undefined) throw new Error("combineRuns needs at least one run");
  const phases: ToolResult["phases"] = {};
  for (const phase of ["first", "unchanged", "changed"] as const) {
    const measured = runs.flatMap((r) => (r.phases[phase] ? [r.phases[phase]] : []));
    if (measured.length > 0) phases[phase] = medianPhase(measured);
  }
  for (const phase of RESTORES) {
    const restores = runs.flatMap((r) => (r.phases[phase] ? [r.phases[phase]] : []));
    if (restores.length > 0) {
      phases[phase] = {
        ...medianPhase(restores),
        verified: restores.every((r) => r.verified),
        problems: restores.flatMap((r) => r.problems),
      };
    }
  }
  const usage = (pick: (r: ToolResult) => z.infer<typeof Usage> | undefined) => {
    const values = runs.flatMap((r) => (pick(r) ? [pick(r)!] : []));
    if (values.length === 0) return undefined;
    return {
      allocated: median(values.map((v) => v.allocated)),
      apparent: median(values.map((v) => v.apparent)),
    };
  };
  const combined: ToolResult = { version: first.version, settings: first.settings, phases };
  const repository = usage((r) => r.repository);
  const clientState = usage((r) => r.clientState);
  const error = runs.find((r) => r.error !== undefined)?.error;
  if (repository) combined.repository = repository;
  if (clientState) combined.clientState = clientState;
  if (error !== undefined) combined.error = error;
  return combined;
}
