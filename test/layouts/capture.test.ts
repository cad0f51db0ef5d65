// The whole capture logic, replayed against tool output recorded on real machines.
import { describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { captureLayout } from "../../layouts/capture/capture.ts";
import { replaySource } from "../../layouts/capture/source.ts";
import { LayoutSchema, type Layout, type RawCapture } from "../../layouts/schema.ts";
import { loadLayout, vmFixtures } from "../helpers/fixtures.ts";

const replay = (layout: Layout, raw: RawCapture = layout.raw) =>
  captureLayout(replaySource(raw), {
    disks: layout.scope.wholeMachine ? [] : layout.scope.disks,
    now: new Date("2026-01-01T00:00:00Z"),
    capturedBy: "test",
  });

const fixtures = ["host/gpt-mixed", "host/mbr-logical", ...vmFixtures().map((n) => `vm/${n}`)];

describe("capture replayed from recorded tool output", () => {
  it.each(fixtures)("%s: gives a document that validates against the schema", async (name) => {
    const layout = loadLayout(`${name}.json`);
    const again = await replay(layout);
    expect(LayoutSchema.safeParse(again).success).toBe(true);
    // The replay records exactly the answers it was given.
    expect(again.raw.commands.length).toBe(layout.raw.commands.length);
  });

  it("host GPT image: disks, partitions, filesystems and mounts", async () => {
    const layout = await replay(loadLayout("host/gpt-mixed.json"));
    expect(layout.scope).toEqual({ wholeMachine: false, disks: ["/dev/loop0"] });
    expect(layout.disks).toHaveLength(1);
    expect(layout.disks[0]!.partitionTable!.partitions).toHaveLength(5);
    expect(layout.filesystems.map((f) => `${f.device}:${f.type}:${f.label}`)).toEqual([
      "/dev/loop0p2:ext4:root",
      "/dev/loop0p3:xfs:data",
      "/dev/loop0p4:btrfs:pool",
      "/dev/loop0p5:swap:swap",
    ]);
    const root = layout.filesystems[0]!;
    expect(root.usage!.usedBytes).toBeGreaterThan(50 * 1048576);
    const btrfs = layout.filesystems[2]!;
    expect(btrfs.type === "btrfs" && btrfs.subvolumes.map((s) => s.path)).toEqual(["@", "@home"]);
    expect(layout.mounts.entries.map((m) => m.source).sort()).toEqual([
      "/dev/loop0p2",
      "/dev/loop0p3",
      "/dev/loop0p4",
    ]);
    // A --disk capture records no foreign mounts, excluded or not.
    expect(layout.mounts.excluded).toEqual([]);
    expect(layout.boot.firmware).toBe("bios");
  });

  it("a missing tool for a feature in use is an environment error naming the package", async () => {
    const layout = loadLayout("host/gpt-mixed.json");
    const raw: RawCapture = {
      ...layout.raw,
      missingTools: ["dumpe2fs"],
      commands: layout.raw.commands.map((c) =>
        c.argv[0] === "dumpe2fs" ? { ...c, exitCode: 127, stdout: "" } : c,
      ),
    };
    const error = await replay(layout, raw).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LifeboatError);
    expect((error as LifeboatError).code).toBe("LB_TOOL_MISSING");
    expect((error as LifeboatError).message).toContain(
      "dumpe2fs is not installed, and /dev/loop0p2 is ext4",
    );
    expect((error as LifeboatError).hint).toBe("Install it: apt-get install e2fsprogs");
  });

  it("a --disk that is a partition is refused with the disk it belongs to", async () => {
    const layout = loadLayout("host/gpt-mixed.json");
    const error = await captureLayout(replaySource(layout.raw), {
      disks: ["/dev/loop0p2"],
      now: new Date(),
      capturedBy: "t",
    }).catch((e: unknown) => e);
    expect((error as LifeboatError).code).toBe("LB_DISK_NOT_WHOLE");
    expect((error as LifeboatError).message).toContain("its disk is /dev/loop0");
  });
});
