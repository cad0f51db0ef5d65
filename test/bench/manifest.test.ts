import { chmod, cp, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { compareManifests, treeManifest } from "../../bench/lib/manifest.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "bench-manifest-"));
  const tree = path.join(dir, "a");
  await mkdir(path.join(tree, "sub/deeper"), { recursive: true });
  await writeFile(path.join(tree, "sub/one.txt"), "one\n");
  await writeFile(path.join(tree, "sub/deeper/two.bin"), Buffer.alloc(3000, 7));
  await writeFile(path.join(tree, "empty"), "");
  await symlink("sub/one.txt", path.join(tree, "link"));
  await cp(tree, path.join(dir, "b"), {
    recursive: true,
    preserveTimestamps: true,
    verbatimSymlinks: true,
  });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("treeManifest", () => {
  it("describes every path, with content hashes", async () => {
    const manifest = await treeManifest(path.join(dir, "a"));
    expect([...manifest.keys()]).toEqual([
      "empty",
      "link",
      "sub",
      "sub/deeper",
      "sub/deeper/two.bin",
      "sub/one.txt",
    ]);
    expect(manifest.get("link")).toMatch(/^l \d+:\d+ -> sub\/one.txt$/);
    // sha256("one\n")
    expect(manifest.get("sub/one.txt")).toMatch(
      / 4 \d+ 2c8b08da5ce60398e1f19af0e5dccc744df274b826abe585eaba68c525434806$/,
    );
  });

  it("finds equal copies equal", async () => {
    const a = await treeManifest(path.join(dir, "a"));
    const b = await treeManifest(path.join(dir, "b"));
    expect(compareManifests(a, b)).toEqual([]);
  });

  it("names changed content, mode, mtime, missing and unexpected paths", async () => {
    const b = path.join(dir, "b");
    await writeFile(path.join(b, "sub/deeper/two.bin"), Buffer.alloc(3000, 8));
    await utimes(path.join(b, "sub/deeper/two.bin"), 1000, 1000);
    await utimes(path.join(dir, "a", "sub/deeper/two.bin"), 1000, 1000);
    await chmod(path.join(b, "sub/one.txt"), 0o600);
    await rm(path.join(b, "empty"));
    await writeFile(path.join(b, "extra"), "x");
    const problems = compareManifests(
      await treeManifest(path.join(dir, "a")),
      await treeManifest(b),
    );
    expect(problems).toHaveLength(4);
    expect(problems).toContain("missing: empty");
    expect(problems).toContain("unexpected: extra");
    expect(problems.some((p) => p.startsWith("differs: sub/deeper/two.bin"))).toBe(true);
    expect(problems.some((p) => p.startsWith('differs: sub/one.txt: expected "f 644'))).toBe(true);
  });

  it("caps the list of differences", () => {
    const expected = new Map(Array.from({ length: 30 }, (_, i) => [`f${i}`, "f 644"] as const));
    const problems = compareManifests(expected, new Map(), 5);
    expect(problems).toHaveLength(6);
    expect(problems[5]).toBe("... and 25 more differences");
  });
});
