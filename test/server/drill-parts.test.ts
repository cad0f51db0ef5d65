// The drill orchestrator's pure parts: schedules, the VM shape from a layout, JUnit XML and
// the evidence report.
import { describe, expect, it } from "vitest";
import type { Drill } from "../../common/drills.ts";
import { renderJunit, xmlEscape } from "../../server/drills/junit.ts";
import { renderReportHtml, reportJson, rtoChart } from "../../server/drills/report.ts";
import {
  formatSchedule,
  isDue,
  lastOccurrence,
  parseSchedule,
} from "../../server/drills/schedule.ts";
import { shapeVm } from "../../server/drills/shape.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const at = (iso: string) => new Date(iso);

describe("drill schedules", () => {
  it("parses and prints every form, and names the accepted ones on a mistake", () => {
    for (const text of ["off", "after-snapshot", "nightly 02:30", "weekly sun 03:00"]) {
      expect(formatSchedule(parseSchedule(text))).toBe(text);
    }
    expect(parseSchedule("Weekly Monday 7:05")).toEqual({
      kind: "weekly",
      day: 1,
      hour: 7,
      minute: 5,
    });
    expect(() => parseSchedule("nightly 25:00")).toThrow(/off, after-snapshot, nightly HH:MM/);
    expect(() => parseSchedule("hourly")).toThrow(/not one of/);
    expect(() => parseSchedule("weekly someday 01:00")).toThrow(/not one of/);
  });

  it("finds the latest scheduled time at or before now", () => {
    const nightly = parseSchedule("nightly 02:30");
    expect(lastOccurrence(nightly, at("2026-11-22T03:00:00Z"))).toEqual(at("2026-11-22T02:30:00Z"));
    expect(lastOccurrence(nightly, at("2026-11-22T02:00:00Z"))).toEqual(at("2026-11-21T02:30:00Z"));
    // 2026-11-22 is a Sunday.
    const weekly = parseSchedule("weekly sun 03:00");
    expect(lastOccurrence(weekly, at("2026-11-22T04:00:00Z"))).toEqual(at("2026-11-22T03:00:00Z"));
    expect(lastOccurrence(weekly, at("2026-11-22T02:00:00Z"))).toEqual(at("2026-11-15T03:00:00Z"));
    expect(lastOccurrence(parseSchedule("after-snapshot"), at("2026-11-22T02:00:00Z"))).toBeNull();
  });

  it("is due once per occurrence, catches up one missed run, and not before enrolment", () => {
    const nightly = parseSchedule("nightly 02:30");
    const enrolled = at("2026-11-01T00:00:00Z");
    const now = at("2026-11-22T09:00:00Z");
    expect(isDue(nightly, null, enrolled, now)).toBe(true);
    expect(isDue(nightly, at("2026-11-22T02:31:00Z"), enrolled, now)).toBe(false);
    expect(isDue(nightly, at("2026-11-20T02:31:00Z"), enrolled, now)).toBe(true);
    expect(isDue(nightly, null, at("2026-11-22T08:00:00Z"), now)).toBe(false);
    expect(isDue(parseSchedule("off"), null, enrolled, now)).toBe(false);
  });
});

describe("the drill VM's shape", () => {
  it("copies disk count, sizes (whole MiB, never smaller) and firmware from the layout", () => {
    const layout = loadLayout("vm/c-raid1-luks-lvm-xfs.json");
    const shape = shapeVm(layout, { memoryMiB: 1024 });
    expect(shape.firmware).toBe("uefi");
    expect(shape.secureBoot).toBe(false);
    expect(shape.disks.map((d) => d.stands)).toEqual(["/dev/vda", "/dev/vdb"]);
    for (const [i, disk] of shape.disks.entries()) {
      expect(disk.sizeBytes).toBeGreaterThanOrEqual(layout.disks[i]!.sizeBytes);
      expect(disk.sizeBytes % 1048576).toBe(0);
      expect(disk.bus).toBe("virtio");
    }
  });

  it("keeps NVMe as NVMe, and rehearses a migration onto bigger NVMe disks on request", () => {
    const g = loadLayout("vm/g-nvme.json");
    expect(shapeVm(g, { memoryMiB: 512 }).disks[0]!.bus).toBe("nvme");
    const a = loadLayout("vm/a-bios-gpt-ext4.json");
    const moved = shapeVm(a, { memoryMiB: 512, migrate: { bus: "nvme", scale: 1.5 } });
    expect(moved.firmware).toBe("bios");
    expect(moved.disks[0]!.bus).toBe("nvme");
    expect(moved.disks[0]!.sizeBytes).toBeGreaterThanOrEqual(a.disks[0]!.sizeBytes * 1.5);
    const b = loadLayout("vm/b-uefi-lvm.json");
    b.boot.secureBoot = "enabled";
    expect(shapeVm(b, { memoryMiB: 512 }).secureBoot).toBe(true);
    expect(() => shapeVm(a, { memoryMiB: 512, migrate: { scale: 0 } })).toThrow(/out of range/);
  });
});

const drill = (extra: Partial<Drill> = {}): Drill => ({
  id: "d1",
  host: "web1",
  snapshot: "0193a5c3e0f2b8d4a1c7e9f06b2d",
  trigger: "snapshot",
  state: "passed",
  createdAt: "2026-11-20T01:00:00.000Z",
  startedAt: "2026-11-20T01:00:05.000Z",
  finishedAt: "2026-11-20T01:10:05.000Z",
  failedPhase: null,
  reason: null,
  phases: [
    { name: "provision", seconds: 2, ok: true },
    { name: "rescue-boot", seconds: 25, ok: true },
    { name: "layout", seconds: 30, ok: true },
    { name: "data", seconds: 300, ok: true },
    { name: "bootloader", seconds: 40, ok: true },
    { name: "first-boot", seconds: 70, ok: true },
    { name: "probes", seconds: 3, ok: true },
  ],
  levels: { boot: true, mounts: true, files: true, probes: true },
  probes: [
    {
      name: "web",
      command: "curl -fsS localhost:8080/health",
      exitCode: 0,
      seconds: 1,
      output: "ok",
    },
  ],
  rtoSeconds: 470,
  rpoSeconds: 1800,
  maxRtoSeconds: 900,
  evidence: ["serial.log", "screen.png"],
  migrate: null,
  failedUnits: [],
  rescueImage: null,
  ...extra,
});

describe("JUnit XML", () => {
  it("has a case per phase, per probe and for the RTO budget, all passing", () => {
    const xml = renderJunit(drill());
    expect(xml.match(/<testcase /g)).toHaveLength(9);
    expect(xml).toContain('tests="9" failures="0"');
    expect(xml).toContain('name="RTO within 900 s"');
    expect(xml).not.toContain("<failure");
  });

  it("names the failed phase and the reason, and skips what never ran", () => {
    const xml = renderJunit(
      drill({
        state: "failed",
        failedPhase: "bootloader",
        reason: 'grub-install failed: "cannot find EFI directory" <exit 1>',
        phases: drill().phases.slice(0, 4),
        probes: [],
        rtoSeconds: null,
      }),
    );
    expect(xml).toContain(
      '<failure message="grub-install failed: &quot;cannot find EFI directory&quot; &lt;exit 1&gt;">',
    );
    expect(xml.match(/<skipped\/>/g)).toHaveLength(2);
    expect(xml).toContain("no RTO was measured");
    expect(xml).toContain('failures="2"');
  });

  it("fails the RTO case when the budget is exceeded, and escapes control characters", () => {
    expect(renderJunit(drill({ rtoSeconds: 1000 }))).toContain(
      "RTO 1000 s exceeds the budget of 900 s",
    );
    expect(xmlEscape("a\u0001b&")).toBe("ab&amp;");
  });
});

describe("evidence report", () => {
  const history = [
    drill(),
    drill({ id: "d2", startedAt: "2026-11-21T01:00:05.000Z", rtoSeconds: 520, rpoSeconds: 900 }),
    drill({
      id: "d3",
      state: "failed",
      startedAt: "2026-11-22T01:00:05.000Z",
      failedPhase: "probes",
      reason: "probe web exited 7",
      rtoSeconds: null,
      rpoSeconds: 600,
    }),
  ];
  const input = {
    generatedAt: at("2026-11-22T12:00:00Z"),
    since: null,
    hosts: [{ name: "web1", targets: { rtoSeconds: 600, rpoSeconds: 3600 }, drills: history }],
  };

  it("summarizes the last success against the targets", () => {
    const [web] = reportJson(input).hosts;
    expect(web!.lastDrill!.id).toBe("d3");
    expect(web!.lastSuccess!.id).toBe("d2");
    expect([web!.passed, web!.failed, web!.rtoMet, web!.rpoMet]).toEqual([2, 1, true, true]);
    const strict = reportJson({
      ...input,
      hosts: [{ ...input.hosts[0]!, targets: { rtoSeconds: 500, rpoSeconds: null } }],
    }).hosts[0]!;
    expect([strict.rtoMet, strict.rpoMet]).toEqual([false, null]);
    const recent = reportJson({ ...input, since: at("2026-11-21T00:00:00Z") }).hosts[0]!;
    expect(recent.drills).toBe(2);
  });

  it("renders one self-contained page with the figures, the failure and a chart", () => {
    const html = renderReportHtml(input);
    expect(html).toContain("<h2>web1</h2>");
    expect(html).toContain('<td class="rto">8m40s</td>');
    expect(html).toContain('<td class="rpo">15m00s</td>');
    expect(html).toContain("probes: probe web exited 7");
    expect(html).toContain("<svg");
    expect(html).not.toMatch(/<(script|link|img)\b|src=|href=/);
    const evil = renderReportHtml({
      ...input,
      hosts: [{ ...input.hosts[0]!, name: "<b>x</b>" }],
    });
    expect(evil).toContain("&lt;b&gt;x&lt;/b&gt;");
    expect(evil).not.toContain("<b>x</b>");
  });

  it("plots passed drills as points and failed ones as crosses, with the target line", () => {
    const svg = rtoChart(history, 600);
    expect(svg.match(/<circle /g)).toHaveLength(2);
    expect(svg.match(/<path /g)).toHaveLength(1);
    expect(svg).toContain("RTO target 10m00s");
    expect(rtoChart([], null)).toContain("No drills yet");
  });
});
