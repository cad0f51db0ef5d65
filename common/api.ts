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
