// Restore drills on the wire and on disk: one drill is one restore of one snapshot onto a
// fresh VM, booted and checked. The server stores these records, the CLI prints them, the
// JUnit and HTML reports render them. Shared by the server and the client.

import { z } from "zod";

/** The phases of a drill, in order; RTO runs from the VM's start to the last one's end. */
export const DRILL_PHASES = [
  "provision",
  "rescue-boot",
  "layout",
  "data",
  "bootloader",
  "first-boot",
  "probes",
] as const;
export type DrillPhaseName = (typeof DRILL_PHASES)[number];

export const DrillStateSchema = z.enum(["queued", "running", "passed", "failed"]);
export type DrillState = z.infer<typeof DrillStateSchema>;

export const DrillPhaseSchema = z.object({
  name: z.enum(DRILL_PHASES),
  seconds: z.number().nonnegative(),
  ok: z.boolean(),
});
export type DrillPhase = z.infer<typeof DrillPhaseSchema>;

export const ProbeResultSchema = z.object({
  name: z.string(),
  command: z.string(),
  /** null when the probe timed out or could not run. */
  exitCode: z.number().int().nullable(),
  seconds: z.number().nonnegative(),
  /** The tail of its output. */
  output: z.string(),
});
export type ProbeResult = z.infer<typeof ProbeResultSchema>;

/** What each verification level found: null when the drill never got that far. */
export const DrillLevelsSchema = z.object({
  /** L1: the boot marker appeared on the serial console. */
  boot: z.boolean().nullable(),
  /** L2: mounts and fstab agree with the layout. */
  mounts: z.boolean().nullable(),
  /** L3: sampled file checksums match the snapshot's file index. */
  files: z.boolean().nullable(),
  /** L4: every user probe exited 0. */
  probes: z.boolean().nullable(),
});
export type DrillLevels = z.infer<typeof DrillLevelsSchema>;

export const DrillSchema = z.object({
  id: z.string(),
  host: z.string(),
  snapshot: z.string(),
  trigger: z.enum(["snapshot", "schedule", "manual"]),
  state: DrillStateSchema,
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** The phase that failed, and why, in words an operator can act on. */
  failedPhase: z.enum(DRILL_PHASES).nullable(),
  reason: z.string().nullable(),
  phases: z.array(DrillPhaseSchema),
  levels: DrillLevelsSchema,
  probes: z.array(ProbeResultSchema),
  /** From the VM's start to the last probe passing. */
  rtoSeconds: z.number().nonnegative().nullable(),
  /** The snapshot's age when the drill started. */
  rpoSeconds: z.number().nonnegative().nullable(),
  /** The RTO budget this drill was held to, if any. */
  maxRtoSeconds: z.number().positive().nullable(),
  /** Evidence files kept for this drill (serial log, screenshot, recovery log, probe output). */
  evidence: z.array(z.string()),
});
export type Drill = z.infer<typeof DrillSchema>;

/** RTO and RPO targets per host, for the report. */
export const HostTargetsSchema = z.object({
  rtoSeconds: z.number().positive().nullable(),
  rpoSeconds: z.number().positive().nullable(),
});
export type HostTargets = z.infer<typeof HostTargetsSchema>;
