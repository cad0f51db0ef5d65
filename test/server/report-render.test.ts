// The evidence report as an auditor sees it: rendered by headless Chromium from the file
// alone (no network), with the host, the last drill, RTO and RPO visible on the page. The
// screenshot is kept under .work/test-artifacts/ for a human to look at.
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import type { Drill } from "../../common/drills.ts";
import { renderReportHtml } from "../../server/drills/report.ts";

const ARTIFACTS = path.resolve(import.meta.dirname, "..", "..", ".work", "test-artifacts");
const CHROMIUM = "/usr/bin/chromium";

const drill = (id: string, day: number, extra: Partial<Drill> = {}): Drill => ({
  id,
  host: "db1",
  snapshot: `0193a5c3e0f2b8d4a1c7e9f0${String(day).padStart(4, "0")}`,
  trigger: "snapshot",
  state: "passed",
  createdAt: `2026-11-${String(day).padStart(2, "0")}T01:00:00.000Z`,
  startedAt: `2026-11-${String(day).padStart(2, "0")}T01:00:05.000Z`,
  finishedAt: `2026-11-${String(day).padStart(2, "0")}T01:09:00.000Z`,
  failedPhase: null,
  reason: null,
  phases: [],
  levels: { boot: true, mounts: true, files: true, probes: true },
  probes: [],
  rtoSeconds: 400 + day * 5,
  rpoSeconds: 1200,
  maxRtoSeconds: null,
  evidence: [],
  migrate: null,
  failedUnits: [],
  rescueImage: null,
  ...extra,
});

describe("the evidence report in a browser", () => {
  it("shows the host, the last drill, RTO and RPO, with nothing loaded from outside", async () => {
    expect(existsSync(CHROMIUM), "Debian's chromium is missing; run make setup").toBe(true);
    const html = renderReportHtml({
      generatedAt: new Date("2026-11-22T12:00:00Z"),
      since: null,
      hosts: [
        {
          name: "db1",
          targets: { rtoSeconds: 900, rpoSeconds: 3600 },
          drills: [
            drill("d1", 18),
            drill("d2", 19),
            drill("d3", 20, {
              state: "failed",
              failedPhase: "first-boot",
              reason: "no boot marker in 600 s",
              rtoSeconds: null,
            }),
            drill("d4", 21),
          ],
        },
      ],
    });
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, "report.html");
    writeFileSync(file, html);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
      const requests: string[] = [];
      page.on("request", (request) => {
        if (!request.url().startsWith("file:")) requests.push(request.url());
      });
      await page.goto(`file://${file}`);
      const host = page.locator("#host-db1");
      await expect.poll(() => host.locator("h2").innerText()).toBe("db1");
      expect(await host.locator("td.rto").innerText()).toBe("8m25s");
      expect(await host.locator("td.rpo").innerText()).toBe("20m00s");
      expect(await host.locator(".last").innerText()).toBe("2026-11-21T01:00:05.000Z");
      expect(await host.locator("ul.failures").innerText()).toContain("no boot marker in 600 s");
      expect(await host.locator("svg circle").count()).toBe(3);
      for (const locator of [host.locator("td.rto"), host.locator("td.rpo"), host.locator("svg")]) {
        expect(await locator.isVisible()).toBe(true);
      }
      expect(requests).toEqual([]);
      const shot = path.join(ARTIFACTS, "report.png");
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).toBeGreaterThan(10_000);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
