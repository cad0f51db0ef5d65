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

/** Rehearse a migration: restore onto another disk bus and/or every disk scaled. */
export const MigrateSchema = z.object({
  bus: z.enum(["virtio", "nvme"]).optional(),
  /** 1.5 = 50% larger, 0.8 = 20% smaller (the data must still fit). */
  scale: z.number().min(0.1).max(16).optional(),
});
export type Migrate = z.infer<typeof MigrateSchema>;

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
  /** Units systemd reported failed in the restored machine (shown; not a failure alone). */
  failedUnits: z.array(z.string()).default([]),
  /** From the VM's start to the last probe passing. */
  rtoSeconds: z.number().nonnegative().nullable(),
  /** The snapshot's age when the drill started. */
  rpoSeconds: z.number().nonnegative().nullable(),
  /** The RTO budget this drill was held to, if any. */
  maxRtoSeconds: z.number().positive().nullable(),
  /** Evidence files kept for this drill (serial log, screenshot, recovery log, probe output). */
  evidence: z.array(z.string()),
  /** The rescue image the drill built for the host: its size and build time. */
  rescueImage: z
    .object({ bytes: z.number().int().nonnegative(), seconds: z.number().nonnegative() })
    .nullable()
    .default(null),
  /** Drilled onto deliberately different disks (a migration rehearsal). */
  migrate: MigrateSchema.nullable().default(null),
});
export type Drill = z.infer<typeof DrillSchema>;

/** RTO and RPO targets per host, for the report. */
export const HostTargetsSchema = z.object({
  rtoSeconds: z.number().positive().nullable(),
  rpoSeconds: z.number().positive().nullable(),
});
export type HostTargets = z.infer<typeof HostTargetsSchema>;

/** A user probe: a command run inside the restored VM, with a timeout; exit 0 passes. */
export const ProbeSpecSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "a probe name is 1-64 of A-Z a-z 0-9 _ . -"),
  command: z.string().min(1).max(4096),
  timeoutSeconds: z.number().int().positive().max(3600).default(60),
});
export type ProbeSpec = z.infer<typeof ProbeSpecSchema>;

/** Per host: when drills run, what they check, and the targets the report holds them to. */
export const DrillSettingsSchema = z.object({
  /** off, after-snapshot, "nightly HH:MM" or "weekly DAY HH:MM" (UTC). */
  schedule: z.string().default("off"),
  probes: z.array(ProbeSpecSchema).max(32).default([]),
  targets: HostTargetsSchema.default({ rtoSeconds: null, rpoSeconds: null }),
  /** The RTO budget scheduled drills are held to (a drill over it fails). */
  maxRtoSeconds: z.number().positive().nullable().default(null),
  /** Drill onto deliberately different disks. */
  migrate: MigrateSchema.nullable().default(null),
});
export type DrillSettings = z.infer<typeof DrillSettingsSchema>;

export const DrillRequestSchema = z.object({
  host: z.string(),
  /** Default: the host's latest snapshot. */
  snapshot: z.string().optional(),
  maxRtoSeconds: z.number().positive().optional(),
  migrate: MigrateSchema.optional(),
});
export type DrillRequest = z.infer<typeof DrillRequestSchema>;

/** Progress of one drill, as server-sent events: its phases, then its final record. */
export const DrillEventSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("phase"),
    phase: z.enum(DRILL_PHASES),
    state: z.enum(["start", "done", "failed"]),
    at: z.string(),
  }),
  z.object({ type: z.literal("state"), drill: DrillSchema }),
]);
export type DrillEvent = z.infer<typeof DrillEventSchema>;

// --- warm standby (server/drills/standby.ts) ---

export const StandbyImageSchema = z.object({
  host: z.string(),
  drill: z.string(),
  snapshot: z.string(),
  keptAt: z.string(),
  firmware: z.enum(["bios", "uefi"]),
  secureBoot: z.boolean(),
  memoryMiB: z.number().int().positive(),
  disks: z.array(z.object({ file: z.string(), bus: z.enum(["virtio", "nvme"]) })),
  /** The drill's RTO: what a restore took, against which the standby's boot time stands. */
  drillRtoSeconds: z.number().nullable(),
  /** Bytes the image takes on disk (allocated, not apparent). */
  bytes: z.number().int().nonnegative(),
});
export type StandbyImage = z.infer<typeof StandbyImageSchema>;

export const StandbyDropSchema = z.object({
  host: z.string(),
  drill: z.string(),
  at: z.string(),
  reason: z.string(),
});

export const StandbyStateSchema = z.object({
  capBytes: z.number().int().nonnegative(),
  usedBytes: z.number().int().nonnegative(),
  images: z.array(
    StandbyImageSchema.extend({
      running: z.boolean(),
      bootSeconds: z.number().nullable(),
    }),
  ),
  dropped: z.array(StandbyDropSchema),
});
export type StandbyState = z.infer<typeof StandbyStateSchema>;

export const StandbyStartSchema = z.object({
  /** isolated: no network at all; user: QEMU user networking (NAT) with the forwards. */
  network: z.enum(["isolated", "user"]).default("isolated"),
  /** host loopback port → guest port */
  hostfwd: z
    .array(
      z.object({
        hostPort: z.number().int().min(1).max(65535),
        guestPort: z.number().int().min(1).max(65535),
      }),
    )
    .max(16)
    .default([]),
  timeoutSeconds: z.number().int().positive().max(3600).default(600),
});
export type StandbyStart = z.infer<typeof StandbyStartSchema>;
