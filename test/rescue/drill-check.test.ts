// The drill check script, run for real with /bin/sh against a temp tree: its JSON report
// must parse (quotes, backslashes, tabs and newlines in outputs and names), probes report
// exit codes and timeouts, and the script removes itself.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DRILL_BOOTED_MARKER,
  DRILL_DONE_MARKER,
  DRILL_REPORT_BLOCK,
  DrillCheckReportSchema,
  DrillSpecSchema,
  drillCheckFiles,
  renderDrillUnit,
} from "../../rescue/recover/drill-check.ts";
import { extractDataBlocks } from "../../server/drills/qemu.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-drill-check-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the drill check", () => {
  it("reports files, probes and the system's state as JSON on the data port, then removes itself", () => {
    const odd = path.join(work, 'a "quoted"\\file\tname');
    writeFileSync(odd, "hello\n");
    const spec = DrillSpecSchema.parse({
      probes: [
        { name: "ok", command: `printf 'line1\\n"two"\\t\\\\ end\\n'`, timeoutSeconds: 5 },
        { name: "fails", command: "echo broken >&2; exit 7", timeoutSeconds: 5 },
        { name: "hangs", command: "sleep 30", timeoutSeconds: 1 },
      ],
      sampleFiles: [odd, path.join(work, "missing")],
    });
    const root = path.join(work, "root");
    for (const file of drillCheckFiles(spec)) {
      mkdirSync(path.dirname(path.join(root, file.path)), { recursive: true });
      writeFileSync(path.join(root, file.path), file.content, { mode: file.mode });
    }
    const script = drillCheckFiles(spec).find((f) => f.path.endsWith("check.sh"))!.path;
    const consoleFile = path.join(work, "console");
    const dataFile = path.join(work, "data");
    execFileSync("/bin/sh", [path.join(root, script)], {
      env: {
        ...process.env,
        LB_DRILL_CONSOLE: consoleFile,
        LB_DRILL_DATA: dataFile,
        LB_DRILL_ROOT: root,
      },
      timeout: 30_000,
    });
    const consoleText = readFileSync(consoleFile, "utf8");
    expect(consoleText).toMatch(new RegExp(`^${DRILL_BOOTED_MARKER} host=\\S+`, "m"));
    expect(consoleText).toContain(DRILL_DONE_MARKER);
    const block = extractDataBlocks(readFileSync(dataFile, "utf8")).blocks.get(DRILL_REPORT_BLOCK);
    expect(block).toBeDefined();
    const report = DrillCheckReportSchema.parse(JSON.parse(block!.toString("utf8")));
    expect(report.files).toEqual([
      { path: odd, sha256: "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" },
      { path: path.join(work, "missing"), sha256: null },
    ]);
    expect(report.probes.map((p) => [p.name, p.exitCode])).toEqual([
      ["ok", 0],
      ["fails", 7],
      ["hangs", null],
    ]);
    expect(report.probes[0]!.output).toBe('line1\n"two"\t\\ end');
    expect(report.probes[1]!.output).toBe("broken");
    expect(existsSync(path.join(root, script))).toBe(false);
    expect(existsSync(path.join(root, "etc/systemd/system/lifeboat-drill-check.service"))).toBe(
      false,
    );
  });

  it("starts with the services (not after the boot, which a stuck unit could hold up)", () => {
    expect(renderDrillUnit()).toMatch(/Type=simple[\s\S]*WantedBy=multi-user.target/);
    expect(renderDrillUnit()).not.toContain("After=multi-user.target");
    expect(() => DrillSpecSchema.parse({ probes: [{ name: "bad name", command: "x" }] })).toThrow();
    expect(() => DrillSpecSchema.parse({ sampleFiles: ["relative"] })).toThrow();
  });
});
