// The VM harness's comparison of the source and the restored system (pure parts).
import { describe, expect, it } from "vitest";
import { compareOutputs, comparisonProbes, HARNESS_SCENARIOS } from "../../vm-tests/run.ts";

describe("VM harness comparisons", () => {
  it("compares disks, mounts and (UEFI) boot entries, without names and sizes after a migration", () => {
    const bios = comparisonProbes("bios", false);
    expect(bios.map((p) => p.name)).toEqual(["lsblk", "findmnt"]);
    expect(bios[0]!.command).toContain("NAME,TYPE,FSTYPE,SIZE,UUID,PARTUUID,LABEL");
    const moved = comparisonProbes("uefi", true);
    expect(moved.map((p) => p.name)).toEqual(["lsblk", "findmnt", "efibootmgr"]);
    expect(moved[0]!.command).not.toContain("SIZE");
    expect(moved[1]!.command).not.toContain("SOURCE");
  });

  it("reports what differs, and what the restored system never reported", () => {
    expect(
      compareOutputs({ lsblk: "vda disk\n" }, [{ name: "lsblk", output: "vda disk" }]),
    ).toEqual([]);
    const problems = compareOutputs({ lsblk: "vda disk", findmnt: "/ ext4" }, [
      { name: "lsblk", output: "vdb disk" },
    ]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain("lsblk differs");
    expect(problems[1]).toBe("findmnt: the restored system did not report it");
  });

  it("has the issue's scenarios, each on a fixture the provisioner knows", () => {
    expect(HARNESS_SCENARIOS.map((s) => s.id)).toEqual([
      "1",
      "2",
      "3",
      "3c",
      "4",
      "5a",
      "5b",
      "1x",
      "6",
      "7",
    ]);
    // The drill that must fail breaks the snapshot's bootloader, and expects that phase.
    expect(HARNESS_SCENARIOS.find((s) => s.id === "1x")!.mustFail?.phase).toBe("bootloader");
    expect(HARNESS_SCENARIOS.find((s) => s.id === "5b")!.migrate).toEqual({
      bus: "nvme",
      scale: 0.8,
    });
  });
});
