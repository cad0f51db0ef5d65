import { describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { MiB } from "../../common/units.ts";
import { planRestore } from "../../layouts/plan/plan.ts";
import { renderScript } from "../../layouts/plan/script.ts";
import type { Plan, PlanStep } from "../../layouts/plan/types.ts";
import type { Layout } from "../../layouts/schema.ts";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { importRearLayout } from "../../layouts/rear.ts";
import { FIXTURES, loadLayout, vmFixtures } from "../helpers/fixtures.ts";
import { blankDisk, options, sameDisks } from "../helpers/targets.ts";

const gpt = loadLayout("host/gpt-mixed.json");
const mbr = loadLayout("host/mbr-logical.json");
const vm = Object.fromEntries(vmFixtures().map((name) => [name, loadLayout(`vm/${name}.json`)]));
const rear = readdirSync(path.join(FIXTURES, "rear"))
  .filter((f) => f.endsWith(".conf") && f !== "unmappable.conf")
  .map((f): [string, Layout] => {
    const text = readFileSync(path.join(FIXTURES, "rear", f), "utf8");
    return [`rear/${f}`, importRearLayout(text, { source: f, now: new Date(0) }).layout];
  });
const all: [string, Layout][] = [
  ["host/gpt-mixed", gpt],
  ["host/mbr-logical", mbr],
  ...Object.entries(vm).map(([name, layout]) => [`vm/${name}`, layout] as [string, Layout]),
  ...rear,
];

const step = (plan: Plan, id: string): PlanStep => {
  const found = plan.steps.find((s) => s.id === id);
  if (!found) throw new Error(`no step ${id} in ${plan.steps.map((s) => s.id).join(", ")}`);
  return found;
};
const sfdiskInput = (plan: Plan, disk: string) =>
  step(plan, `partition:${disk}`).commands[0]!.stdin!;
const argvOf = (plan: Plan, id: string) => step(plan, id).commands.map((c) => c.argv);
const flat = (plan: Plan) =>
  plan.steps.flatMap((s) => s.commands.map((c) => c.argv.join(" "))).join("\n");

function refusal(fn: () => unknown): LifeboatError {
  try {
    fn();
  } catch (error) {
    if (error instanceof LifeboatError) return error;
    throw error;
  }
  throw new Error("expected the planner to refuse");
}

describe("step order", () => {
  it.each(all)("%s: every step comes after the steps it depends on", (_name, layout) => {
    const plan = planRestore(layout, sameDisks(layout), options());
    const position = new Map(plan.steps.map((s, i) => [s.id, i]));
    expect(plan.steps.length).toBeGreaterThan(2);
    for (const [i, s] of plan.steps.entries()) {
      for (const dep of s.dependsOn) {
        expect(position.has(dep), `${s.id} depends on unknown ${dep}`).toBe(true);
        expect(position.get(dep)!, `${s.id} must come after ${dep}`).toBeLessThan(i);
      }
    }
  });

  it.each(all)(
    "%s: follows the storage stack (wipe, tables, md, LUKS, LVM, filesystems, mounts)",
    (_name, layout) => {
      const plan = planRestore(layout, sameDisks(layout), options());
      const kinds = plan.steps.map((s) => s.kind);
      const lastWipe = kinds.lastIndexOf("wipe");
      const firstMkfs = kinds.indexOf("mkfs");
      const firstMount = kinds.indexOf("mount");
      expect(kinds.indexOf("partition")).toBeGreaterThan(lastWipe);
      for (const k of ["md", "luks-format", "pv", "vg", "lv"]) {
        if (kinds.includes(k as PlanStep["kind"]))
          expect(kinds.indexOf(k as PlanStep["kind"])).toBeLessThan(firstMkfs);
      }
      if (firstMount >= 0) expect(firstMount).toBeGreaterThan(firstMkfs);
    },
  );
});

describe("identical disks", () => {
  it("recreates a GPT layout exactly: positions, types, PARTUUIDs, names, filesystem UUIDs and labels", () => {
    const plan = planRestore(gpt, sameDisks(gpt), options());
    const disk = gpt.disks[0]!;
    const table = disk.partitionTable!;
    expect(plan.resizes).toEqual([]);
    expect(plan.disks[0]).toMatchObject({
      from: disk.device,
      to: disk.device,
      reason: "same device",
    });
    const input = sfdiskInput(plan, disk.device);
    expect(input).toContain(`label-id: ${table.id}`);
    for (const p of table.partitions) {
      const line = input.split("\n").find((l) => l.startsWith(`${p.device} :`))!;
      expect(line).toContain(`start=${p.startBytes / 512}`);
      expect(line).toContain(`size=${p.sizeBytes / 512}`);
      expect(line).toContain(`type=${p.type}`);
      expect(line).toContain(`uuid=${p.partUuid}`);
      if (p.name) expect(line).toContain(`name="${p.name}"`);
    }
    for (const fs of gpt.filesystems) {
      const mkfs = argvOf(plan, `mkfs:${fs.device}`)[0]!.join(" ");
      expect(mkfs).toContain(fs.uuid!);
      if (fs.label) expect(mkfs).toContain(fs.label);
    }
  });

  it("pins size-dependent geometry only on a disk of the same size", () => {
    const same = planRestore(gpt, sameDisks(gpt), options());
    const bigger = planRestore(gpt, sameDisks(gpt, 1.5), options());
    const xfs = gpt.filesystems.find((f) => f.type === "xfs")!;
    const ext = gpt.filesystems.find((f) => f.type === "ext4")!;
    if (xfs.type !== "xfs" || ext.type !== "ext4") throw new Error("fixture changed");
    expect(argvOf(same, `mkfs:${xfs.device}`)[0]!.join(" ")).toContain(
      `agcount=${xfs.geometry.agCount}`,
    );
    expect(argvOf(same, `mkfs:${ext.device}`)[0]!).toEqual(
      expect.arrayContaining(["-N", String(ext.inodeCount)]),
    );
    // On the bigger disk the xfs partition keeps its size (btrfs grows), so it is still pinned;
    // the btrfs partition is the one that changed.
    expect(bigger.resizes.map((r) => r.what)).toEqual(["/dev/loop0p4"]);
  });

  it("keeps MBR logical partitions, the extended container and the boot flag", () => {
    const plan = planRestore(mbr, sameDisks(mbr), options());
    const disk = mbr.disks[0]!;
    const input = sfdiskInput(plan, disk.device);
    expect(input).toContain("label: dos");
    expect(input).toContain(`label-id: ${disk.partitionTable!.id}`);
    const lines = input.split("\n").filter((l) => l.includes(" : "));
    expect(lines.map((l) => l.split(" : ")[0])).toEqual(
      disk.partitionTable!.partitions.map((p) => p.device),
    );
    expect(lines.find((l) => l.startsWith(`${disk.device}p1 `))).toMatch(/type=83, bootable$/);
    expect(lines.find((l) => l.startsWith(`${disk.device}p2 `))).toMatch(/type=5$/);
    // The extended container gets no filesystem and no wipe of its own.
    expect(plan.steps.some((s) => s.id === `mkfs:${disk.device}p2`)).toBe(false);
  });
});

describe("disk mapping and naming", () => {
  it("renames partitions by the target's naming rules (vda-style to NVMe)", () => {
    const layout = gpt;
    const plan = planRestore(
      layout,
      [blankDisk("/dev/nvme0n1", layout.disks[0]!.sizeBytes)],
      options(),
    );
    expect(plan.disks[0]).toMatchObject({ to: "/dev/nvme0n1", reason: "matched by size" });
    expect(plan.deviceMap["/dev/loop0p2"]).toBe("/dev/nvme0n1p2");
    expect(sfdiskInput(plan, "/dev/nvme0n1")).toContain("/dev/nvme0n1p5 : start=");
    expect(flat(plan)).toContain("mkfs.ext4");
    expect(argvOf(plan, "mkfs:/dev/nvme0n1p2")[0]!.at(-1)).toBe("/dev/nvme0n1p2");
    expect(flat(plan)).not.toContain("/dev/loop0");
  });

  it("lets an explicit --map win over a same-named disk", () => {
    const size = gpt.disks[0]!.sizeBytes;
    const plan = planRestore(
      gpt,
      [blankDisk("/dev/loop0", size), blankDisk("/dev/sdb", size * 2)],
      options({ maps: { "/dev/loop0": "/dev/sdb" } }),
    );
    expect(plan.disks[0]).toMatchObject({ to: "/dev/sdb", reason: "explicit --map" });
  });

  it("prefers the smallest disk that is big enough", () => {
    const size = gpt.disks[0]!.sizeBytes;
    const plan = planRestore(
      gpt,
      [
        blankDisk("/dev/sda", size * 4),
        blankDisk("/dev/sdb", size * 2),
        blankDisk("/dev/sdc", size / 2),
      ],
      options(),
    );
    expect(plan.disks[0]!.to).toBe("/dev/sdb");
  });
});

describe("growing and shrinking", () => {
  it("grows the last data partition into a larger disk and moves the ones after it", () => {
    const plan = planRestore(gpt, sameDisks(gpt, 1.5), options());
    const parts = gpt.disks[0]!.partitionTable!.partitions;
    const input = sfdiskInput(plan, "/dev/loop0");
    const growth = Math.floor((gpt.disks[0]!.sizeBytes * 0.5) / MiB) * MiB;
    const p4 = parts.find((p) => p.number === 4)!;
    const p5 = parts.find((p) => p.number === 5)!;
    expect(input).toContain(
      `/dev/loop0p4 : start=${p4.startBytes / 512}, size=${(p4.sizeBytes + growth) / 512},`,
    );
    expect(input).toContain(
      `/dev/loop0p5 : start=${(p5.startBytes + growth) / 512}, size=${p5.sizeBytes / 512},`,
    );
    for (const n of [1, 2, 3]) {
      const p = parts.find((x) => x.number === n)!;
      expect(input).toContain(
        `/dev/loop0p${n} : start=${p.startBytes / 512}, size=${p.sizeBytes / 512},`,
      );
    }
    expect(plan.resizes).toEqual([
      {
        what: "/dev/loop0p4",
        fromBytes: p4.sizeBytes,
        toBytes: p4.sizeBytes + growth,
        why: "grows into the larger disk",
      },
    ]);
  });

  it("shrinks onto a smaller disk when the used space still fits, taking from the growable partition first", () => {
    const plan = planRestore(gpt, [blankDisk("/dev/loop0", 800 * MiB)], options());
    const to = (device: string) => plan.resizes.find((r) => r.what === device)?.toBytes;
    // btrfs (the growable one) gives all it can (down to its 256 MiB floor), then xfs (300
    // MiB floor), then ext4 gives the rest.
    expect(to("/dev/loop0p4")).toBe(256 * MiB);
    expect(to("/dev/loop0p3")).toBe(300 * MiB);
    expect(to("/dev/loop0p2")).toBeLessThan(200 * MiB);
    for (const r of plan.resizes) expect(r.toBytes).toBeLessThan(r.fromBytes);
    // The last partition must end inside the GPT's usable area of the smaller disk.
    const input = sfdiskInput(plan, "/dev/loop0");
    const ends = input
      .split("\n")
      .filter((l) => l.includes(" : "))
      .map((l) => Number(/start=(\d+)/.exec(l)![1]) + Number(/size=(\d+)/.exec(l)![1]));
    expect(Math.max(...ends)).toBeLessThanOrEqual((800 * MiB) / 512 - 34);
    // Every filesystem keeps at least its used bytes + 10%.
    for (const fs of gpt.filesystems) {
      if (!fs.usage) continue;
      const resize = plan.resizes.find((r) => r.what === fs.device);
      if (resize) expect(resize.toBytes).toBeGreaterThanOrEqual(fs.usage.usedBytes * 1.1);
    }
  });

  it("refuses a disk that is too small, giving the numbers for every partition", () => {
    const error = refusal(() => planRestore(gpt, [blankDisk("/dev/loop0", 600 * MiB)], options()));
    expect(error.code).toBe("LB_TARGET_TOO_SMALL");
    expect(error.kind).toBe("input");
    expect(error.message).toContain(
      "Target disk /dev/loop0 (600.0 MiB) is too small for the layout's /dev/loop0 (1.2 GiB)",
    );
    expect(error.message).toMatch(/needs at least \d+\.\d MiB/);
    expect(error.message).toMatch(/\/dev\/loop0p3 {2}300\.0 MiB {2}xfs uses/);
    expect(error.message).toContain("/dev/loop0p1  1.0 MiB  fixed (BIOS boot)");
    expect(error.message).toContain("/dev/loop0p5  100.0 MiB  fixed (swap)");
    expect(error.hint).toContain("--map /dev/loop0=NEW");
  });
});

describe("safety", () => {
  const size = gpt.disks[0]!.sizeBytes;

  it("refuses --map to a disk that does not exist", () => {
    const error = refusal(() =>
      planRestore(
        gpt,
        [blankDisk("/dev/sdb", size)],
        options({ maps: { "/dev/loop0": "/dev/sdz" } }),
      ),
    );
    expect(error.code).toBe("LB_MAP_TARGET_MISSING");
    expect(error.message).toContain("there is no disk /dev/sdz");
    expect(error.hint).toContain("/dev/sdb");
  });

  it("refuses a disk with a mounted filesystem", () => {
    const target = { ...blankDisk("/dev/sdb", size), mountpoints: ["/srv"] };
    const error = refusal(() => planRestore(gpt, [target], options()));
    expect(error.code).toBe("LB_TARGET_MOUNTED");
    expect(error.message).toContain("/srv");
  });

  it("allows mounts under its own target root, left by an earlier run", () => {
    const target = { ...blankDisk("/dev/loop0", size), mountpoints: ["/mnt/lifeboat/data"] };
    const plan = planRestore(gpt, [target], options());
    expect(argvOf(plan, "wipe:/dev/loop0")[0]).toEqual(["umount", "/mnt/lifeboat/data"]);
  });

  it("refuses the disk that holds the backup source", () => {
    const error = refusal(() =>
      planRestore(
        gpt,
        [blankDisk("/dev/loop0", size)],
        options({
          protect: [{ device: "/dev/loop0", reason: "holds the backup source /srv/backup" }],
        }),
      ),
    );
    expect(error.code).toBe("LB_TARGET_PROTECTED");
    expect(error.message).toContain("holds the backup source /srv/backup");
  });

  it("says exactly what the wipe destroys", () => {
    const target = {
      ...blankDisk("/dev/loop0", size),
      contents: [
        "/dev/loop0: GPT partition table with 2 partitions",
        "/dev/loop0p1: ext4 'old' (UUID 1234)",
      ],
      partitions: ["/dev/loop0p1", "/dev/loop0p2"],
    };
    const plan = planRestore(gpt, [target], options());
    const wipe = step(plan, "wipe:/dev/loop0");
    expect(wipe.destroys).toEqual(target.contents);
    expect(wipe.commands.map((c) => c.argv.join(" "))).toEqual(
      expect.arrayContaining([
        "wipefs --all --force /dev/loop0p1",
        "wipefs --all --force /dev/loop0",
      ]),
    );
    expect(renderScript(plan)).toContain("# DESTROYS: /dev/loop0p1: ext4 'old' (UUID 1234)");
  });
});

describe("LVM (fixture b: UEFI, ESP, LVM root/home/swap)", () => {
  const b = vm["b-uefi-lvm"]!;
  const disk = b.disks[0]!;
  const vg = b.lvm.vgs[0]!;

  it("recreates PV UUIDs, the VG's extent size and every LV at its size", () => {
    const plan = planRestore(b, sameDisks(b), options());
    expect(argvOf(plan, "pv:/dev/vda3")[0]).toEqual(
      expect.arrayContaining(["--uuid", b.lvm.pvs[0]!.uuid, "/dev/vda3"]),
    );
    expect(argvOf(plan, "vg:vg0")[0]!.join(" ")).toContain(`-s 4096k vg0 /dev/vda3`);
    for (const lv of vg.lvs) {
      expect(argvOf(plan, `lv:vg0/${lv.name}`)[1]!.join(" ")).toContain(
        `-L ${lv.sizeBytes / 1024}k -n ${lv.name} vg0`,
      );
    }
  });

  it("grows the PV partition into a larger disk and leaves the LVs alone", () => {
    const plan = planRestore(b, sameDisks(b, 1.5), options());
    expect(plan.resizes.map((r) => r.what)).toEqual(["/dev/vda3"]);
    for (const lv of vg.lvs) {
      expect(argvOf(plan, `lv:vg0/${lv.name}`)[1]!.join(" ")).toContain(
        `-L ${lv.sizeBytes / 1024}k`,
      );
    }
  });

  it("shrinks onto a disk 20% smaller: VG free space first, then the LV with the most slack", () => {
    const size = Math.floor((disk.sizeBytes * 0.8) / MiB) * MiB;
    const plan = planRestore(b, [blankDisk("/dev/vda", size)], options());
    const whats = plan.resizes.map((r) => r.what);
    expect(whats).toContain("/dev/vda3");
    expect(whats).toContain("vg0/root");
    expect(whats).not.toContain("vg0/home");
    expect(whats).not.toContain("vg0/swap");
    const root = plan.resizes.find((r) => r.what === "vg0/root")!;
    const rootFs = b.filesystems.find((f) => f.device === "/dev/mapper/vg0-root")!;
    expect(root.toBytes).toBeGreaterThan(rootFs.usage!.usedBytes * 1.1);
    // The LVs fit into the shrunken PV: new PV size >= sum of LV sizes.
    const pv = plan.resizes.find((r) => r.what === "/dev/vda3")!;
    const lvTotal = vg.lvs.reduce(
      (sum, lv) =>
        sum + (plan.resizes.find((r) => r.what === `vg0/${lv.name}`)?.toBytes ?? lv.sizeBytes),
      0,
    );
    expect(pv.toBytes - b.lvm.pvs[0]!.peStartBytes).toBeGreaterThanOrEqual(lvTotal);
    expect(argvOf(plan, "lv:vg0/root")[1]!.join(" ")).toContain(`-L ${root.toBytes / 1024}k`);
  });

  it("refuses a disk too small for the LVs' data, naming the PV's minimum", () => {
    const error = refusal(() => planRestore(b, [blankDisk("/dev/vda", 1536 * MiB)], options()));
    expect(error.code).toBe("LB_TARGET_TOO_SMALL");
    expect(error.message).toMatch(
      /\/dev\/vda3 {2}[\d.]+ GiB {2}LVM PV of vg0: [\d.]+ GiB of LVs at their minimum/,
    );
    expect(error.message).toContain("/dev/vda1  256.0 MiB  fixed (EFI system partition)");
  });

  it("puts a vda layout on an NVMe disk with NVMe partition names all the way down", () => {
    const plan = planRestore(b, [blankDisk("/dev/nvme0n1", disk.sizeBytes)], options());
    expect(step(plan, "pv:/dev/nvme0n1p3")).toBeDefined();
    expect(argvOf(plan, "vg:vg0")[0]!.at(-1)).toBe("/dev/nvme0n1p3");
    expect(argvOf(plan, "mkfs:/dev/nvme0n1p1")[0]![0]).toBe("mkfs.vfat");
    expect(flat(plan)).not.toMatch(/\/dev\/vda/);
  });
});

describe("btrfs", () => {
  it("creates the subvolumes parents first and sets the captured default", () => {
    const plan = planRestore(gpt, sameDisks(gpt), options());
    const argv = argvOf(plan, "btrfs-subvolumes:/dev/loop0p4").map((a) => a.join(" "));
    const top = "/run/lifeboat/btrfs-" + gpt.filesystems.find((f) => f.type === "btrfs")!.uuid;
    expect(argv).toEqual([
      `mkdir -p ${top}`,
      `mount -t btrfs -o subvolid=5 /dev/loop0p4 ${top}`,
      `btrfs subvolume create ${top}/@`,
      `btrfs subvolume create ${top}/@home`,
      `btrfs subvolume set-default ${top}/@`,
      `umount ${top}`,
    ]);
  });

  it("creates a default subvolume that the subvolume list does not name", () => {
    const layout = structuredClone(gpt);
    const btrfs = layout.filesystems.find((f) => f.type === "btrfs")!;
    if (btrfs.type !== "btrfs") throw new Error("fixture changed");
    btrfs.defaultSubvolume = { id: 300, path: "@/.snapshots/1/snapshot" };
    const plan = planRestore(layout, sameDisks(layout), options());
    const argv = argvOf(plan, "btrfs-subvolumes:/dev/loop0p4").map((a) => a.join(" "));
    const create = argv.findIndex((a) =>
      a.endsWith("subvolume create /run/lifeboat/btrfs-" + btrfs.uuid + "/@/.snapshots/1/snapshot"),
    );
    const setDefault = argv.findIndex(
      (a) => a.includes("set-default") && a.endsWith("@/.snapshots/1/snapshot"),
    );
    expect(create).toBeGreaterThan(argv.findIndex((a) => a.endsWith("/@")));
    expect(setDefault).toBeGreaterThan(create);
    expect(argv).toContain(`mkdir -p /run/lifeboat/btrfs-${btrfs.uuid}/@/.snapshots/1`);
  });
});

describe("the script", () => {
  it("renders every command of every step, with the sfdisk input as a quoted here-document", () => {
    const plan = planRestore(mbr, sameDisks(mbr), options());
    const script = renderScript(plan);
    expect(script.startsWith("#!/bin/bash\n")).toBe(true);
    expect(script).toContain(`plan-${plan.planId}`);
    expect(script).toContain("<<'LIFEBOAT_INPUT'\nlabel: dos\n");
    for (const s of plan.steps)
      expect(script).toContain(
        `# step ${plan.steps.indexOf(s) + 1}/${plan.steps.length}: ${s.title}`,
      );
  });

  it("gives the same plan id for the same input and another for another target", () => {
    const a = planRestore(gpt, sameDisks(gpt), options());
    const b = planRestore(gpt, sameDisks(gpt), options());
    const c = planRestore(gpt, sameDisks(gpt, 1.5), options());
    expect(a.planId).toBe(b.planId);
    expect(c.planId).not.toBe(a.planId);
  });
});

describe("md RAID1, LUKS2 and LVM (fixture c)", () => {
  const c = vm["c-raid1-luks-lvm-xfs"]!;
  const plan = planRestore(c, sameDisks(c), options({ keyFiles: { cryptroot: "/run/key" } }));
  const ids = plan.steps.map((s) => s.id);

  it("builds the stack bottom up: both tables, the arrays, LUKS on md1, then the PV on it", () => {
    const at = (id: string) => {
      expect(ids).toContain(id);
      return ids.indexOf(id);
    };
    expect(at("md:/dev/md1")).toBeGreaterThan(at("partition:/dev/vdb"));
    expect(at("luks-format:/dev/md1")).toBeGreaterThan(at("md:/dev/md1"));
    expect(at("luks-open:cryptroot")).toBeGreaterThan(at("luks-format:/dev/md1"));
    expect(at("pv:/dev/mapper/cryptroot")).toBeGreaterThan(at("luks-open:cryptroot"));
    expect(at("mkfs:/dev/md0")).toBeGreaterThan(at("md:/dev/md0"));
  });

  it("recreates each array with its UUID, name, homehost, metadata and bitmap", () => {
    for (const md of c.md) {
      const create = argvOf(plan, `md:${md.device}`).find((a) => a.includes("--create"))!;
      const [homehost, name] = md.name!.split(":");
      expect(create).toEqual(
        expect.arrayContaining([
          `--uuid=${md.uuid}`,
          `--name=${name}`,
          `--homehost=${homehost}`,
          "--metadata=1.2",
          "--level=raid1",
          `--bitmap=${md.bitmap}`,
          ...md.members.map((m) => m.device),
        ]),
      );
    }
  });

  it("formats LUKS with the captured UUID, data offset and pbkdf, keyed from the given file", () => {
    const luks = c.luks[0]!;
    const format = argvOf(plan, "luks-format:/dev/md1").find((a) => a.includes("luksFormat"))!;
    const value = (flag: string) => format[format.indexOf(flag) + 1];
    expect(value("--type")).toBe("luks2");
    expect(value("--uuid")).toBe(luks.uuid);
    expect(value("--offset")).toBe(String(luks.dataOffsetBytes! / 512));
    expect(value("--cipher")).toBe("aes-xts-plain64");
    expect(value("--key-size")).toBe("512");
    expect(value("--pbkdf")).toBe("pbkdf2");
    expect(value("--key-file")).toBe("/run/key");
    expect(format.at(-1)).toBe("/dev/md1");
  });

  it("restores the captured LUKS header instead of formatting when the snapshot has one", () => {
    const luks = c.luks[0]!;
    const restored = planRestore(
      c,
      sameDisks(c),
      options({ keyFiles: { "*": "/run/key" }, luksHeaders: { [luks.uuid]: "/run/h.img" } }),
    );
    expect(argvOf(restored, "luks-format:/dev/md1").at(-1)).toEqual([
      "cryptsetup",
      "luksHeaderRestore",
      "--batch-mode",
      "--header-backup-file",
      "/run/h.img",
      "/dev/md1",
    ]);
    expect(flat(restored)).not.toContain("luksFormat");
    // Opening still uses the key file: the restored header holds the captured keyslots.
    expect(argvOf(restored, "luks-open:cryptroot")[0]).toContain("/run/key");
  });

  it("makes the xfs root with its UUID and label, and mounts /boot from md0", () => {
    const root = c.filesystems.find((fs) => fs.type === "xfs")!;
    expect(argvOf(plan, "mkfs:/dev/mapper/vg0-root")[0]!.join(" ")).toContain(`uuid=${root.uuid}`);
    expect(argvOf(plan, "mount:/mnt/lifeboat/boot").at(-1)).toEqual([
      "mount",
      "-t",
      "ext4",
      "/dev/md0",
      "/mnt/lifeboat/boot",
    ]);
  });
});

describe("btrfs subvolumes (fixture d)", () => {
  it("mounts / and /home by subvolume after creating them, and sets @ as default", () => {
    const d = vm["d-btrfs-subvols"]!;
    const plan = planRestore(d, sameDisks(d), options());
    const subvols = argvOf(plan, "btrfs-subvolumes:/dev/vda2").map((a) => a.join(" "));
    expect(
      subvols.filter((a) => a.includes("subvolume create")).map((a) => a.split("/").pop()),
    ).toEqual(["@", "@home"]);
    expect(subvols.find((a) => a.includes("set-default"))).toMatch(/\/@$/);
    expect(argvOf(plan, "mount:/mnt/lifeboat").at(-1)!.join(" ")).toBe(
      "mount -t btrfs -o subvol=@ /dev/vda2 /mnt/lifeboat",
    );
    expect(step(plan, "mount:/mnt/lifeboat/home").dependsOn).toContain(
      "btrfs-subvolumes:/dev/vda2",
    );
  });
});

describe("MBR logical partitions (fixture e)", () => {
  it("writes the extended container and logical partitions at their captured positions", () => {
    const e = vm["e-mbr-logical"]!;
    const plan = planRestore(e, sameDisks(e), options());
    const table = e.disks[0]!.partitionTable!;
    const lines = sfdiskInput(plan, "/dev/vda")
      .split("\n")
      .filter((l) => l.includes(" : "));
    expect(lines.map((l) => l.split(" : ")[0])).toEqual(table.partitions.map((p) => p.device));
    for (const p of table.partitions)
      expect(lines.find((l) => l.startsWith(`${p.device} `))).toContain(
        `start=${p.startBytes / 512}`,
      );
    expect(plan.steps.some((s) => s.id === "mkfs:/dev/vda2")).toBe(false);
    expect(argvOf(plan, "mkfs:/dev/vda6")[0]![0]).toBe("mkswap");
  });
});

describe("thin pools (fixture f)", () => {
  const f = vm["f-lvm-thin"]!;
  const plan = planRestore(f, sameDisks(f), options());

  it("creates the pool with its chunk and metadata size before the thin volumes", () => {
    const pool = argvOf(plan, "lv:vg0/pool")
      .find((a) => a[0] === "lvcreate")!
      .join(" ");
    expect(pool).toContain("--type thin-pool");
    expect(pool).toContain("--poolmetadatasize 4096k");
    expect(pool).toContain("--chunksize 64k");
    for (const name of ["root", "data"]) {
      const lv = f.lvm.vgs[0]!.lvs.find((l) => l.name === name)!;
      expect(step(plan, `lv:vg0/${name}`).dependsOn).toContain("lv:vg0/pool");
      expect(
        argvOf(plan, `lv:vg0/${name}`)
          .find((a) => a[0] === "lvcreate")!
          .join(" "),
      ).toContain(`--type thin -V ${lv.sizeBytes / 1024}k --thinpool pool -n ${name} vg0`);
    }
  });

  it("keeps the over-provisioned thin volumes on a smaller disk instead of shrinking them", () => {
    const smaller = planRestore(f, sameDisks(f, 0.9), options());
    expect(smaller.resizes.map((r) => r.what)).not.toContain("vg0/root");
    expect(smaller.resizes.map((r) => r.what)).not.toContain("vg0/data");
  });
});

describe("NVMe (fixture g)", () => {
  it("restores an NVMe layout onto a virtio disk with vda-style names", () => {
    const g = vm["g-nvme"]!;
    const plan = planRestore(g, [blankDisk("/dev/vda", g.disks[0]!.sizeBytes)], options());
    expect(plan.deviceMap).toMatchObject({
      "/dev/nvme0n1p1": "/dev/vda1",
      "/dev/nvme0n1p2": "/dev/vda2",
    });
    expect(argvOf(plan, "mount:/mnt/lifeboat/boot/efi").at(-1)!.join(" ")).toBe(
      "mount -t vfat -o fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8 /dev/vda1 /mnt/lifeboat/boot/efi",
    );
    expect(flat(plan)).not.toContain("nvme0n1");
  });
});
