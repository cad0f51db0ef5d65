// The benchmark's fresh filesystems for restores: made, mounted, found again when a run was
// interrupted, and gone after release.
import { mkdtemp, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mountScratch, unmountLeftovers } from "../../bench/lib/scratchfs.ts";

const root = process.getuid?.() === 0;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) {
    await unmountLeftovers(dir);
    await rm(dir, { recursive: true, force: true });
  }
});

describe.runIf(root)("scratch filesystems (root)", () => {
  it("mounts an empty ext4 of its own, and release unmounts it and deletes the image", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "lifeboat-scratch-"));
    dirs.push(dir);
    const target = path.join(dir, "restore target");
    await mkdir(target);
    const fs = await mountScratch(target, 64 * 1048576);
    expect((await stat(target)).dev).not.toBe((await stat(dir)).dev);
    expect(existsSync(path.join(target, "lost+found"))).toBe(false);
    await writeFile(path.join(target, "file"), "data");
    await fs.release();
    expect(existsSync(fs.image)).toBe(false);
    expect(existsSync(path.join(target, "file"))).toBe(false);
    await fs.release();
  });

  it("finds and unmounts what an interrupted run left mounted, names with spaces too", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "lifeboat-scratch-"));
    dirs.push(dir);
    const target = path.join(dir, "run 1", "restore");
    await mkdir(target, { recursive: true });
    await mountScratch(target, 64 * 1048576);
    expect(await unmountLeftovers(dir)).toEqual([target]);
    expect((await stat(target)).dev).toBe((await stat(dir)).dev);
    expect(await unmountLeftovers(dir)).toEqual([]);
  });
});
