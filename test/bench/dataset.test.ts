import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { changeFiles, datasetPaths, undoChanges } from "../../bench/lib/dataset.ts";
import { compareManifests, treeManifest } from "../../bench/lib/manifest.ts";

let work: string;
beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "bench-dataset-"));
  const { dir } = datasetPaths(work);
  // 300 files: 1% is 3 of them. Sizes include 0 (append only) and big ones (rewrite in the middle).
  for (let i = 0; i < 300; i++) {
    const sub = path.join(dir, `d${i % 7}`);
    await mkdir(sub, { recursive: true });
    const file = path.join(sub, `f${i}`);
    await writeFile(file, Buffer.alloc(i * 97, i % 251));
    await utimes(file, 1_700_000_000, 1_700_000_000);
  }
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function load() {
  const { dir } = datasetPaths(work);
  const manifest = await treeManifest(dir);
  return { dir, manifest, bytes: 0, files: 300 };
}

describe("changeFiles and undoChanges", () => {
  it("change 1% of the files, the same ones every time, and put them back exactly", async () => {
    const paths = datasetPaths(work);
    const dataset = await load();
    const changed = await changeFiles(work, dataset);
    expect(changed).toHaveLength(3);
    expect(existsSync(paths.undo)).toBe(true);

    const after = await treeManifest(dataset.dir);
    const problems = compareManifests(dataset.manifest, after);
    expect(problems.map((p) => p.split(":")[1]!.trim()).sort()).toEqual([...changed].sort());
    // The first is appended to (size grows), the second rewritten in place (same size).
    const first = path.join(dataset.dir, changed[0]!);
    const before0 = Number(dataset.manifest.get(changed[0]!)!.split(" ")[3]);
    expect((await stat(first)).size).toBe(before0 + 1024);

    await undoChanges(paths);
    expect(existsSync(paths.undo)).toBe(false);
    expect(compareManifests(dataset.manifest, await treeManifest(dataset.dir))).toEqual([]);

    // Deterministic: the same files again.
    expect(await changeFiles(work, dataset)).toEqual(changed);
    await undoChanges(paths);
  });

  it("does nothing without a journal", async () => {
    const dataset = await load();
    await undoChanges(datasetPaths(work));
    expect(compareManifests(dataset.manifest, await treeManifest(dataset.dir))).toEqual([]);
  });
});
