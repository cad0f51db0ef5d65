// The recovery engine's pure parts: the kernel command line, snapshot choice, identifier
// rewriting, the bootloader plan for the recorded VM layouts, and the step markers.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { SnapshotInfo } from "../../common/api.ts";
import { LifeboatError } from "../../common/errors.ts";
import { planRestore } from "../../layouts/plan/plan.ts";
import {
  bootloaderId,
  bootOrder,
  efibootmgrCreate,
  efibootmgrDeletes,
  planBootloader,
} from "../../rescue/recover/bootloader.ts";
import { parseCmdline, splitCmdline } from "../../rescue/recover/cmdline.ts";
import {
  deviceChanges,
  driversChanged,
  rewriteIdentifiers,
} from "../../rescue/recover/identifiers.ts";
import { parseStepMarkers, RecoveryLog, stepMarker } from "../../rescue/recover/log.ts";
import { chooseSnapshot, recoversBootPath, waitForModules } from "../../rescue/recover/recover.ts";
import { MODULES_PENDING } from "../../rescue/contract.ts";
import { loadLayout } from "../helpers/fixtures.ts";
import { blankDisk, options, sameDisks } from "../helpers/targets.ts";

describe("kernel command line", () => {
  it("splits words like the kernel, with double quotes grouping", () => {
    expect(splitCmdline('BOOT_IMAGE=/vmlinuz quiet lifeboat.server="http://a b" x=""\n')).toEqual([
      "BOOT_IMAGE=/vmlinuz",
      "quiet",
      "lifeboat.server=http://a b",
      "x=",
    ]);
  });

  it("reads every lifeboat.* setting and ignores the rest", () => {
    const parsed = parseCmdline(
      "console=ttyS0 lifeboat.mode=auto lifeboat.server=http://10.0.2.100:80 lifeboat.snapshot=0193abc " +
        "lifeboat.keyfile=cr_root=/etc/lifeboat/luks/cr_root lifeboat.keyurl=cr_home=http://10.0.2.100/k " +
        "lifeboat.map=/dev/vda=/dev/nvme0n1 lifeboat.after=poweroff lifeboat.ip=dhcp",
    );
    expect(parsed).toEqual({
      mode: "auto",
      server: "http://10.0.2.100:80",
      snapshot: "0193abc",
      from: null,
      keyFiles: { cr_root: "/etc/lifeboat/luks/cr_root" },
      keyUrls: { cr_home: "http://10.0.2.100/k" },
      maps: { "/dev/vda": "/dev/nvme0n1" },
      after: "poweroff",
      drill: false,
    });
    expect(parseCmdline("lifeboat.auto=1").mode).toBe("auto");
    expect(parseCmdline("lifeboat.auto=0").mode).toBeNull();
    expect(parseCmdline("ro quiet").mode).toBeNull();
  });

  it("names a malformed setting and how to fix it", () => {
    expect(() => parseCmdline("lifeboat.mode=fast")).toThrow(/lifeboat.mode=fast: expected auto/);
    expect(() => parseCmdline("lifeboat.keyfile=/only/a/path")).toThrow(LifeboatError);
    expect(() => parseCmdline("lifeboat.map=/dev/vda=")).toThrow(/expected NAME=VALUE/);
  });
});

describe("snapshot choice", () => {
  const snap = (id: string, createdAt: string, committed = true): SnapshotInfo => ({
    id,
    host: "web1",
    createdAt,
    committedAt: committed ? createdAt : null,
    keyId: null,
    parent: null,
    manifestId: committed ? "m".repeat(64) : null,
    stats: null,
    summary: null,
  });
  const list = [
    snap("a1", "2026-11-20T01:00:00Z"),
    snap("a3", "2026-11-22T01:00:00Z", false),
    snap("a2", "2026-11-21T01:00:00Z"),
  ];

  it("takes the newest committed snapshot, never an uncommitted one", () => {
    expect(chooseSnapshot(list, null).id).toBe("a2");
  });
  it("takes the one asked for, and refuses unknown or uncommitted ids", () => {
    expect(chooseSnapshot(list, "a1").id).toBe("a1");
    expect(() => chooseSnapshot(list, "zz")).toThrow(/not on the server/);
    expect(() => chooseSnapshot(list, "a3")).toThrow(/never committed/);
    expect(() => chooseSnapshot([], null)).toThrow(/no committed snapshot/);
  });
  it("never guesses among several hosts' snapshots, but takes a named one", () => {
    const mixed = [...list, { ...snap("b1", "2026-11-23T01:00:00Z"), host: "db1" }];
    expect(() => chooseSnapshot(mixed, null)).toThrow(
      expect.objectContaining({
        code: "LB_RECOVER_WHICH_HOST",
        message: expect.stringMatching(/belong to 2 hosts \(db1, web1\)/),
      }),
    );
    expect(chooseSnapshot(mixed, "a1").id).toBe("a1");
    // An uncommitted snapshot of another host is no reason to refuse.
    const pendingOther = [...list, { ...snap("b2", "2026-11-23T01:00:00Z", false), host: "db1" }];
    expect(chooseSnapshot(pendingOther, null).id).toBe("a2");
  });
});

describe("identifier rewriting", () => {
  const fstab = [
    "UUID=0f0a8e67-9134-4bb3-b9f1-8838141da15c / ext4 errors=remount-ro 0 1",
    "/dev/vda2 /boot ext4 defaults 0 2",
    "/dev/vda1 /boot/efi vfat umask=0077 0 1",
    "/dev/vda10 /srv ext4 defaults 0 2",
    "PARTUUID=2fc130ba-060e-8f47-abcb-6433c8ae366c none swap sw 0 0",
    "",
  ].join("\n");

  it("renames devices without touching longer names that start the same", () => {
    const result = rewriteIdentifiers(
      fstab,
      deviceChanges({
        "/dev/vda": "/dev/nvme0n1",
        "/dev/vda1": "/dev/nvme0n1p1",
        "/dev/vda2": "/dev/nvme0n1p2",
        "/dev/mapper/vg0-root": "/dev/mapper/vg0-root",
      }),
    );
    expect(result.replaced).toBe(2);
    expect(result.text).toContain("/dev/nvme0n1p2 /boot ext4");
    expect(result.text).toContain("/dev/nvme0n1p1 /boot/efi vfat");
    expect(result.text).toContain("/dev/vda10 /srv");
  });

  it("replaces UUIDs whole and in any case, and never chains two changes", () => {
    const result = rewriteIdentifiers(fstab, [
      {
        kind: "uuid",
        from: "0F0A8E67-9134-4BB3-B9F1-8838141DA15C",
        to: "11111111-2222-3333-4444-555555555555",
      },
      {
        kind: "uuid",
        from: "11111111-2222-3333-4444-555555555555",
        to: "ffffffff-2222-3333-4444-555555555555",
      },
      {
        kind: "partuuid",
        from: "2fc130ba-060e-8f47-abcb-6433c8ae366c",
        to: "aaaaaaaa-060e-8f47-abcb-6433c8ae366c",
      },
    ]);
    expect(result.replaced).toBe(2);
    expect(result.text).toContain("UUID=11111111-2222-3333-4444-555555555555 / ext4");
    expect(result.text).toContain("PARTUUID=aaaaaaaa-060e-8f47-abcb-6433c8ae366c none swap");
  });

  it("leaves a UUID that is only part of a longer token alone", () => {
    const text = "x-0f0a8e67-9134-4bb3-b9f1-8838141da15c 0f0a8e67-9134-4bb3-b9f1-8838141da15c0\n";
    const result = rewriteIdentifiers(text, [
      { kind: "uuid", from: "0f0a8e67-9134-4bb3-b9f1-8838141da15c", to: "new" },
    ]);
    expect(result).toEqual({ text, replaced: 0 });
  });

  it("knows when the disks need other storage drivers", () => {
    expect(driversChanged([{ from: "/dev/vda", to: "/dev/vdb" }])).toBe(false);
    expect(driversChanged([{ from: "/dev/vda", to: "/dev/nvme0n1" }])).toBe(true);
    expect(driversChanged([{ from: "/dev/sda", to: "/dev/sdb" }])).toBe(false);
  });
});

describe("bootloader plan", () => {
  it("installs GRUB for BIOS on the disk that had it, wherever it landed", () => {
    const layout = loadLayout("vm/a-bios-gpt-ext4.json");
    const plan = planRestore(
      layout,
      [blankDisk("/dev/sdb", layout.disks[0]!.sizeBytes)],
      options(),
    );
    const boot = planBootloader(layout, plan);
    expect(boot.firmware).toBe("bios");
    expect(boot.commands.map((c) => c.argv)).toEqual([
      ["grub-install", "--target=i386-pc", "/dev/sdb"],
    ]);
    expect(boot.commands.every((c) => c.chroot)).toBe(true);
  });

  it("installs GRUB for UEFI under its captured name and on the fallback path, and rebuilds the entry", () => {
    const layout = loadLayout("vm/b-uefi-lvm.json");
    const plan = planRestore(layout, sameDisks(layout), options());
    const boot = planBootloader(layout, plan);
    expect(boot.commands.map((c) => c.argv)).toEqual([
      [
        "grub-install",
        "--target=x86_64-efi",
        "--efi-directory=/boot/efi",
        "--no-nvram",
        "--bootloader-id=debian",
        "--no-uefi-secure-boot",
      ],
      [
        "grub-install",
        "--target=x86_64-efi",
        "--efi-directory=/boot/efi",
        "--no-nvram",
        "--removable",
        "--no-uefi-secure-boot",
      ],
    ]);
    // Only the entry that points at the recovered ESP; the firmware's own entries stay its own.
    expect(boot.efiEntries).toEqual([
      { label: "debian", loader: "\\EFI\\debian\\grubx64.efi", disk: "/dev/vda", partition: 1 },
    ]);
    expect(efibootmgrCreate(boot.efiEntries[0]!)).toEqual([
      "efibootmgr",
      "--quiet",
      "--create",
      "--disk",
      "/dev/vda",
      "--part",
      "1",
      "--label",
      "debian",
      "--loader",
      "\\EFI\\debian\\grubx64.efi",
    ]);
  });

  it("points the entries at the new disk when an NVMe machine is recovered onto virtio", () => {
    const layout = loadLayout("vm/g-nvme.json");
    const plan = planRestore(
      layout,
      [blankDisk("/dev/vda", layout.disks[0]!.sizeBytes)],
      options({ maps: { "/dev/nvme0n1": "/dev/vda" } }),
    );
    expect(planBootloader(layout, plan).efiEntries).toEqual([
      { label: "debian", loader: "\\EFI\\debian\\grubx64.efi", disk: "/dev/vda", partition: 1 },
    ]);
  });

  it("finds the captured entry of an ESP on md RAID1 on the first member", () => {
    const layout = loadLayout("vm/c-raid1-luks-lvm-xfs.json");
    const plan = planRestore(layout, sameDisks(layout), options({ keyFiles: { "*": "/k" } }));
    const boot = planBootloader(layout, plan);
    expect(boot.efiEntries.map((e) => [e.disk, e.partition])).toEqual([["/dev/vda", 1]]);
  });

  it("uses shim under Secure Boot", () => {
    const layout = loadLayout("vm/b-uefi-lvm.json");
    layout.boot.secureBoot = "enabled";
    const plan = planRestore(layout, sameDisks(layout), options());
    expect(planBootloader(layout, plan).commands[0]!.argv).toContain("--uefi-secure-boot");
  });

  it("refuses a BIOS layout without a GRUB disk, and a UEFI layout without an ESP", () => {
    const bios = loadLayout("vm/a-bios-gpt-ext4.json");
    bios.boot.grubBiosDisks = [];
    expect(() => planBootloader(bios, planRestore(bios, sameDisks(bios), options()))).toThrow(
      /records no disk with GRUB/,
    );
    const uefi = loadLayout("vm/b-uefi-lvm.json");
    uefi.boot.esp = null;
    expect(() => planBootloader(uefi, planRestore(uefi, sameDisks(uefi), options()))).toThrow(
      /no mounted EFI system partition/,
    );
  });

  it("replaces old entries with the same label and puts the new ones first", () => {
    const existing = [
      { number: "0000", label: "UiApp", loader: null },
      { number: "0003", label: "debian", loader: "\\EFI\\debian\\grubx64.efi" },
    ];
    const planned = [
      { label: "debian", loader: "\\EFI\\debian\\grubx64.efi", disk: "/dev/vda", partition: 1 },
    ];
    expect(efibootmgrDeletes(existing, planned)).toEqual([
      ["efibootmgr", "--quiet", "--bootnum", "0003", "--delete-bootnum"],
    ]);
    expect(bootOrder(["0004"], ["0000", "0004", "0001"])).toEqual(["0004", "0000", "0001"]);
    expect(bootloaderId("\\EFI\\debian\\shimx64.efi")).toBe("debian");
    expect(bootloaderId("\\EFI\\BOOT\\BOOTX64.EFI")).toBeNull();
  });
});

describe("recovery log", () => {
  it("prints step markers the harness can read back", () => {
    const out: string[] = [];
    let now = 1_700_000_000_000;
    const log = new RecoveryLog({ write: (t) => void out.push(t) }, null, () => now);
    log.mark("layout", "start");
    now += 1500;
    log.say("[1/3] Wipe old signatures");
    log.mark("layout", "done");
    const console = `noise\r\n${out.join("")}[  12.3] kernel LIFEBOAT-STEP data start 1700000001600\n`;
    expect(parseStepMarkers(console)).toEqual([
      { name: "layout", state: "start", at: 1_700_000_000_000 },
      { name: "layout", state: "done", at: 1_700_000_001_500 },
      { name: "data", state: "start", at: 1_700_000_001_600 },
    ]);
    expect(stepMarker("x", "failed", 5)).toBe("LIFEBOAT-STEP x failed 5");
    expect(log.text()).toContain("2023-11-14T22:13:21.500Z [1/3] Wipe old signatures");
  });
});

describe("what a recovery covers", () => {
  it("installs a bootloader for whole machines and for layouts that hold the boot disk", () => {
    const whole = loadLayout("vm/a-bios-gpt-ext4.json");
    expect(recoversBootPath(whole)).toBe(true);
    const partial = { ...whole, scope: { wholeMachine: false, disks: ["/dev/vda"] } };
    expect(recoversBootPath(partial)).toBe(true);
    const dataOnly = {
      ...partial,
      boot: { ...whole.boot, grubBiosDisks: ["/dev/vdz"] },
    };
    expect(recoversBootPath(dataOnly)).toBe(false);
    const uefi = loadLayout("vm/b-uefi-lvm.json");
    expect(recoversBootPath({ ...uefi, scope: { wholeMachine: false, disks: ["/dev/vda"] } })).toBe(
      true,
    );
  });
});

describe("waiting for the modules the init loads in the background", () => {
  const sink = () => {
    const lines: string[] = [];
    return { lines, say: (text: string) => void lines.push(text) };
  };

  it("goes on at once without the marker, and waits while it is there", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lb-modules-"));
    try {
      const quiet = sink();
      await waitForModules(dir, quiet);
      expect(quiet.lines).toEqual([]);

      const marker = path.join(dir, MODULES_PENDING);
      writeFileSync(marker, "");
      const log = sink();
      const started = performance.now();
      setTimeout(() => rmSync(marker), 600);
      await waitForModules(dir, log);
      expect(performance.now() - started).toBeGreaterThanOrEqual(550);
      expect(log.lines.join("\n")).toMatch(/Waiting for the kernel modules/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives up with an error that names the marker", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lb-modules-"));
    try {
      writeFileSync(path.join(dir, MODULES_PENDING), "");
      const error = await waitForModules(dir, sink(), 300).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LifeboatError);
      expect((error as LifeboatError).code).toBe("LB_RECOVER_MODULES");
      expect((error as LifeboatError).message).toContain(MODULES_PENDING);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
