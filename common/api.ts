// The backup server's wire shapes that both sides read: the server declares its responses
// with them (and so the OpenAPI document), the client checks what it receives against the
// same schemas. Request bodies stay with the server's routes.

import { z } from "zod";

export const ErrorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }),
});

const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** What a backup read and added; sent with the commit, returned with the snapshot. */
export const BackupStatsSchema = z.object({
  bytes: Count,
  newBytes: Count,
  files: Count,
  seconds: z.number().nonnegative().max(1e9),
});

export const SnapshotInfoSchema = z.object({
  id: z.string(),
  host: z.string(),
  createdAt: z.string(),
  committedAt: z.string().nullable(),
  keyId: z.string().nullable(),
  parent: z.string().nullable(),
  manifestId: z.string().nullable(),
  stats: BackupStatsSchema.nullable(),
  summary: z.unknown(),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfoSchema>;

export const PruneResultSchema = z.object({
  hosts: z.array(
    z.object({ host: z.string(), keep: z.array(z.string()), forget: z.array(z.string()) }),
  ),
  gc: z.object({ chunks: z.number(), bytes: z.number() }).nullable(),
});
export type PruneResult = z.infer<typeof PruneResultSchema>;

/** What a recovery (or a restore drill's recovery) reports to the server when it ends. */
export const RecoveryReportSchema = z.object({
  /** The host recovered; a host token may only report its own (and may leave it out). */
  host: z.string().min(1).max(128).optional(),
  snapshot: z.string().max(64).nullable(),
  ok: z.boolean(),
  seconds: z.number().nonnegative().max(1e7),
  steps: z
    .array(z.object({ name: z.string().max(64), seconds: z.number().nonnegative().max(1e7) }))
    .max(64),
  error: z.object({ code: z.string().max(128), message: z.string().max(4096) }).nullable(),
  /** The whole recovery log, as the rescue system wrote it. */
  log: z.string().max(4 * 1024 * 1024),
});
export type RecoveryReport = z.infer<typeof RecoveryReportSchema>;

export const RecoveryInfoSchema = RecoveryReportSchema.omit({ log: true, host: true }).extend({
  id: z.number().int().positive(),
  host: z.string(),
  receivedAt: z.string(),
});
export type RecoveryInfo = z.infer<typeof RecoveryInfoSchema>;
