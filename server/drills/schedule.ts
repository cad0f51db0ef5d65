// When a host's restore drill is due. Pure: the scheduler asks isDue() once a minute and
// after every committed snapshot.
//
//   off                  only drills started by hand
//   after-snapshot       a drill for every new snapshot
//   nightly HH:MM        once a day at that time (UTC)
//   weekly DAY HH:MM     once a week (DAY: mon..sun)
//
// A server that was down at the scheduled time runs the missed drill once when it comes
// back (within one period), never a backlog of them.

import { usageError } from "../../common/errors.ts";

export type DrillSchedule =
  | { kind: "off" }
  | { kind: "after-snapshot" }
  | { kind: "nightly"; hour: number; minute: number }
  | { kind: "weekly"; day: number; hour: number; minute: number };

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY_MS = 86_400_000;

export function parseSchedule(text: string): DrillSchedule {
  const words = text.trim().toLowerCase().split(/\s+/);
  const bad = () =>
    usageError(
      "LB_DRILL_SCHEDULE",
      `Drill schedule "${text}" is not one of: off, after-snapshot, nightly HH:MM, weekly DAY HH:MM.`,
      'For example "nightly 02:30" or "weekly sun 03:00" (times are UTC).',
    );
  const time = (value: string | undefined) => {
    const match = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(value ?? "");
    if (!match) throw bad();
    return { hour: Number(match[1]), minute: Number(match[2]) };
  };
  if (words.length === 1 && words[0] === "off") return { kind: "off" };
  if (words.length === 1 && words[0] === "after-snapshot") return { kind: "after-snapshot" };
  if (words.length === 2 && words[0] === "nightly") return { kind: "nightly", ...time(words[1]) };
  if (words.length === 3 && words[0] === "weekly") {
    const day = DAYS.indexOf(words[1]!.slice(0, 3));
    if (day < 0) throw bad();
    return { kind: "weekly", day, ...time(words[2]) };
  }
  throw bad();
}

export function formatSchedule(schedule: DrillSchedule): string {
  const hhmm = (s: { hour: number; minute: number }) =>
    `${String(s.hour).padStart(2, "0")}:${String(s.minute).padStart(2, "0")}`;
  switch (schedule.kind) {
    case "off":
    case "after-snapshot":
      return schedule.kind;
    case "nightly":
      return `nightly ${hhmm(schedule)}`;
    case "weekly":
      return `weekly ${DAYS[schedule.day]} ${hhmm(schedule)}`;
  }
}

/** The latest scheduled time at or before `now`, or null for schedules without a clock. */
export function lastOccurrence(schedule: DrillSchedule, now: Date): Date | null {
  if (schedule.kind !== "nightly" && schedule.kind !== "weekly") return null;
  const at = new Date(now);
  at.setUTCHours(schedule.hour, schedule.minute, 0, 0);
  if (schedule.kind === "nightly") {
    if (at.getTime() > now.getTime()) at.setTime(at.getTime() - DAY_MS);
    return at;
  }
  const back = (at.getUTCDay() - schedule.day + 7) % 7;
  at.setTime(at.getTime() - back * DAY_MS);
  if (at.getTime() > now.getTime()) at.setTime(at.getTime() - 7 * DAY_MS);
  return at;
}

/**
 * Whether a clock-driven drill is due: the latest scheduled time has passed and no drill
 * for this host was started since. `since` bounds catch-up: a host enrolled after the
 * occurrence doesn't get a drill for it.
 */
export function isDue(
  schedule: DrillSchedule,
  lastStarted: Date | null,
  since: Date,
  now: Date,
): boolean {
  const occurrence = lastOccurrence(schedule, now);
  if (!occurrence || occurrence.getTime() < since.getTime()) return false;
  return lastStarted === null || lastStarted.getTime() < occurrence.getTime();
}
