// The drill commands against a real server on loopback (the VM run replaced by a runner
// that passes or fails as told): drill run follows the drill and exits by its outcome,
// writes JUnit, drill settings validates and saves, report writes the HTML.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DrillOutcome } from "../../server/drills/engine.ts";
import { parseDuration } from "../../common/units.ts";
import { cli } from "../helpers/cli.ts";
import { emptySnapshot, startServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
let verdict: DrillOutcome;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-drill-cli-"));

beforeAll(async () => {
  server = await startServer({
    drills: {
      runner: async (run) => {
        run.phase("rescue-boot", "start");
        run.phase("rescue-boot", "done");
        return verdict;
      },
    },
  });
  await emptySnapshot((await server.host("app1")).client);
});
afterAll(async () => {
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

const admin = () => ["--server", server.url, "--token", server.adminToken];
const ok: DrillOutcome = {
  failedPhase: null,
  reason: null,
  phases: [{ name: "rescue-boot", seconds: 20, ok: true }],
  levels: { boot: true, mounts: true, files: true, probes: true },
  probes: [],
  rtoSeconds: 185,
  evidence: [],
};

describe("lifeboat drill", () => {
  it("run follows the drill, prints RTO and RPO, writes JUnit and exits 0 when it passed", async () => {
    verdict = ok;
    const junit = path.join(work, "pass.xml");
    const result = await cli("drill", "run", "app1", "--junit", junit, ...admin());
    expect(result.stderr).toMatch(/rescue-boot done/);
    expect(result.stdout).toMatch(/PASSED/);
    expect(result.stdout).toMatch(/RTO 3m05s  RPO \d+s/);
    expect(result.code).toBe(0);
    expect(readFileSync(junit, "utf8")).toMatch(/<testsuites[^>]*failures="0"/);
  });

  it("run exits 1 with the phase and reason when the drill failed, or its RTO is over budget", async () => {
    verdict = { ...ok, failedPhase: "bootloader", reason: "grub-install failed on /dev/vda" };
    const failed = await cli("drill", "run", "app1", ...admin());
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/failed in bootloader: grub-install failed on \/dev\/vda/);
    verdict = ok;
    const over = await cli("drill", "run", "app1", "--max-rto", "2m", "--json", ...admin());
    expect(over.code).toBe(1);
    expect(JSON.parse(over.stdout).reason).toMatch(/RTO of 185 s exceeded the budget of 120 s/);
    const bad = await cli("drill", "run", "app1", "--max-rto", "soon", ...admin());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a duration/);
  });

  it("list, show, settings and report", async () => {
    const list = await cli("drill", "list", "--json", ...admin());
    const drills = JSON.parse(list.stdout) as { id: string }[];
    expect(drills.length).toBeGreaterThanOrEqual(3);
    const show = await cli("drill", "show", drills[0]!.id, ...admin());
    expect(show.stdout).toContain(drills[0]!.id);
    const set = await cli(
      "drill",
      "settings",
      "app1",
      "--schedule",
      "nightly 02:30",
      "--probe",
      "web=curl -fsS localhost:8080/health",
      "--rto-target",
      "15m",
      "--rpo-target",
      "1d",
      ...admin(),
    );
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/schedule nightly 02:30/);
    expect(set.stdout).toMatch(/probe web \(60 s\): curl -fsS localhost:8080\/health/);
    const wrong = await cli("drill", "settings", "app1", "--schedule", "hourly", ...admin());
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/weekly DAY HH:MM/);
    const out = path.join(work, "report.html");
    const report = await cli("report", "--host", "app1", "--out", out, ...admin());
    expect(report.code).toBe(0);
    const html = readFileSync(out, "utf8");
    expect(html).toContain("app1");
    expect(html).toContain("grub-install failed on /dev/vda");
  });
});

describe("parseDuration", () => {
  it("reads seconds, units and combinations, and refuses the rest", () => {
    expect(parseDuration("90")).toBe(90);
    expect(parseDuration("90s")).toBe(90);
    expect(parseDuration("15m")).toBe(900);
    expect(parseDuration("1h30m")).toBe(5400);
    expect(parseDuration("2d")).toBe(172_800);
    expect(parseDuration("1w")).toBe(604_800);
    expect(parseDuration("")).toBeNull();
    expect(parseDuration("soon")).toBeNull();
    expect(parseDuration("15 m")).toBeNull();
    expect(parseDuration("0m")).toBeNull();
  });
});
