// A drill's verdict from what the restored machine reported (levels L1-L4).
import { describe, expect, it } from "vitest";
import type { DrillCheckReport } from "../../rescue/recover/drill-check.ts";
import { DrillSpecSchema } from "../../rescue/recover/drill-check.ts";
import { expectedMounts, judgeDrill } from "../../server/drills/verify.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const layout = loadLayout("vm/a-bios-gpt-ext4.json");
const spec = DrillSpecSchema.parse({
  probes: [{ name: "ssh", command: "systemctl is-active ssh" }],
  sampleFiles: ["/etc/hostname", "/usr/bin/ls"],
});
const hashes = new Map([
  ["/etc/hostname", "a".repeat(64)],
  ["/usr/bin/ls", "b".repeat(64)],
]);
const report = (extra: Partial<DrillCheckReport> = {}): DrillCheckReport => ({
  hostname: "fixture-a",
  systemState: "running",
  failedUnits: [],
  mounts: {
    filesystems: [
      {
        target: "/",
        source: "/dev/vda2",
        fstype: "ext4",
        children: [
          { target: "/boot", source: "/dev/vda1", fstype: "ext4" },
          { target: "/proc", source: "proc", fstype: "proc" },
        ],
      },
    ],
  },
  fstab: {
    filesystems: [
      { target: "/", source: "UUID=x", fstype: "ext4" },
      { target: "/boot", source: "UUID=y", fstype: "ext4" },
      { target: "none", source: "UUID=z", fstype: "swap" },
    ],
  },
  files: [
    { path: "/etc/hostname", sha256: "a".repeat(64) },
    { path: "/usr/bin/ls", sha256: "b".repeat(64) },
  ],
  probes: [{ name: "ssh", exitCode: 0, seconds: 1, output: "active" }],
  ...extra,
});

describe("drill verdict", () => {
  it("passes every level when the machine is what the snapshot says", () => {
    expect(expectedMounts(layout)).toEqual([
      { target: "/", fsType: "ext4" },
      { target: "/boot", fsType: "ext4" },
    ]);
    const verdict = judgeDrill(layout, report(), spec, hashes);
    expect(verdict.problems).toEqual([]);
    expect(verdict.levels).toEqual({ boot: true, mounts: true, files: true, probes: true });
    expect(verdict.probes[0]).toMatchObject({
      name: "ssh",
      command: "systemctl is-active ssh",
      exitCode: 0,
    });
  });

  it("names each failed level and why", () => {
    const verdict = judgeDrill(
      layout,
      report({
        hostname: "debian",
        mounts: { filesystems: [{ target: "/", source: "/dev/vda2", fstype: "ext4" }] },
        files: [
          { path: "/etc/hostname", sha256: "c".repeat(64) },
          { path: "/usr/bin/ls", sha256: null },
        ],
        probes: [{ name: "ssh", exitCode: null, seconds: 60, output: "" }],
        failedUnits: ["ssh.service"],
      }),
      spec,
      hashes,
    );
    expect(verdict.levels).toEqual({ boot: false, mounts: false, files: false, probes: false });
    expect(verdict.problems).toEqual([
      "L1: the restored machine calls itself debian, the snapshot is of fixture-a",
      "L2: /boot (ext4) is not mounted; fstab's /boot is not mounted",
      "L3: /etc/hostname differs from the snapshot; /usr/bin/ls is missing",
      "L4: probe ssh (systemctl is-active ssh) timed out",
    ]);
    expect(verdict.failedUnits).toEqual(["ssh.service"]);
  });

  it("counts a probe that never reported as failed", () => {
    const verdict = judgeDrill(layout, report({ probes: [] }), spec, hashes);
    expect(verdict.levels.probes).toBe(false);
    expect(verdict.problems).toEqual(["L4: probe ssh (systemctl is-active ssh) timed out"]);
  });
});
