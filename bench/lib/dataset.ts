// The benchmark dataset: a Debian 12 root filesystem, 200 MiB of incompressible data in a
// few files and 20,000 small files. Built once under .work/bench/, deterministic, and
// checked against its manifest at the start of every run. The third backup needs 1% of the
// files changed; that change is journaled first and undone afterwards (or at the next start),
// so the cached dataset stays the same from run to run.

import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, rename, rm, stat, truncate, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { environmentError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import { writeFileAtomic } from "../../common/fs.ts";
import { MiB } from "../../common/units.ts";
import { ensureDebianRootfs } from "../../vm-tests/lib/debootstrap.ts";
import { compareManifests, type Manifest, treeManifest } from "./manifest.ts";
import { Keystream, Prng, TextGenerator } from "./random.ts";

/** minbase plus these: about 450 MB unpacked, a small but real server. */
export const ROOTFS_PACKAGES = [
  "linux-image-cloud-amd64",
  "systemd-sysv",
  "udev",
  "grub-pc",
  "initramfs-tools",
  "openssh-server",
  "python3",
  "iproute2",
  "ca-certificates",
  "less",
  "vim-tiny",
  "git",
  "curl",
] as const;

export const RANDOM_FILES = [
  { name: "random/disk-image.bin", bytes: 96 * MiB },
  { name: "random/archive.bin", bytes: 64 * MiB },
  { name: "random/media/video.bin", bytes: 32 * MiB },
  { name: "random/media/photo.bin", bytes: 8 * MiB },
] as const;

export const SMALL_FILES = { count: 20_000, maxBytes: 16 * 1024, perDir: 50, fanout: 20 };

/** The share of regular files the third backup finds changed. */
export const CHANGED_SHARE = 0.01;

/** Bump when anything above or the way files are generated changes. */
const RECIPE_VERSION = 2;

/** Every generated file gets this mtime (2026-01-01T00:00:00Z), so the manifest is stable. */
const FIXED_MTIME = 1_767_225_600;

export interface Dataset {
  dir: string;
  manifest: Manifest;
  /** Sum of regular file sizes. */
  bytes: number;
  files: number;
}

const DatasetRecord = z.object({
  recipe: z.string(),
  entries: z.array(z.tuple([z.string(), z.string()])),
});

const UndoJournal = z.object({
  dataset: z.string(),
  changes: z.array(
    z.object({
      path: z.string(),
      /** The file's size before; an append is undone by truncating back to it. */
      size: z.number().int().nonnegative(),
      /** For a rewrite: where, and the original bytes (base64). */
      offset: z.number().int().nonnegative().optional(),
      original: z.string().optional(),
      atimeMs: z.number(),
      mtimeMs: z.number(),
    }),
  ),
});
type UndoJournal = z.infer<typeof UndoJournal>;

export interface DatasetPaths {
  dir: string;
  record: string;
  undo: string;
}

export function datasetPaths(workDir: string): DatasetPaths {
  return {
    dir: path.join(workDir, "dataset"),
    record: path.join(workDir, "dataset.json"),
    undo: path.join(workDir, "dataset-undo.json"),
  };
}

function recipeKey(rootfsKey: string): string {
  return JSON.stringify({ version: RECIPE_VERSION, rootfsKey, RANDOM_FILES, SMALL_FILES });
}

/**
 * The dataset, built if needed and verified either way: a journaled change from an
 * interrupted run is undone, then the tree must match the manifest recorded when it was built.
 */
export async function ensureDataset(workDir: string, say: (line: string) => void) {
  const paths = datasetPaths(workDir);
  await undoChanges(paths);
  const rootfs = await ensureDebianRootfs({ packages: ROOTFS_PACKAGES, log: say });
  const recipe = recipeKey(rootfs.key);
  if (existsSync(paths.record) && existsSync(paths.dir)) {
    const record = DatasetRecord.parse(JSON.parse(readFileSync(paths.record, "utf8")));
    if (record.recipe === recipe) {
      say("checking the cached dataset against its manifest");
      const expected: Manifest = new Map(record.entries);
      const problems = compareManifests(expected, await treeManifest(paths.dir));
      if (problems.length > 0) {
        throw environmentError(
          "LB_BENCH_DATASET_CHANGED",
          `The cached dataset in ${paths.dir} no longer matches its manifest:\n  ${problems.join("\n  ")}`,
          `Delete ${paths.dir} and ${paths.record}; the next run builds it again.`,
        );
      }
      return describe(paths.dir, expected);
    }
    say("the dataset recipe changed: building it again");
  }

  await rm(paths.record, { force: true });
  await rm(paths.dir, { recursive: true, force: true });
  const staging = `${paths.dir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  try {
    await mkdir(path.join(staging, "rootfs"), { recursive: true });
    say("unpacking the root filesystem");
    await runTool([
      "tar",
      "--zstd",
      "--numeric-owner",
      "--xattrs",
      "--xattrs-include=*",
      "-C",
      path.join(staging, "rootfs"),
      "-xf",
      rootfs.tarball,
    ]);
    say("writing 200 MiB of random data");
    await writeRandomFiles(staging);
    say(`writing ${SMALL_FILES.count} small files`);
    await writeSmallFiles(staging);
    await rename(staging, paths.dir);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  say("recording the dataset's manifest");
  const manifest = await treeManifest(paths.dir);
  await writeFileAtomic(paths.record, JSON.stringify({ recipe, entries: [...manifest] }));
  return describe(paths.dir, manifest);
}

function describe(dir: string, manifest: Manifest): Dataset {
  let bytes = 0;
  let files = 0;
  for (const line of manifest.values()) {
    if (!line.startsWith("f ")) continue;
    files++;
    bytes += Number(line.split(" ")[3]);
  }
  return { dir, manifest, bytes, files };
}

async function writeRandomFiles(root: string) {
  for (const { name, bytes } of RANDOM_FILES) {
    const file = path.join(root, name);
    await mkdir(path.dirname(file), { recursive: true });
    const stream = new Keystream(`random:${name}`);
    const handle = await open(file, "w", 0o644);
    try {
      for (let left = bytes; left > 0; left -= 4 * MiB) {
        await handle.write(stream.bytes(Math.min(left, 4 * MiB)));
      }
    } finally {
      await handle.close();
    }
    await utimes(file, FIXED_MTIME, FIXED_MTIME);
  }
}

/** Half text-like (compressible), half random; sizes spread evenly over 0..16 KiB. */
async function writeSmallFiles(root: string) {
  const prng = new Prng("small");
  const random = new Keystream("small:random");
  const text = new TextGenerator("small");
  const { count, maxBytes, perDir, fanout } = SMALL_FILES;
  for (let i = 0; i < count; i++) {
    const dirIndex = Math.floor(i / perDir);
    const dir = path.join(
      root,
      "small",
      `d${String(Math.floor(dirIndex / fanout)).padStart(2, "0")}`,
      `d${String(dirIndex % fanout).padStart(2, "0")}`,
    );
    if (i % perDir === 0) await mkdir(dir, { recursive: true });
    const size = prng.below(maxBytes + 1);
    const isText = prng.below(2) === 0;
    const file = path.join(dir, `f${String(i).padStart(5, "0")}.${isText ? "txt" : "bin"}`);
    await writeFile(file, isText ? text.text(size) : random.bytes(size), { mode: 0o644 });
    await utimes(file, FIXED_MTIME, FIXED_MTIME);
  }
}

/**
 * Changes CHANGED_SHARE of the regular files, chosen deterministically: every other one gets
 * 1 KiB appended, the rest have 4 KiB in the middle rewritten (same size). The journal to
 * undo it is written before the first byte changes. Returns the changed paths.
 */
export async function changeFiles(workDir: string, dataset: Dataset): Promise<string[]> {
  const paths = datasetPaths(workDir);
  const files = [...dataset.manifest].filter(([, line]) => line.startsWith("f ")).map(([p]) => p);
  const count = Math.ceil(files.length * CHANGED_SHARE);
  const chosen = new Prng("change").sample(files.length, count).map((i) => files[i]!);
  const bytes = new Keystream("change:bytes");
  const text = new TextGenerator("change");

  const plan: { path: string; append?: Buffer; offset?: number; data?: Buffer }[] = [];
  const journal: UndoJournal = { dataset: paths.dir, changes: [] };
  for (const [n, rel] of chosen.entries()) {
    const file = path.join(paths.dir, rel);
    const info = await stat(file);
    const change = { path: rel, size: info.size, atimeMs: info.atimeMs, mtimeMs: info.mtimeMs };
    if (n % 2 === 0 || info.size === 0) {
      plan.push({ path: file, append: text.text(1024) });
      journal.changes.push(change);
    } else {
      const length = Math.min(4096, info.size);
      const offset = Math.floor((info.size - length) / 2);
      const original = Buffer.alloc(length);
      const handle = await open(file, "r");
      try {
        await handle.read(original, 0, length, offset);
      } finally {
        await handle.close();
      }
      plan.push({ path: file, offset, data: bytes.bytes(length) });
      journal.changes.push({ ...change, offset, original: original.toString("base64") });
    }
  }
  await writeFileAtomic(paths.undo, JSON.stringify(journal));
  for (const step of plan) {
    const handle = await open(step.path, "r+");
    try {
      if (step.append !== undefined) {
        await handle.write(step.append, 0, step.append.length, (await handle.stat()).size);
      } else if (step.data !== undefined && step.offset !== undefined) {
        await handle.write(step.data, 0, step.data.length, step.offset);
      }
    } finally {
      await handle.close();
    }
  }
  return chosen;
}

/** Puts back what changeFiles changed, if a journal says it did. Idempotent. */
export async function undoChanges(paths: DatasetPaths) {
  if (!existsSync(paths.undo)) return;
  const journal = UndoJournal.parse(JSON.parse(readFileSync(paths.undo, "utf8")));
  // Newest first, so a file chosen twice through two hard links ends up as it began.
  for (const change of [...journal.changes].reverse()) {
    const file = path.join(journal.dataset, change.path);
    if (change.original !== undefined && change.offset !== undefined) {
      const original = Buffer.from(change.original, "base64");
      const handle = await open(file, "r+");
      try {
        await handle.write(original, 0, original.length, change.offset);
      } finally {
        await handle.close();
      }
    } else {
      await truncate(file, change.size);
    }
    await utimes(file, change.atimeMs / 1000, change.mtimeMs / 1000);
  }
  await rm(paths.undo);
}
