// A hostile archive never writes outside the restore target, and the restore names every
// member it refused after extracting the rest. Archives are crafted member by member; the
// whole temporary parent (target's siblings, a sentinel directory) is recorded before and
// after. Needs root (extraction runs in a private mount namespace).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tarStream from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { extractTar } from "../../agent/restore/extract.ts";
import { readTarStream } from "../helpers/tarstream.ts";
import { compareTrees, recordTree } from "../helpers/treecheck.ts";

type Member = Partial<tarStream.Header> & { name: string; body?: string };

async function archive(members: Member[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on("data", (d) => void parts.push(d as Buffer));
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  for (const { body, ...header } of members) {
    await new Promise<void>((resolve, reject) =>
      pack.entry(header, body ?? "", (error) => (error ? reject(error) : resolve())),
    );
  }
  pack.finalize();
  await done;
  return Buffer.concat(parts);
}

/**
 * A directory of an incremental stream, with the GNU.dumpdir record tar would write: entries
 * ("Yname\0"), then an empty one. Without that final NUL tar reads past the value.
 */
const dir = (name: string, dumpdir: string): Member => ({
  name,
  type: "directory",
  pax: { "GNU.dumpdir": `${dumpdir}\0` },
});
const file = (name: string, body = "pwned"): Member => ({ name, body });
const symlink = (name: string, linkname: string): Member => ({ name, type: "symlink", linkname });
const hardlink = (name: string, linkname: string): Member => ({ name, type: "link", linkname });

const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-hostile-"));
/** Sources of real streams, outside `work` so that they don't count as changes there. */
const sources = mkdtempSync(path.join(tmpdir(), "lifeboat-hostile-src-"));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(sources, { recursive: true, force: true });
});
const sentinel = path.join(work, "sentinel");
let serial = 0;

/** A fresh target beside a fresh sentinel, and a recording of everything but the target. */
function setup() {
  rmSync(sentinel, { recursive: true, force: true });
  mkdirSync(path.join(sentinel, "sub"), { recursive: true });
  writeFileSync(path.join(sentinel, "keep.txt"), "original");
  writeFileSync(path.join(sentinel, "sub", "k2"), "original");
  const name = `target-${++serial}`;
  const target = path.join(work, name);
  mkdirSync(target);
  const outside = () =>
    recordTree(work).filter((e) => e.path !== name && !e.path.startsWith(`${name}/`));
  return { target, before: outside(), outside };
}

async function extract(target: string, members: Member[], incremental = false) {
  return extractTar({ target, input: [await archive(members)], incremental }).then(
    (result) => ({ result, error: null }),
    (error: unknown) => ({ result: null, error }),
  );
}

function expectRefused(error: unknown, ...names: RegExp[]) {
  expect(error).toBeInstanceOf(LifeboatError);
  expect(error).toMatchObject({ code: "LB_RESTORE_REFUSED_MEMBERS" });
  for (const name of names) expect((error as Error).message).toMatch(name);
}

const single: [string, Member[], RegExp][] = [
  ["a ../ name", [file("../escape")], /\.\.\/escape: Member name contains '\.\.'/],
  ["a ../ in the middle", [file("a/../../escape")], /a\/\.\.\/\.\.\/escape: Member name/],
  [
    "a file through an absolute symlink",
    [symlink("s", sentinel), file("s/x")],
    /s\/x: Cannot open: Not a directory/,
  ],
  [
    "a file through a ../ symlink",
    [symlink("d", "../.."), file("d/x")],
    /d\/x: Cannot open: Not a directory/,
  ],
  [
    "a symlink chain that ends outside",
    [symlink("inner", sentinel), symlink("outer", "inner"), file("outer/keep.txt")],
    /outer\/keep.txt: Cannot open/,
  ],
  [
    "a hard link to a file outside",
    [hardlink("hl", `../../${path.basename(work)}/sentinel/keep.txt`)],
    /hl: Cannot hard link to/,
  ],
  [
    "a hard link through a symlink",
    [symlink("s", sentinel), hardlink("hl", "s/keep.txt")],
    /hl: Cannot hard link to/,
  ],
];

describe.runIf(root)("hostile archives", () => {
  it.each(single)(
    "%s: refused, nothing outside changes, the rest extracted",
    async (_, members, refused) => {
      const { target, before, outside } = setup();
      const { error } = await extract(target, [...members, file("ok.txt", "fine")]);
      expect(compareTrees(before, outside())).toEqual([]);
      expectRefused(error, refused);
      expect(recordTree(target).map((e) => e.path)).toContain("ok.txt");
    },
  );

  it("an absolute name lands inside the target, with tar's warning", async () => {
    const { target, before, outside } = setup();
    const { result } = await extract(target, [file(`${sentinel}/abs.txt`)]);
    expect(compareTrees(before, outside())).toEqual([]);
    expect(result!.warnings).toEqual(["Removing leading `/' from member names"]);
    const inside = path.relative("/", `${sentinel}/abs.txt`).split(path.sep).join("/");
    expect(recordTree(target).map((e) => e.path)).toContain(inside);
  });

  // Level 0 of a chain legitimately holds an absolute symlink to a directory outside the
  // target (like var/run -> /run); tar creates it for real at the end of that level. A
  // crafted level 1 then tries to write, delete, move and link through it.
  const level0 = () => [
    dir("./", "Dplain\0Ylnk\0Yup\0Yfilelink\0"),
    symlink("./filelink", `${sentinel}/keep.txt`),
    dir("./plain/", ""),
    symlink("./lnk", sentinel),
    symlink("./up", ".."),
  ];
  // Each is refused, or (the ../ symlink) tar replaces the symlink by a directory and the
  // file lands inside the target.
  const level1: [string, Member[], RegExp | string][] = [
    [
      "writes a file through it",
      [dir("./", "Nlnk\0Dplain\0"), dir("./plain/", ""), file("./lnk/x")],
      /lnk\/x: Cannot open: Too many levels of symbolic links/,
    ],
    [
      "writes through a ../ symlink",
      [dir("./", "Nup\0Dplain\0"), dir("./plain/", ""), file("./up/sentinel/x")],
      "up/sentinel/x",
    ],
    [
      "purges a directory through it",
      [dir("./", "Nlnk\0Dplain\0"), dir("./plain/", ""), dir("./lnk/sub/", "")],
      /lnk\/sub: .*Too many levels of symbolic links/,
    ],
    [
      "renames a directory out through it",
      [dir("./", "Nlnk\0Dplain\0R./lnk/sub\0T./stolen\0"), dir("./plain/", "")],
      /Cannot rename .*lnk\/sub.*Too many levels of symbolic links/,
    ],
    [
      "hard-links through it",
      [dir("./", "Nlnk\0Dplain\0"), dir("./plain/", ""), hardlink("./plain/h", "./lnk/keep.txt")],
      /plain\/h: Cannot hard link to .*Too many levels/,
    ],
    [
      "goes through a new relative symlink to it",
      [dir("./", "Nlnk\0Dplain\0Ya\0"), dir("./plain/", ""), symlink("./a", "lnk"), file("./a/y")],
      /a\/y: Cannot open: Too many levels/,
    ],
    [
      "writes a file where a symlink to a file outside is",
      [dir("./", "Nfilelink\0Dplain\0"), dir("./plain/", ""), file("./filelink", "replaced")],
      "filelink",
    ],
  ];

  it.each(level1)("a level 1 that %s: nothing outside changes", async (_, members, expected) => {
    const { target, before, outside } = setup();
    expect((await extract(target, level0(), true)).error).toBeNull();
    const { error } = await extract(target, [...members, file("./plain/ok.txt", "fine")], true);
    expect(compareTrees(before, outside())).toEqual([]);
    const restored = new Map(recordTree(target).map((e) => [e.path, e]));
    if (typeof expected === "string") {
      expect(error).toBeNull();
      expect(restored.get(expected)?.type).toBe("file");
    } else {
      expectRefused(error, expected);
      expect(restored.get("lnk")).toMatchObject({ type: "symlink", link: sentinel });
    }
    expect(restored.get("plain/ok.txt")?.type).toBe("file");
  });

  it("lists every refused member, not just the first", async () => {
    const { target } = setup();
    const { error } = await extract(target, [file("../x1"), file("ok.txt"), file("a/../../x2")]);
    expectRefused(error, /refused 2 member/, /\.\.\/x1/, /\.\.\/x2/);
  });

  it("keeps legitimate absolute symlinks as they are, never following them", async () => {
    const { target, before, outside } = setup();
    const { error } = await extract(target, [
      dir("etc/", ""),
      symlink("etc/alt", "/usr/bin/true"),
      symlink("etc/passwd-link", "../../../../../../etc/passwd"),
    ]);
    expect(error).toBeNull();
    expect(compareTrees(before, outside())).toEqual([]);
    const restored = new Map(recordTree(target).map((e) => [e.path, e]));
    expect(restored.get("etc/alt")).toMatchObject({ type: "symlink", link: "/usr/bin/true" });
    expect(restored.get("etc/passwd-link")).toMatchObject({
      type: "symlink",
      link: "../../../../../../etc/passwd",
    });
  });

  it("a real chain where an absolute symlink to a directory becomes a directory", async () => {
    const { target, before, outside } = setup();
    const src = path.join(sources, "src");
    mkdirSync(path.join(src, "var"), { recursive: true });
    symlinkSync(sentinel, path.join(src, "var", "run"));
    const snar = path.join(sources, "snar");
    const stream = async () =>
      (await readTarStream({ dir: src, excludes: [], snarFile: snar })).stream;
    const l0 = await stream();
    rmSync(path.join(src, "var", "run"));
    mkdirSync(path.join(src, "var", "run", "sub"), { recursive: true });
    writeFileSync(path.join(src, "var", "run", "keep.txt"), "new");
    const l1 = await stream();
    await extractTar({ target, input: [l0], incremental: true });
    await extractTar({ target, input: [l1], incremental: true });
    expect(compareTrees(recordTree(src), recordTree(target))).toEqual([]);
    expect(compareTrees(before, outside())).toEqual([]);
  });
});
