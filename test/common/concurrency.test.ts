import { describe, expect, it } from "vitest";
import { ByteBudget, forEachLimit, orderedMap } from "../../common/concurrency.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("orderedMap", () => {
  it("keeps input order while running up to the limit at once", async () => {
    let inFlight = 0;
    let peak = 0;
    const out: number[] = [];
    for await (const value of orderedMap([5, 1, 4, 2, 3, 0], 3, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await sleep(n * 3);
      inFlight--;
      return n * 10;
    }))
      out.push(value);
    expect(out).toEqual([50, 10, 40, 20, 30, 0]);
    expect(peak).toBe(3);
  });

  it("rejects at the failing position and stops asking for more", async () => {
    const seen: number[] = [];
    const run = async () => {
      for await (const value of orderedMap([1, 2, 3, 4, 5, 6, 7, 8], 2, async (n) => {
        if (n === 3) throw new Error("boom at 3");
        return n;
      }))
        seen.push(value);
    };
    await expect(run()).rejects.toThrow("boom at 3");
    expect(seen).toEqual([1, 2]);
  });
});

describe("forEachLimit", () => {
  it("visits every item with bounded parallelism and reports the first failure", async () => {
    let inFlight = 0;
    let peak = 0;
    const done: number[] = [];
    await forEachLimit([1, 2, 3, 4, 5, 6, 7], 2, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await sleep(2);
      done.push(n);
      inFlight--;
    });
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(peak).toBe(2);
    await expect(
      forEachLimit([1, 2, 3], 2, async (n) => {
        if (n === 2) throw new Error("no 2");
      }),
    ).rejects.toThrow("no 2");
  });
});

describe("ByteBudget", () => {
  it("makes a producer wait until the consumer releases bytes", async () => {
    const budget = new ByteBudget(100);
    await budget.acquire(60);
    let second = false;
    const waiting = budget.acquire(60).then(() => (second = true));
    await sleep(5);
    expect(second).toBe(false);
    budget.release(60);
    await waiting;
    expect(second).toBe(true);
    expect(budget.used).toBe(60);
  });

  it("lets one oversized request through alone instead of waiting forever", async () => {
    const budget = new ByteBudget(10);
    await budget.acquire(50);
    expect(budget.used).toBe(50);
  });
});
