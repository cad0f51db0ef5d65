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

  it("refuses a policy that would forget everything", () => {
    expect(() => applyRetention(series, {})).toThrow(/at least one --keep/);
    expect(() => applyRetention(series, { keepLast: 0 })).toThrow(/at least one --keep/);
  });
});
