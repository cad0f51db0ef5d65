import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { stepDurations } from "../../vm-tests/lib/provision.ts";
import { SCENARIOS } from "../../vm-tests/fixtures/scenarios.ts";

describe("stepDurations", () => {
  it("times each builder step up to the next mark, ignoring other console lines", () => {
    const console = [
      "[    1.000000] Linux version 6.1.0",
      "LIFEBOAT-STEP boot 10.50",
      "builder: [11.0] unpacking",
      "LIFEBOAT-STEP provision 12.00",
      "LIFEBOAT-STEP install 72.25",
      "LIFEBOAT-STEP done 80.25",
    ].join("\r\n");
    expect(stepDurations(console)).toEqual([
      ["boot", 1500],
      ["provision", 60250],
      ["install", 8000],
    ]);
  });

  it("has nothing to report before two marks", () => {
    expect(stepDurations("LIFEBOAT-STEP boot 3.0\n")).toEqual([]);
  });
});

describe("SCENARIOS", () => {
  it("are the seven fixtures issue 2 asks for, under their fixed names", () => {
    expect(SCENARIOS.filter((s) => !s.harnessOnly).map((s) => s.name)).toEqual([
      "a-bios-gpt-ext4",
      "b-uefi-lvm",
      "c-raid1-luks-lvm-xfs",
      "d-btrfs-subvols",
      "e-mbr-logical",
      "f-lvm-thin",
      "g-nvme",
    ]);
  });

  it("give every disk a unique serial, which is how the builder finds it", () => {
    const serials = SCENARIOS.flatMap((s) => [...s.disks, ...(s.scratchDisks ?? [])]).map(
      (d) => d.serial,
    );
    expect(new Set(serials).size).toBe(serials.length);
  });

  it.each(SCENARIOS.map((s) => [s.name, s] as const))(
    "%s only names disks it attaches and mounts a root filesystem",
    (_name, scenario) => {
      const script = `${scenario.provision}\n${scenario.configure ?? ""}`;
      for (const [, index] of script.matchAll(/\$DISK(\d+)/g)) {
        expect(Number(index)).toBeLessThan(scenario.disks.length);
      }
      for (const [, index] of script.matchAll(/\$SCRATCH(\d+)/g)) {
        expect(Number(index)).toBeLessThan(scenario.scratchDisks?.length ?? 0);
      }
      expect(script).toMatch(/^mount_target .+ \/ \w+ /m);
      // BIOS systems need to know where GRUB goes; UEFI ones need an ESP on /boot/efi.
      if (scenario.firmware === "bios") expect(script).toContain('GRUB_DISKS="$DISK0"');
      else expect(script).toMatch(/^mount_target .+ \/boot\/efi vfat /m);
    },
  );

  it("have a recorded layout unless they are for the end-to-end harness only", () => {
    for (const scenario of SCENARIOS) {
      const recorded = existsSync(
        path.join(import.meta.dirname, "..", "fixtures", "vm", `${scenario.name}.json`),
      );
      expect(recorded, scenario.name).toBe(scenario.harnessOnly !== true);
    }
  });

  it("put the issue's scenario 3 ESP on md RAID1 with metadata 1.0, one NVRAM entry per member", () => {
    const h = SCENARIOS.find((s) => s.name === "h-raid1-esp-luks-lvm-xfs")!;
    expect(h.provision).toMatch(
      /--metadata=1\.0 .*\n.*--name=esp .*"\$\(part "\$DISK0" 1\)" "\$\(part "\$DISK1" 1\)"/,
    );
    expect(h.provision).toMatch(/^mkfs\.vfat .* \/dev\/md2$/m);
    expect(h.provision).toMatch(/^mount_target \/dev\/md2 \/boot\/efi vfat /m);
    expect(h.provision).toContain('EFI_BOOT_ENTRIES="$DISK0:1 $DISK1:1"');
  });

  it("puts the NVMe scenario on an NVMe disk", () => {
    expect(SCENARIOS.find((s) => s.name === "g-nvme")?.disks.map((d) => d.bus)).toEqual(["nvme"]);
  });
});
