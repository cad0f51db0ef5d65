import { describe, expect, it } from "vitest";
import { applyRetention } from "../../server/retention.ts";

const at = (iso: string, id = iso) => ({ id, time: new Date(iso) });
// Two snapshots a day for ten days in March 2026, at 06:00 and 18:00 UTC.
const series = Array.from({ length: 10 }, (_, d) => [
  at(`2026-03-${String(d + 1).padStart(2, "0")}T06:00:00Z`),
  at(`2026-03-${String(d + 1).padStart(2, "0")}T18:00:00Z`),
]).flat();

describe("retention policy", () => {
  it("keep-last keeps the N newest", () => {
    const { keep, forget } = applyRetention(series, { keepLast: 3 });
    expect(keep).toEqual(["2026-03-10T18:00:00Z", "2026-03-10T06:00:00Z", "2026-03-09T18:00:00Z"]);
    expect(forget).toHaveLength(17);
  });

  it("keep-daily keeps the newest of each of the N newest days", () => {
    expect(applyRetention(series, { keepDaily: 3 }).keep).toEqual([
      "2026-03-10T18:00:00Z",
      "2026-03-09T18:00:00Z",
      "2026-03-08T18:00:00Z",
    ]);
  });

  it("combines rules: a snapshot any rule keeps is kept", () => {
    const { keep } = applyRetention(series, { keepLast: 2, keepDaily: 2, keepWeekly: 2 });
    // 2026-03-10 is a Tuesday: weeks are Mar 9-15 and Mar 2-8.
    expect(keep).toEqual([
      "2026-03-10T18:00:00Z",
      "2026-03-10T06:00:00Z",
      "2026-03-09T18:00:00Z",
      "2026-03-08T18:00:00Z",
    ]);
  });

  it("keep-monthly and keep-hourly bucket by month and hour", () => {
    const months = [
      at("2026-01-05T00:00:00Z"),
      at("2026-01-20T00:00:00Z"),
      at("2026-02-03T00:00:00Z"),
    ];
    expect(applyRetention(months, { keepMonthly: 5 }).keep).toEqual([
      "2026-02-03T00:00:00Z",
      "2026-01-20T00:00:00Z",
    ]);
    const hours = [
      at("2026-01-01T10:05:00Z"),
      at("2026-01-01T10:55:00Z"),
      at("2026-01-01T11:00:00Z"),
    ];
    expect(applyRetention(hours, { keepHourly: 1 }).keep).toEqual(["2026-01-01T11:00:00Z"]);
  });

  it("keep-weekly uses ISO weeks, across a year boundary", () => {
    // 2025-12-29 (Mon) .. 2026-01-04 (Sun) is ISO week 2026-W01; 2025-12-28 is 2025-W52.
    const list = [
      at("2025-12-28T12:00:00Z"),
      at("2025-12-29T12:00:00Z"),
      at("2026-01-02T12:00:00Z"),
      at("2026-01-04T23:00:00Z"),
      at("2026-01-05T01:00:00Z"),
    ];
    expect(applyRetention(list, { keepWeekly: 3 }).keep).toEqual([
      "2026-01-05T01:00:00Z",
      "2026-01-04T23:00:00Z",
      "2025-12-28T12:00:00Z",
    ]);
  });

  it("counts buckets that have a snapshot, not calendar periods", () => {
    // Gaps of months: keep-monthly 2 reaches back to the two newest months with backups.
    const list = [
      at("2025-06-10T00:00:00Z"),
      at("2025-09-01T00:00:00Z"),
      at("2026-02-01T00:00:00Z"),
    ];
    expect(applyRetention(list, { keepMonthly: 2 }).keep).toEqual([
      "2026-02-01T00:00:00Z",
      "2025-09-01T00:00:00Z",
    ]);
  });

  it("keeps everything when there are fewer snapshots than the rules ask for", () => {
    expect(applyRetention(series.slice(0, 3), { keepLast: 10 }).forget).toEqual([]);
    expect(applyRetention([], { keepDaily: 7 })).toEqual({ keep: [], forget: [] });
  });

  it("does not depend on the input order, and breaks equal times by id", () => {
    const shuffled = [...series].reverse();
    expect(applyRetention(shuffled, { keepLast: 2, keepMonthly: 1 })).toEqual(
      applyRetention(series, { keepLast: 2, keepMonthly: 1 }),
    );
    const tie = [at("2026-01-01T00:00:00Z", "a"), at("2026-01-01T00:00:00Z", "b")];
    expect(applyRetention(tie, { keepLast: 1 })).toEqual({ keep: ["b"], forget: ["a"] });
  });

  it("combines hourly with monthly, and every id is either kept or forgotten", () => {
    const { keep, forget } = applyRetention(series, { keepHourly: 1, keepMonthly: 2 });
    // The newest snapshot is both the newest hour and the newest month.
    expect(keep).toEqual(["2026-03-10T18:00:00Z"]);
    expect([...keep, ...forget].sort()).toEqual(series.map((s) => s.id).sort());
  });

  it("refuses a policy that would forget everything", () => {
    expect(() => applyRetention(series, {})).toThrow(/at least one --keep/);
    expect(() => applyRetention(series, { keepLast: 0 })).toThrow(/at least one --keep/);
  });
});
