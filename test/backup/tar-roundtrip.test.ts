// GNU tar as backup and restore run it (root): every attribute survives create → extract, and
// an incremental chain extracts, level by level, to exactly the tree each level was made from.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readTarStream } from "../helpers/tarstream.ts";
import { extractTar } from "../../agent/restore/extract.ts";
import { buildAttributeTree, compareTrees, recordTree } from "../helpers/treecheck.ts";

const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-tar-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function createStream(dir: string, snarFile: string): Promise<Buffer> {
  const { stream, warnings } = await readTarStream({ dir, excludes: [], snarFile });
  expect(warnings).toEqual([]);
  return stream;
}

async function extract(stream: Buffer, target: string) {
  mkdirSync(target, { recursive: true });
  // Split the stream at odd places, as chunks arrive in a restore.
  const pieces = [];
  for (let at = 0; at < stream.length; at += 100_003)
    pieces.push(stream.subarray(at, at + 100_003));
  return extractTar({ target, input: pieces, incremental: true });
}

const sh = (dir: string, script: string) =>
  execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd: dir });

function members(stream: Buffer): string[] {
  return execFileSync("tar", ["-t", "-f", "-"], { input: stream, maxBuffer: 1 << 26 })
    .toString("latin1")
    .split("\n")
    .filter(Boolean);
}

describe.runIf(root)("tar round trip (root)", () => {
  const src = path.join(work, "src");
  beforeAll(() => {
    mkdirSync(src);
    buildAttributeTree(src);
  });

  it("restores hard links, sparse files, xattrs, ACLs, odd names, devices, owners and times", async () => {
    const before = recordTree(src);
    // The tree really has what it is meant to test.
    const byPath = new Map(before.map((e) => [e.path, e]));
    expect(byPath.get("setuid")).toMatchObject({ mode: 0o4755 });
    expect(byPath.get("setuid")!.xattrs["security.capability"]).toMatch(/^0x01/);
    expect(byPath.get("capable")!.xattrs["security.capability"]).toMatch(/^0x[0-9a-f]{40}$/);
    expect(byPath.get("empty-file")!.xattrs["trusted.lifeboat"]).toBe("0x01");
    expect(byPath.get("sparse.img")).toMatchObject({ sparse: true, size: 2 ** 30 + 4 });
    expect(byPath.get("huge-owner")).toMatchObject({ uid: 4000000000, gid: 4000000001 });
    expect(byPath.get("file.txt")!.linkGroup).toHaveLength(3);
    expect(byPath.get("file.txt")!.acl).toContain("user:1234:rw-");
    expect(byPath.get("dir")!.acl).toContain("default:user:1234:rwx");
    expect(byPath.get("empty-file")!.mtimeNs).toMatch(/^-/);
    expect(before.some((e) => e.path.split("/").some((c) => c.length === 255))).toBe(true);
    expect(before.some((e) => e.path.length > 500)).toBe(true);
    expect(before.some((e) => e.path.includes("\xe9"))).toBe(true);

    const stream = await createStream(src, path.join(work, "full.snar"));
    // Holes are not stored: the 1 GiB file costs a few blocks.
    expect(stream.length).toBeLessThan(2 << 20);
    const out = path.join(work, "full");
    // tar remarks on times before 1970 and far ahead, and restores them all the same.
    expect(await extract(stream, out)).toEqual({
      warnings: [
        expect.stringMatching(/^\.\/empty-file: implausibly old time stamp 1960-/),
        expect.stringMatching(/^\.\/huge-owner: time stamp 2200-.* in the future$/),
      ],
    });
    expect(compareTrees(before, recordTree(out))).toEqual([]);
  }, 120_000);

  it("the checker notices each kind of difference", async () => {
    const out = path.join(work, "changed");
    await extract(await createStream(src, path.join(work, "changed.snar")), out);
    const before = recordTree(out);
    sh(
      out,
      String.raw`
      chmod 4754 setuid
      setfattr -n user.note -v "hello World" file.txt
      setfacl -x g:2345 file.txt
      cp dir/sub/hardlink-b x && mv x dir/sub/hardlink-b
      touch -d '2019-02-03 04:05:06.987654320' dir/sub
      ln -sfn /etc/group abs-link
      chown 300000:300002 big-owner
      printf z > "$(printf 'latin1-\xe9')/$(printf 'caf\xe9')"
      rmdir empty
      `,
    );
    const differences = compareTrees(before, recordTree(out));
    for (const expected of [
      /^"setuid": mode 4755 became 4754$/,
      /^"file.txt": xattrs \{"user.note":"0x68656c6c6f20776f726c64"\} became/,
      /^"file.txt": acl .*group:2345:r--/,
      /^"dir\/sub": mtimeNs "1549166706987654321" became "1549166706987654320"$/,
      /^"dir\/sub\/hardlink-b": linkGroup/,
      /^"abs-link": link "\/etc\/passwd" became "\/etc\/group"$/,
      /^"big-owner": gid 300001 became 300002$/,
      /^"latin1-é\/café": sha256/,
      /^"empty": missing$/,
    ]) {
      expect(differences).toContainEqual(expect.stringMatching(expected));
    }
  }, 60_000);

  it("extracts an incremental chain to exactly the tree of each level", async () => {
    const snar = path.join(work, "chain.snar");
    const dest = path.join(work, "chain");
    const levels: { stream: Buffer; tree: ReturnType<typeof recordTree> }[] = [];
    const level = async () => {
      const tree = recordTree(src);
      levels.push({ stream: await createStream(src, snar), tree });
    };
    await level();
    sh(
      src,
      String.raw`
      echo changed >> dir/random.bin           # content
      chmod 640 setgid                         # mode only
      setfattr -n user.note -v changed file.txt   # xattr only
      rm fifo                                  # a file
      rm -r deep                               # a directory with content
      rmdir empty
      echo new > dir/new.txt                   # new files
      mkdir -p fresh/inner && echo n > fresh/inner/n
      mv 'with space' 'renamed dir'            # a directory rename
      mv "$(printf 'latin1-\xe9')" renamed-latin1   # a renamed directory with content
      mv capable capable-renamed               # a file rename
      rm blockdev && mkdir blockdev            # a device becomes a directory
      rm -r ro && ln -s dir ro                 # a directory becomes a symlink
      ln dir/new.txt new-hardlink
      `,
    );
    await level();
    sh(
      src,
      String.raw`
      rm -r fresh renamed-latin1
      mv 'renamed dir' 'with space'
      echo again > dir/new.txt
      `,
    );
    await level();

    // Unchanged files are not in later streams.
    const level1 = members(levels[1]!.stream);
    expect(level1).toContain("./dir/random.bin");
    expect(level1).toContain("./dir/new.txt");
    expect(level1).toContain("./file.txt"); // an xattr changes ctime, and tar goes by it
    expect(level1).not.toContain("./big-owner");
    expect(level1).not.toContain("./sparse.img");

    for (const [k, { stream, tree }] of levels.entries()) {
      await extract(stream, dest);
      expect(compareTrees(tree, recordTree(dest)), `after level ${k}`).toEqual([]);
    }
  }, 180_000);
});
