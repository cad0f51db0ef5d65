// Turning a fitted layout into ordered steps. The order follows the storage stack:
// wipe stale signatures -> partition tables -> md -> LUKS -> LVM PVs, VGs, LVs (thin pools
// before their thin volumes) -> filesystems and swap with their original UUIDs and labels
// -> btrfs subvolumes -> mounts. Each step names the steps it depends on.

import { inputError } from "../../common/errors.ts";
import { formatBytes, KiB, MiB } from "../../common/units.ts";
import { partitionDevice } from "../names.ts";
import type { Filesystem, Layout, Luks, Lv, MdArray, PartitionTable, Vg } from "../schema.ts";
import { mkfsCommand } from "./mkfs.ts";
import type { Geometry, SizingResult } from "./sizing.ts";
import type { DiskAssignment, PlanCommand, PlanOptions, PlanStep, TargetDisk } from "./types.ts";

/** LVM settings that work whether or not udev runs (the rescue system has none). */
export const LVM_CONFIG =
  "devices { obtain_device_list_from_udev = 0 } activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 monitoring = 0 }";

export const DEFAULT_KEY_DIR = "/run/lifeboat/keys";

interface Context {
  layout: Layout;
  assignments: DiskAssignment[];
  targets: TargetDisk[];
  sizing: SizingResult;
  options: PlanOptions;
  deviceMap: Record<string, string>;
  warnings: string[];
  steps: PlanStep[];
  /** Which step creates each (new) device path. */
  creator: Map<string, string>;
}

export function buildSteps(ctx: Omit<Context, "steps" | "creator">): PlanStep[] {
  const c: Context = { ...ctx, steps: [], creator: new Map() };
  for (const a of c.assignments) wipeStep(c, a);
  for (const a of c.assignments) {
    const disk = c.layout.disks.find((d) => d.device === a.from)!;
    if (disk.partitionTable) partitionStep(c, a.to, disk.partitionTable, `wipe:${a.to}`);
    else c.creator.set(a.to, `wipe:${a.to}`);
  }
  stackSteps(c);
  for (const fs of c.layout.filesystems) mkfsStep(c, fs);
  if (c.options.targetRoot !== null) mountSteps(c, c.options.targetRoot);
  return c.steps;
}

/** The new path of a captured device: disks and partitions follow the mapping. */
export function buildDeviceMap(layout: Layout, assignments: DiskAssignment[]) {
  const map: Record<string, string> = {};
  for (const a of assignments) {
    map[a.from] = a.to;
    const disk = layout.disks.find((d) => d.device === a.from);
    for (const part of disk?.partitionTable?.partitions ?? []) {
      map[part.device] = partitionDevice(a.to, part.number);
    }
  }
  return map;
}

const rename = (c: Context, device: string) => c.deviceMap[device] ?? device;

function add(c: Context, step: PlanStep, creates: string[] = []) {
  c.steps.push(step);
  for (const device of creates) c.creator.set(device, step.id);
}

/** The step that creates a (new) device, or an error naming the missing piece. */
function creatorOf(c: Context, device: string, needer: string): string {
  const step = c.creator.get(device);
  if (step) return step;
  throw inputError(
    "LB_LAYOUT_INCOMPLETE",
    `${needer} sits on ${device}, but nothing in the layout creates ${device}.`,
    "The layout is incomplete: capture it again with every disk included (no --disk, or all of them).",
  );
}

const waitFor = (device: string): PlanCommand => ({ argv: ["lb_wait_device", device] });

function wipeStep(c: Context, a: DiskAssignment) {
  const target = c.targets.find((t) => t.device === a.to)!;
  const commands: PlanCommand[] = [];
  for (const mp of [...target.mountpoints].sort().reverse()) {
    commands.push({ argv: ["umount", mp], onlyIf: ["mountpoint", "-q", mp] });
  }
  for (const holder of target.holders) {
    commands.push(
      holder.kind === "md"
        ? { argv: ["mdadm", "--stop", holder.device], onlyIf: ["test", "-b", holder.device] }
        : {
            argv: ["dmsetup", "remove", "--retry", holder.name],
            onlyIf: ["dmsetup", "info", holder.name],
          },
    );
  }
  for (const part of target.partitions) {
    commands.push({ argv: ["wipefs", "--all", "--force", part], onlyIf: ["test", "-b", part] });
  }
  const lastMiB = Math.floor(target.sizeBytes / MiB) - 1;
  commands.push(
    { argv: ["wipefs", "--all", "--force", a.to] },
    { argv: ["dd", "if=/dev/zero", `of=${a.to}`, "bs=1M", "count=1", "conv=fsync", "status=none"] },
    {
      argv: [
        "dd",
        "if=/dev/zero",
        `of=${a.to}`,
        "bs=1M",
        "count=1",
        `seek=${lastMiB}`,
        "conv=fsync",
        "status=none",
      ],
    },
  );
  add(c, {
    id: `wipe:${a.to}`,
    kind: "wipe",
    title: `Wipe old signatures on ${a.to} (for ${a.from})`,
    dependsOn: [],
    commands,
    destroys:
      target.contents.length > 0 ? target.contents : [`${a.to}: no signatures found (blank)`],
  });
}

function partitionStep(c: Context, device: string, table: PartitionTable, after: string) {
  const target = c.targets.find((t) => t.device === device);
  const sectorSize = target?.logicalSectorSize ?? table.sectorSize;
  const geometry = (dev: string): Geometry =>
    c.sizing.partitions.get(dev) ?? table.partitions.find((p) => p.device === dev)!;
  const sectors = (bytes: number, what: string) => {
    if (bytes % sectorSize !== 0) {
      throw inputError(
        "LB_SECTOR_MISMATCH",
        `${what} (${bytes} bytes) is not a whole number of ${sectorSize}-byte sectors on ${device}.`,
        "Choose a target disk with the captured sector size, or a layout aligned to 4 KiB.",
      );
    }
    return bytes / sectorSize;
  };
  const lines = [`label: ${table.type}`, `label-id: ${table.id}`, "unit: sectors"];
  if (table.type === "gpt" && table.firstLba !== null) {
    lines.push(`first-lba: ${sectors(table.firstLba * table.sectorSize, "the first usable LBA")}`);
  }
  lines.push("");
  const parts = [...table.partitions].sort((a, b) => a.number - b.number);
  const created: string[] = [];
  for (const part of parts) {
    const node = partitionDevice(device, part.number);
    created.push(node);
    const g = geometry(part.device);
    const fields = [
      `start=${sectors(g.startBytes, `${part.device} start`)}`,
      `size=${sectors(g.sizeBytes, `${part.device} size`)}`,
      `type=${table.type === "gpt" ? part.type : part.type.replace(/^0x/, "")}`,
    ];
    if (table.type === "gpt" && part.partUuid) fields.push(`uuid=${part.partUuid}`);
    if (part.name) fields.push(`name=${JSON.stringify(part.name)}`);
    if (part.attrs) fields.push(`attrs=${JSON.stringify(part.attrs)}`);
    if (part.bootable) fields.push("bootable");
    lines.push(`${node} : ${fields.join(", ")}`);
  }
  const usable = created.filter((_, i) => parts[i]!.kind !== "extended");
  add(
    c,
    {
      id: `partition:${device}`,
      kind: "partition",
      title: `Create the ${table.type === "gpt" ? "GPT" : "MBR"} partition table on ${device} (${parts.length} partitions)`,
      dependsOn: [after],
      commands: [
        {
          argv: ["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", device],
          stdin: `${lines.join("\n")}\n`,
        },
        { argv: ["lb_reread_partitions", device] },
        ...usable.map(waitFor),
        // The new partitions start where old ones may have been: clear what they left behind.
        ...usable.map((node) => ({ argv: ["wipefs", "--all", "--force", "--quiet", node] })),
      ],
      destroys: [],
    },
    created,
  );
}

function mdSteps(c: Context, array: MdArray) {
  const members = [...array.members].sort((a, b) => (a.slot ?? 1e9) - (b.slot ?? 1e9));
  const devices = members.map((m) => rename(c, m.device));
  const [homehost, name] = array.name?.includes(":")
    ? array.name.split(":", 2)
    : [null, array.name];
  const argv = [
    "mdadm",
    "--create",
    array.device,
    "--run",
    `--metadata=${array.metadata}`,
    `--level=${array.level}`,
    `--raid-devices=${array.raidDevices}`,
    `--uuid=${array.uuid}`,
  ];
  if (name) argv.push(`--name=${name}`);
  if (homehost) argv.push(`--homehost=${homehost}`);
  if (array.chunkSizeBytes && array.level !== "raid1")
    argv.push(`--chunk=${array.chunkSizeBytes / KiB}K`);
  if (array.layout) argv.push(`--layout=${array.layout}`);
  argv.push(`--bitmap=${array.bitmap === "internal" ? "internal" : "none"}`);
  if (array.spares > 0) argv.push(`--spare-devices=${array.spares}`);
  argv.push(...devices);
  const step = `md:${array.device}`;
  add(
    c,
    {
      id: step,
      kind: "md",
      title: `Create ${array.level} array ${array.device} (${array.name ?? array.uuid}) on ${devices.join(", ")}`,
      dependsOn: unique(devices.map((d) => creatorOf(c, d, array.device))),
      commands: [
        {
          argv: ["mdadm", "--stop", array.device],
          onlyIf: ["test", "-e", `/sys/block/${base(array.device)}/md`],
        },
        { argv },
        waitFor(array.device),
      ],
      destroys: [],
    },
    [array.device],
  );
  if (array.partitionTable) partitionStep(c, array.device, array.partitionTable, step);
}

export function luksMapperName(luks: Luks): string {
  return luks.mapperName ?? `luks-${luks.uuid}`;
}

export function keyFileFor(luks: Luks, keyFiles: Record<string, string>): string {
  const name = luksMapperName(luks);
  return keyFiles[name] ?? keyFiles[luks.uuid] ?? keyFiles["*"] ?? `${DEFAULT_KEY_DIR}/${name}.key`;
}

function luksSteps(c: Context, luks: Luks) {
  const device = rename(c, luks.device);
  const name = luksMapperName(luks);
  const keyFile = keyFileFor(luks, c.options.keyFiles);
  const argv = [
    "cryptsetup",
    "luksFormat",
    "--batch-mode",
    "--type",
    `luks${luks.version}`,
    "--uuid",
    luks.uuid,
  ];
  if (luks.version === 2) {
    if (luks.label) argv.push("--label", luks.label);
    if (luks.subsystem) argv.push("--subsystem", luks.subsystem);
    argv.push(
      "--sector-size",
      String(luks.sectorSize),
      "--offset",
      String(luks.dataOffsetBytes / 512),
    );
    if (luks.integrity) argv.push("--integrity", luks.integrity);
  }
  argv.push(
    "--cipher",
    luks.cipher,
    "--key-size",
    String(luks.keySizeBits),
    "--pbkdf",
    luks.pbkdf.type,
  );
  if (luks.pbkdf.hash) argv.push("--hash", luks.pbkdf.hash);
  // The captured cost parameters are reproduced, not re-benchmarked: the volume unlocks as
  // it did before, on whatever hardware it is rebuilt on.
  if (luks.pbkdf.iterations) argv.push("--pbkdf-force-iterations", String(luks.pbkdf.iterations));
  if (luks.pbkdf.memoryKiB) argv.push("--pbkdf-memory", String(luks.pbkdf.memoryKiB));
  if (luks.pbkdf.parallelThreads) argv.push("--pbkdf-parallel", String(luks.pbkdf.parallelThreads));
  argv.push("--key-file", keyFile, device);
  const format = `luks-format:${device}`;
  const mapper = `/dev/mapper/${name}`;
  const header = c.options.luksHeaders?.[luks.uuid];
  add(c, {
    id: format,
    kind: "luks-format",
    title: header
      ? `Restore the captured LUKS${luks.version} header (UUID ${luks.uuid}, every keyslot) on ${device}`
      : `Encrypt ${device} with LUKS${luks.version} (UUID ${luks.uuid})`,
    dependsOn: [creatorOf(c, device, `LUKS ${luks.uuid}`)],
    commands: [
      { argv: ["cryptsetup", "close", name], onlyIf: ["test", "-b", mapper] },
      {
        argv: header
          ? [
              "cryptsetup",
              "luksHeaderRestore",
              "--batch-mode",
              "--header-backup-file",
              header,
              device,
            ]
          : argv,
      },
    ],
    destroys: [],
  });
  add(
    c,
    {
      id: `luks-open:${name}`,
      kind: "luks-open",
      title: `Open ${device} as ${mapper}`,
      dependsOn: [format],
      commands: [
        {
          argv: ["cryptsetup", "open", "--key-file", keyFile, device, name],
          skipIf: ["test", "-b", mapper],
        },
        waitFor(mapper),
      ],
      destroys: [],
    },
    [mapper],
  );
}

/**
 * md arrays, LUKS devices and VGs can sit on each other in any order (LUKS on md, md on
 * partitions, LUKS on an LV), so each is planned as soon as the devices under it exist.
 */
function stackSteps(c: Context) {
  type Item = { needs: string[]; plan: () => void; what: string };
  const pending: Item[] = [
    ...c.layout.md.map((array) => ({
      needs: array.members.map((m) => rename(c, m.device)),
      plan: () => mdSteps(c, array),
      what: `md array ${array.device}`,
    })),
    ...c.layout.luks.map((luks) => ({
      needs: [rename(c, luks.device)],
      plan: () => luksSteps(c, luks),
      what: `LUKS device ${luks.uuid}`,
    })),
    ...c.layout.lvm.vgs.map((vg) => ({
      needs: c.layout.lvm.pvs.filter((pv) => pv.vg === vg.name).map((pv) => rename(c, pv.device)),
      plan: () => vgSteps(c, vg),
      what: `VG ${vg.name}`,
    })),
  ];
  while (pending.length > 0) {
    const ready = pending.findIndex((item) => item.needs.every((d) => c.creator.has(d)));
    if (ready < 0) {
      const item = pending[0]!;
      const missing = item.needs.find((d) => !c.creator.has(d))!;
      creatorOf(c, missing, item.what);
      return;
    }
    pending.splice(ready, 1)[0]!.plan();
  }
}

function vgSteps(c: Context, vg: Vg) {
  const pvs = c.layout.lvm.pvs.filter((pv) => pv.vg === vg.name);
  for (const pv of pvs) {
    const device = rename(c, pv.device);
    add(c, {
      id: `pv:${device}`,
      kind: "pv",
      title: `Make ${device} an LVM PV (UUID ${pv.uuid})`,
      dependsOn: [creatorOf(c, device, `PV ${pv.uuid}`)],
      commands: [
        {
          argv: [
            "pvcreate",
            "--config",
            LVM_CONFIG,
            "-ff",
            "-y",
            "--uuid",
            pv.uuid,
            "--norestorefile",
            device,
          ],
        },
      ],
      destroys: [],
    });
  }
  const pvDevices = pvs.map((pv) => rename(c, pv.device));
  add(c, {
    id: `vg:${vg.name}`,
    kind: "vg",
    title: `Create VG ${vg.name} (extent ${formatBytes(vg.extentSizeBytes)}) on ${pvDevices.join(", ")}`,
    dependsOn: pvDevices.map((d) => `pv:${d}`),
    commands: [
      {
        argv: [
          "vgcreate",
          "--config",
          LVM_CONFIG,
          "-y",
          "-s",
          `${vg.extentSizeBytes / KiB}k`,
          vg.name,
          ...pvDevices,
        ],
      },
    ],
    destroys: [],
  });
  // Pools first: thin volumes are created inside them.
  const order = (lv: Lv) => (lv.role === "thin-pool" ? 0 : lv.role === "thin" ? 2 : 1);
  const lvs = vg.lvs.filter((lv) => !lv.hidden).sort((a, b) => order(a) - order(b));
  for (const lv of lvs) lvStep(c, vg, lv);
}

function lvStep(c: Context, vg: Vg, lv: Lv) {
  const size = c.sizing.lvSizes.get(`${vg.name}/${lv.name}`) ?? lv.sizeBytes;
  const k = (bytes: number) => `${Math.round(bytes / KiB)}k`;
  const first = lv.segments[0];
  const argv = ["lvcreate", "--config", LVM_CONFIG, "-y", "-W", "y"];
  const deps = [`vg:${vg.name}`];
  if (lv.role === "thin-pool" && lv.thinPool) {
    argv.push(
      "--type",
      "thin-pool",
      "-L",
      k(size),
      "--poolmetadatasize",
      k(lv.thinPool.metadataSizeBytes),
    );
    if (lv.thinPool.chunkSizeBytes > 0) argv.push("--chunksize", k(lv.thinPool.chunkSizeBytes));
    if (lv.thinPool.zero !== null) argv.push("-Z", lv.thinPool.zero ? "y" : "n");
    if (lv.thinPool.discards) argv.push("--discards", lv.thinPool.discards);
  } else if (lv.role === "thin" && lv.thinVolume) {
    argv.push("--type", "thin", "-V", k(size), "--thinpool", lv.thinVolume.pool);
    deps.push(`lv:${vg.name}/${lv.thinVolume.pool}`);
  } else if (lv.role === "raid" && first?.type === "raid1" && lv.raid) {
    argv.push("--type", "raid1", "-m", String(lv.raid.mirrors), "-L", k(size));
    if (lv.raid.regionSizeBytes) argv.push("--regionsize", k(lv.raid.regionSizeBytes));
  } else if (
    lv.role === "normal" &&
    lv.segments.every((s) => s.type === "linear" || s.type === "striped")
  ) {
    argv.push("-Z", "y", "-L", k(size));
    if (first?.type === "striped" && first.stripes > 1) {
      argv.push("-i", String(first.stripes));
      if (first.stripeSizeBytes) argv.push("-I", k(first.stripeSizeBytes));
    }
  } else {
    const types = lv.segments.map((s) => s.type).join(", ");
    c.warnings.push(
      `LV ${vg.name}/${lv.name} (${types}) is not recreated: Lifeboat does not rebuild this LV type yet.`,
    );
    return;
  }
  argv.push("-n", lv.name, vg.name);
  add(
    c,
    {
      id: `lv:${vg.name}/${lv.name}`,
      kind: "lv",
      title: `Create LV ${vg.name}/${lv.name} (${lv.role}, ${formatBytes(size)})`,
      dependsOn: deps,
      commands: [
        {
          argv: ["lvremove", "--config", LVM_CONFIG, "-f", `${vg.name}/${lv.name}`],
          onlyIf: ["lvs", "--config", LVM_CONFIG, `${vg.name}/${lv.name}`],
        },
        { argv },
        waitFor(lv.device),
      ],
      destroys: [],
    },
    [lv.device],
  );
}

/** Captured and planned size of the device a filesystem sits on. */
function deviceSizes(c: Context, device: string): { captured: number; planned: number } {
  for (const disk of c.layout.disks) {
    if (disk.device === device) {
      const a = c.assignments.find((x) => x.from === device)!;
      return { captured: disk.sizeBytes, planned: a.toBytes };
    }
  }
  const tables = [...c.layout.disks, ...c.layout.md].map((d) => d.partitionTable);
  for (const part of tables.flatMap((t) => t?.partitions ?? [])) {
    if (part.device === device) {
      return {
        captured: part.sizeBytes,
        planned: c.sizing.partitions.get(device)?.sizeBytes ?? part.sizeBytes,
      };
    }
  }
  for (const vg of c.layout.lvm.vgs) {
    const lv = vg.lvs.find((l) => l.device === device);
    if (lv)
      return {
        captured: lv.sizeBytes,
        planned: c.sizing.lvSizes.get(`${vg.name}/${lv.name}`) ?? lv.sizeBytes,
      };
  }
  const luks = c.layout.luks.find((l) => `/dev/mapper/${luksMapperName(l)}` === device);
  if (luks) {
    const outer = deviceSizes(c, luks.device);
    return {
      captured: outer.captured - luks.dataOffsetBytes,
      planned: outer.planned - luks.dataOffsetBytes,
    };
  }
  const md = c.layout.md.find((m) => m.device === device);
  const size = md?.sizeBytes ?? 0;
  return { captured: size, planned: size };
}

function mkfsStep(c: Context, fs: Filesystem) {
  const devices = (fs.type === "btrfs" && fs.devices.length > 0 ? fs.devices : [fs.device]).map(
    (d) => rename(c, d),
  );
  const sizes = deviceSizes(c, fs.device);
  const argv = mkfsCommand(fs, devices, sizes.planned, sizes.planned === sizes.captured);
  if (argv === null) {
    c.warnings.push(
      `${fs.device} holds a ${fs.type === "other" ? fs.fsType : fs.type} filesystem, which Lifeboat does not recreate; it is left empty.`,
    );
    return;
  }
  const id = `mkfs:${devices[0]}`;
  const what = fs.type === "swap" ? "swap" : `${fs.type} filesystem`;
  add(
    c,
    {
      id,
      kind: "mkfs",
      title: `Make ${what} on ${devices.join(", ")} (UUID ${fs.uuid ?? "new"}${fs.label ? `, label ${fs.label}` : ""})`,
      dependsOn: unique(devices.map((d) => creatorOf(c, d, `the ${what} ${fs.uuid ?? ""}`.trim()))),
      commands: [{ argv }],
      destroys: [],
    },
    [`fs:${fs.uuid ?? devices[0]}`],
  );
  if (fs.type === "btrfs") btrfsSubvolumeStep(c, fs, devices[0]!, id);
}

function btrfsSubvolumeStep(
  c: Context,
  fs: Extract<Filesystem, { type: "btrfs" }>,
  device: string,
  after: string,
) {
  const needDefault = fs.defaultSubvolume.id !== 5 && fs.defaultSubvolume.path !== "";
  // The default subvolume must exist before set-default, even if the list lacks it (an
  // imported layout may name only the default).
  const listed = fs.subvolumes.map((s) => s.path);
  const wanted =
    needDefault && !listed.includes(fs.defaultSubvolume.path)
      ? [
          ...fs.subvolumes,
          { id: fs.defaultSubvolume.id, parentId: 5, path: fs.defaultSubvolume.path, uuid: null },
        ]
      : fs.subvolumes;
  const subvolumes = [...wanted].sort(
    (a, b) => depth(a.path) - depth(b.path) || a.path.localeCompare(b.path),
  );
  if (subvolumes.length === 0) return;
  const top = `/run/lifeboat/btrfs-${fs.uuid ?? base(device)}`;
  const commands: PlanCommand[] = [
    { argv: ["mkdir", "-p", top] },
    {
      argv: ["mount", "-t", "btrfs", "-o", "subvolid=5", device, top],
      skipIf: ["mountpoint", "-q", top],
    },
  ];
  for (const sub of subvolumes) {
    const parent = sub.path.includes("/") ? sub.path.slice(0, sub.path.lastIndexOf("/")) : "";
    if (parent) commands.push({ argv: ["mkdir", "-p", `${top}/${parent}`] });
    commands.push({
      argv: ["btrfs", "subvolume", "create", `${top}/${sub.path}`],
      skipIf: ["btrfs", "subvolume", "show", `${top}/${sub.path}`],
    });
  }
  if (needDefault) {
    commands.push({
      argv: ["btrfs", "subvolume", "set-default", `${top}/${fs.defaultSubvolume.path}`],
    });
  }
  commands.push({ argv: ["umount", top] });
  add(
    c,
    {
      id: `btrfs-subvolumes:${device}`,
      kind: "btrfs-subvolumes",
      title: `Create ${subvolumes.length} btrfs subvolumes on ${device}${needDefault ? ` (default: ${fs.defaultSubvolume.path})` : ""}`,
      dependsOn: [after],
      commands,
      destroys: [],
    },
    [`subvolumes:${fs.uuid ?? device}`],
  );
}

function mountSteps(c: Context, root: string) {
  const entries = c.layout.mounts.entries
    .filter((m) => m.fsType !== "swap")
    .filter((m) => m.fsRoot === "/" || m.fsType === "btrfs")
    .sort((a, b) => depth(a.target) - depth(b.target) || a.target.localeCompare(b.target));
  const seen = new Set<string>();
  const planned: { target: string; step: string }[] = [];
  for (const m of entries) {
    if (seen.has(m.target)) continue;
    seen.add(m.target);
    const fs = c.layout.filesystems.find(
      (f) => f.device === m.source || (f.type === "btrfs" && f.devices.includes(m.source)),
    );
    if (!fs || fs.type === "other" || fs.type === "swap") continue;
    const device = rename(c, fs.device);
    const path = joinRoot(root, m.target);
    const options: string[] = [];
    if (fs.type === "btrfs") {
      const subvol = m.options.find((o) => o.startsWith("subvol="))?.slice(7) ?? m.fsRoot;
      options.push(`subvol=${subvol.replace(/^\//, "") || "/"}`);
    }
    // Two xfs filesystems with one UUID can't both be mounted; nouuid lifts that for the restore.
    if (fs.type === "xfs") options.push("nouuid");
    // FAT has no owners or modes of its own: the mount options make them up, and the kernel
    // refuses a chmod the masks don't allow. Mounting as captured lets tar set what it saved.
    if (fs.type === "vfat") options.push(...m.options.filter((o) => FAT_MOUNT_OPTION.test(o)));
    const argv = [
      "mount",
      "-t",
      fs.type,
      ...(options.length ? ["-o", options.join(",")] : []),
      device,
      path,
    ];
    const parent = planned
      .filter((p) => isUnder(m.target, p.target))
      .sort((a, b) => b.target.length - a.target.length)[0];
    const deps = [creatorOf(c, `fs:${fs.uuid ?? device}`, `the mount ${m.target}`)];
    const subvolStep = c.creator.get(`subvolumes:${fs.uuid ?? device}`);
    if (subvolStep) deps.push(subvolStep);
    if (parent) deps.push(parent.step);
    const id = `mount:${path}`;
    add(c, {
      id,
      kind: "mount",
      title: `Mount ${device} on ${path}`,
      dependsOn: deps,
      commands: [{ argv: ["mkdir", "-p", path] }, { argv, skipIf: ["mountpoint", "-q", path] }],
      destroys: [],
    });
    planned.push({ target: m.target, step: id });
  }
}

/** The vfat mount options that decide owners, modes and how names are stored. */
const FAT_MOUNT_OPTION =
  /^(uid|gid|umask|fmask|dmask|allow_utime|codepage|iocharset|shortname)=|^utf8$/;

function joinRoot(root: string, target: string): string {
  if (target === "/") return root;
  return `${root.replace(/\/$/, "")}${target}`;
}

function isUnder(path: string, parent: string): boolean {
  if (parent === "/") return path !== "/";
  return path.startsWith(`${parent}/`);
}

function depth(path: string): number {
  return path.split("/").filter(Boolean).length;
}

function base(device: string): string {
  return device.slice(device.lastIndexOf("/") + 1);
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}
