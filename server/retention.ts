// Which snapshots a retention policy keeps. Pure, so it is tested without a server.
// Semantics as restic's and borg's: --keep-last N keeps the N newest; --keep-daily N keeps
// the newest snapshot of each of the N newest days that have one (likewise hourly, weekly,
// monthly); a snapshot any rule keeps is kept. Times are bucketed in UTC.

import { usageError } from "../common/errors.ts";

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

export interface Dated {
  id: string;
  time: Date;
}

function isoWeek(date: Date): string {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86400000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${week}`;
}

const BUCKETS: [keyof RetentionPolicy, (d: Date) => string][] = [
  ["keepHourly", (d) => d.toISOString().slice(0, 13)],
  ["keepDaily", (d) => d.toISOString().slice(0, 10)],
  ["keepWeekly", isoWeek],
  ["keepMonthly", (d) => d.toISOString().slice(0, 7)],
];

/** A policy with no rule above zero would forget everything: refused, even with nothing to forget. */
export function checkRetentionPolicy(policy: RetentionPolicy): void {
  const rules = Object.values(policy).filter((n) => n !== undefined);
  if (rules.length === 0 || rules.every((n) => n === 0)) {
    throw usageError(
      "LB_PRUNE_NO_POLICY",
      "prune needs at least one --keep-* rule above zero; without one it would forget every snapshot.",
      "For example: lifeboat prune --keep-last 7 --keep-daily 14 --keep-monthly 12",
    );
  }
}

export function applyRetention(
  snapshots: Dated[],
  policy: RetentionPolicy,
): { keep: string[]; forget: string[] } {
  checkRetentionPolicy(policy);
  const newest = [...snapshots].sort(
    (a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1),
  );
  const keep = new Set<string>();
  newest.slice(0, policy.keepLast ?? 0).forEach((s) => keep.add(s.id));
  for (const [rule, bucketOf] of BUCKETS) {
    const limit = policy[rule] ?? 0;
    const seen = new Set<string>();
    for (const snapshot of newest) {
      if (seen.size >= limit) break;
      const bucket = bucketOf(snapshot.time);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      keep.add(snapshot.id);
    }
  }
  return {
    keep: newest.filter((s) => keep.has(s.id)).map((s) => s.id),
    forget: newest.filter((s) => !keep.has(s.id)).map((s) => s.id),
  };
}
