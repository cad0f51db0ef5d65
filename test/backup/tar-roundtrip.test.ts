// GNU tar as backup and restore run it: every attribute survives create → extract, and an
// incremental chain extracts to exactly the tree of its last level.
import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
  unlinkSync,
  renameSync,
  appendFileSync,
  chmodSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spawnTarCreate } from "../../agent/backup/tar.ts";
import { extractTar } from "../../agent/restore/extract.ts";
import { buildAttributeTree, compareTrees, recordTree } from "../helpers/treecheck.ts";

const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-tar-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function roundTrip(src: string, snar: string, dest: string) {
  const tar = spawnTarCreate({ dir: src, excludes: [], snarFile: snar });
  const parts: Buffer[] = [];
  for await (const data of tar.stdout) parts.push(data as Buffer);
  await tar.done;
  const stream = Buffer.concat(parts);
  mkdirSync(dest, { recursive: true });
  await extractTar({ target: dest, input: [stream], incremental: true });
  return stream;
}

describe.runIf(root)("tar round trip (root)", () => {
  const src = path.join(work, "src");
  mkdirSync(src);
  buildAttributeTree(src);
  const snar = path.join(work, "snar");

  it("restores hard links, sparse files, xattrs, ACLs, odd names, devices, owners and times", async () => {
    const before = recordTree(src);
    await roundTrip(src, snar, path.join(work, "full"));
    const after = recordTree(path.join(work, "full"));
    expect(compareTrees(before, after)).toEqual([]);
    // The checker itself notices a change.
    chmodSync(path.join(work, "full", "file.txt"), 0o600);
    expect(compareTrees(before, recordTree(path.join(work, "full")))).toContain(
      '"file.txt": mode 436 became 384',
    );
    const byPath = new Map(before.map((e) => [e.path, e]));
    expect(byPath.get("setuid")!.xattrs["security.capability"]).toMatch(/^0x01/);
    expect(byPath.get("sparse.img")!.sparse).toBe(true);
    expect(byPath.get("big-owner")!.uid).toBe(300000);
  }, 60_000);

  it("extracts an incremental chain to exactly the last level's tree", async () => {
    const dest = path.join(work, "chain");
    const level0 = await roundTrip(src, snar + "-chain", dest);
    expect(level0.length).toBeGreaterThan(0);
    appendFileSync(path.join(src, "dir/random.bin"), "changed");
    unlinkSync(path.join(src, "fifo"));
    rmSync(path.join(src, "empty"), { recursive: true });
    writeFileSync(path.join(src, "dir/new.txt"), "new\n");
    renameSync(path.join(src, "with space"), path.join(src, "renamed dir"));
    const level1 = await roundTrip(src, snar + "-chain", dest);
    // Unchanged files are not in the level-1 stream at all.
    const listed = execFileSync("tar", ["-t", "-f", "-"], { input: level1 }).toString();
    expect(listed).toContain("./dir/random.bin");
    expect(listed).not.toContain("./file.txt");
    expect(listed).not.toContain("./sparse.img");
    expect(compareTrees(recordTree(src), recordTree(dest))).toEqual([]);
  }, 60_000);
});

describe("extract refuses what it must", () => {
  it("names a missing target", async () => {
    await expect(
      extractTar({
        target: path.join(work, "nope"),
        input: [Buffer.alloc(1024)],
        incremental: false,
      }),
    ).rejects.toMatchObject({ code: "LB_RESTORE_TARGET" });
  });

  it("passes on a failing input and stops tar", async () => {
    async function* failing() {
      yield Buffer.alloc(512);
      throw new Error("chunk 1234 is damaged");
    }
    const dest = path.join(work, "failing");
    mkdirSync(dest);
    await expect(
      extractTar({ target: dest, input: failing(), incremental: false }),
    ).rejects.toThrow("chunk 1234 is damaged");
    expect(execFileSync("ls", ["-A", dest]).toString()).toBe("");
  });
});
