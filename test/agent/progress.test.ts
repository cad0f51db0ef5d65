import { describe, expect, it } from "vitest";
import { createProgress, formatDuration, progressBar } from "../../agent/progress.ts";

function sink(isTTY: boolean) {
  const lines: string[] = [];
  return { lines, write: (text: string) => void lines.push(text), isTTY };
}

describe("progress", () => {
  it("prints JSON lines with rate and ETA when not on a terminal, throttled", () => {
    let t = 0;
    const out = sink(false);
    const progress = createProgress(out, { intervalMs: 1000, now: () => t });
    t = 1000;
    progress.update({ phase: "backup", bytes: 100, totalBytes: 400 });
    t = 1500;
    progress.update({ phase: "backup", bytes: 150, totalBytes: 400 }); // throttled
    t = 2000;
    progress.update({ phase: "backup", bytes: 200, totalBytes: 400 });
    progress.finish();
    const events = out.lines.map((l) => JSON.parse(l));
    expect(events).toHaveLength(3);
    expect(events[0]).toMatchObject({ type: "progress", bytes: 100, bytesPerSecond: 100 });
    expect(events[1]).toMatchObject({ bytes: 200, etaSeconds: 2 });
  });

  it("redraws one line with a bar on a terminal and clears it at the end", () => {
    let t = 0;
    const out = sink(true);
    const progress = createProgress(out, { intervalMs: 0, now: () => t });
    t = 2000;
    progress.update({ phase: "restore", bytes: 1048576, totalBytes: 4 * 1048576, item: "/" });
    progress.finish();
    expect(out.lines[0]).toMatch(
      /^\r\x1b\[2K\[######-+\]  25% restore {2}\/ {2}1\.0 MiB \/ 4\.0 MiB/,
    );
    expect(out.lines[0]).toContain("ETA 6s");
    expect(out.lines.at(-1)).toBe("\r\x1b[2K");
  });

  it("formats bars and durations", () => {
    expect(progressBar(0.5, 4)).toBe("[##--]  50%");
    expect(formatDuration(59)).toBe("59s");
    expect(formatDuration(61)).toBe("1m01s");
    expect(formatDuration(3720)).toBe("1h02m");
  });
});
