// The tar indexer and the file index against streams made by the real GNU tar.
import { execFileSync, spawnSync } from "node:child_process";
import {
  mkdtempSync,
  rmSync,
  writeFileSync,
  mkdirSync,
  symlinkSync,
  linkSync,
  chownSync,
  utimesSync,
  appendFileSync,
  unlinkSync,
  readFileSync,
  truncateSync,
  lstatSync,
  readlinkSync,
  renameSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tarCreateArgs } from "../../agent/backup/tar.ts";
import { createTarIndexer, type TarEntry } from "../../common/repository/tarindex.ts";
import {
  decodeIndex,
  encodeIndex,
  entryPath,
  mergeIndex,
  selectEntries,
  type IndexEntry,
} from "../../common/repository/fileindex.ts";

const root = process.getuid?.() === 0;
let work: string;
let src: string;

/** A stream made exactly as backup makes it (xattrs, ACLs, sparse, incremental). */
function tarStream(snar: string): Buffer {
  return execFileSync("tar", tarCreateArgs({ dir: src, excludes: [], snarFile: snar }), {
    maxBuffer: 1 << 30,
  });
}

/** Index a stream, feeding it in awkward pieces so that headers straddle pushes. */
function index(stream: Buffer, piece = 777): TarEntry[] {
  const indexer = createTarIndexer();
  for (let i = 0; i < stream.length; i += piece) indexer.push(stream.subarray(i, i + piece));
  return indexer.end();
}

/** The members GNU tar sees in [o, o+n) followed by an end-of-archive. */
function membersOf(stream: Buffer, offset: number, length: number): string[] {
  const slice = Buffer.concat([stream.subarray(offset, offset + length), Buffer.alloc(1024)]);
  const result = spawnSync("tar", ["-t", "--quoting-style=literal", "-f", "-"], { input: slice });
  expect(result.status, result.stderr.toString()).toBe(0);
  return result.stdout.toString("latin1").split("\n").filter(Boolean);
}

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "lifeboat-tarindex-"));
  src = path.join(work, "src");
  mkdirSync(path.join(src, "dir/deeper"), { recursive: true });
  writeFileSync(path.join(src, "hello.txt"), "hello\n");
  writeFileSync(path.join(src, "dir/data.bin"), Buffer.alloc(70000, 7));
  linkSync(path.join(src, "hello.txt"), path.join(src, "dir/hardlink"));
  symlinkSync("/etc/passwd", path.join(src, "dir/abs-link"));
  symlinkSync("../hello.txt", path.join(src, "dir/deeper/rel-link"));
  mkdirSync(path.join(src, "dir/deeper/deepest"));
  writeFileSync(path.join(src, "dir/deeper/deepest/inner.txt"), "inner\n");
  const long = "L".repeat(120);
  mkdirSync(path.join(src, long));
  writeFileSync(path.join(src, long, "f".repeat(200)), "long name\n");
  writeFileSync(Buffer.from(path.join(src, "latin1-\xe9.txt"), "latin1"), "not utf-8\n");
  const sparse = path.join(src, "sparse.img");
  writeFileSync(sparse, "");
  truncateSync(sparse, 64 * 1048576);
  appendFileSync(sparse, "tail");
  utimesSync(path.join(src, "hello.txt"), 1700000000.25, 1700000000.125);
  execFileSync("mkfifo", [path.join(src, "fifo")]);
  // Extended attributes (one with binary bytes) and an ACL: more pax records in the header.
  execFileSync("setfattr", ["-n", "user.note", "-v", "0sAP8ACg==", path.join(src, "hello.txt")]);
  execFileSync("setfacl", ["-m", "u:1234:r", path.join(src, "dir/data.bin")]);
  if (root) {
    writeFileSync(path.join(src, "big-owner"), "x");
    chownSync(path.join(src, "big-owner"), 300000, 300001);
    execFileSync("mknod", [path.join(src, "null-dev"), "c", "1", "3"]);
    execFileSync("mknod", [path.join(src, "loop-dev"), "b", "7", "200"]);
  }
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("tar indexer on GNU tar streams", () => {
  let level0: Buffer;
  let entries0: TarEntry[];
  let index1: IndexEntry[];

  it("finds every member, and each [offset, offset+length) is exactly that member", () => {
    level0 = tarStream(path.join(work, "snar"));
    entries0 = index(level0);
    const listed = spawnSync("tar", ["-t", "--quoting-style=literal", "-f", "-"], { input: level0 })
      .stdout.toString("latin1")
      .split("\n")
      .filter(Boolean);
    expect(entries0).toHaveLength(listed.length);
    for (const entry of entries0) {
      const members = membersOf(level0, entry.offset, entry.length);
      expect(members).toHaveLength(1);
      const name = members[0]!.replace(/^\.\//, "").replace(/\/$/, "") || ".";
      expect(name).toBe(entry.path.toString("latin1"));
    }
    // Entries tile the stream: each starts where the previous ended.
    for (let i = 1; i < entries0.length; i++)
      expect(entries0[i]!.offset).toBe(entries0[i - 1]!.offset + entries0[i - 1]!.length);
  });

  it("keeps only the entries asked for, and captures exactly their bytes", () => {
    for (const piece of [777, 512, 100_000]) {
      const indexer = createTarIndexer({
        keep: (e) => e.type === "d" || e.type === "h",
        capture: (e) => e.type === "d",
      });
      for (let i = 0; i < level0.length; i += piece) indexer.push(level0.subarray(i, i + piece));
      const kept = indexer.end();
      // Handed over: the indexer keeps none of them.
      expect(indexer.end()).toEqual([]);
      const expected = entries0.filter((e) => e.type === "d" || e.type === "h");
      expect(kept.map((e) => e.offset)).toEqual(expected.map((e) => e.offset));
      for (const entry of kept) {
        if (entry.type === "h") expect(entry.raw).toBeUndefined();
        else expect(entry.raw).toEqual(level0.subarray(entry.offset, entry.offset + entry.length));
      }
      expect(kept.some((e) => e.type === "h")).toBe(true);
    }
  });

  it("decodes types, sizes, sub-second mtimes, links, sparse real size and big owners", () => {
    const by = (p: string) => entries0.find((e) => e.path.toString("latin1") === p)!;
    expect(by("hello.txt")).toMatchObject({ type: "f", size: 6, mtime: 1700000000.125 });
    expect(by("dir/hardlink").type === "h" || by("hello.txt").type === "h").toBe(true);
    expect(by("dir/abs-link")).toMatchObject({ type: "l", link: Buffer.from("/etc/passwd") });
    expect(by("sparse.img")).toMatchObject({ type: "f", size: 64 * 1048576 + 4 });
    expect(by("sparse.img").length).toBeLessThan(64 * 1024);
    expect(by("fifo").type).toBe("p");
    expect(by("latin1-\xe9.txt").type).toBe("f");
    expect(by(".").dumpdir!.map((d) => d.control + d.name.toString("latin1"))).toContain(
      "Yhello.txt",
    );
    if (root) {
      expect(by("big-owner")).toMatchObject({ uid: 300000, gid: 300001 });
      expect(by("null-dev")).toMatchObject({ type: "c", major: 1, minor: 3 });
      expect(by("loop-dev")).toMatchObject({ type: "b", major: 7, minor: 200 });
    }
  });

  it("extracts each entry alone from its bytes with the same content and attributes", () => {
    const alone = new Map<string, string>();
    for (const entry of entries0) {
      if (entry.type === "h" || entry.type === "d") continue; // a link needs its target
      const out = path.join(work, `alone-${alone.size}`);
      mkdirSync(out);
      alone.set(entry.path.toString("latin1"), out);
      const slice = Buffer.concat([
        level0.subarray(entry.offset, entry.offset + entry.length),
        Buffer.alloc(1024),
      ]);
      execFileSync(
        "tar",
        ["-x", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-f", "-", "-C", out],
        { input: slice },
      );
      const at = (dir: string) => Buffer.concat([Buffer.from(`${dir}/`), entry.path]);
      const [got, want] = [lstatSync(at(out)), lstatSync(at(src))];
      expect([got.mode, got.uid, got.gid, got.rdev, got.mtimeMs]).toEqual([
        want.mode,
        want.uid,
        want.gid,
        want.rdev,
        want.mtimeMs,
      ]);
      if (entry.type === "f")
        expect(readFileSync(at(out)).equals(readFileSync(at(src)))).toBe(true);
      if (entry.type === "l") expect(readlinkSync(at(out))).toBe(readlinkSync(at(src)));
    }
    expect(alone.size).toBeGreaterThanOrEqual(8);
    const xattr = (dir: string) =>
      execFileSync("getfattr", ["--absolute-names", "-e", "hex", "-n", "user.note", dir]);
    const acl = (dir: string) =>
      execFileSync("getfacl", ["--omit-header", "--absolute-names", dir]);
    const hello = path.join(alone.get("hello.txt")!, "hello.txt");
    const data = path.join(alone.get("dir/data.bin")!, "dir/data.bin");
    expect(xattr(hello).toString()).toContain("0x00ff000a");
    expect(acl(data).toString()).toContain("user:1234:r--");
  });

  it("does not depend on how the stream is split", () => {
    const whole = index(level0, level0.length);
    const bytes = index(level0, 1);
    expect(bytes.map((e) => [e.offset, e.length])).toEqual(whole.map((e) => [e.offset, e.length]));
  });

  it("merges an incremental stream: unchanged names carried over, deleted ones gone", () => {
    const first = mergeIndex(null, entries0, 0).entries;
    appendFileSync(path.join(src, "dir/data.bin"), "more");
    unlinkSync(path.join(src, "fifo"));
    rmSync(path.join(src, "dir/deeper"), { recursive: true });
    writeFileSync(path.join(src, "dir/new.txt"), "new\n");
    const level1 = tarStream(path.join(work, "snar"));
    const { entries: merged, unresolved } = mergeIndex(first, index(level1), 1);
    expect(unresolved).toEqual([]);
    index1 = merged;
    const names = (list: IndexEntry[]) => list.map((e) => entryPath(e).toString("latin1")).sort();
    const onDisk = execFileSync("find", [".", "-mindepth", "0"], { cwd: src })
      .toString("latin1")
      .split("\n")
      .filter(Boolean)
      .map((p) => (p === "." ? "." : p.replace(/^\.\//, "")))
      .sort();
    expect(names(merged)).toEqual(onDisk);
    const at = (p: string) => merged.find((e) => entryPath(e).toString("latin1") === p)!;
    expect(at("dir/data.bin").k).toBe(1);
    expect(at("sparse.img").k).toBe(0);
    // A carried-over entry still points at bytes in stream 0 that hold just it.
    const sparse = at("sparse.img");
    expect(membersOf(level0, sparse.o, sparse.n)).toHaveLength(1);
    // Round trip through NDJSON.
    expect(decodeIndex(encodeIndex(merged))).toEqual(merged);
    const lines = encodeIndex(merged).toString().split("\n");
    const cut = Buffer.from([lines[0], lines[1]!.slice(0, 20)].join("\n"));
    expect(() => decodeIndex(cut)).toThrow(/line 2 is not an index entry/);
    const noSize = Buffer.from(lines[0]!.replace(/"s":\d+,/, ""));
    expect(() => decodeIndex(noSize)).toThrow(/line 1 .*s: /);
    // Single-file selection picks the hard link's target too, in extraction order.
    const picked = selectEntries(merged, ["dir"]);
    expect(picked.some((e) => e.p === "dir/new.txt")).toBe(true);
    for (let i = 1; i < picked.length; i++) {
      const [a, b] = [picked[i - 1]!, picked[i]!];
      expect(a.k < b.k || (a.k === b.k && a.o < b.o)).toBe(true);
    }
    expect(() => selectEntries(merged, ["no/such/file"])).toThrow(/no\/such\/file/);
    // Extract one file from the bytes the index points at, and get its content back.
    const file = at("dir/data.bin");
    const out = path.join(work, "one");
    mkdirSync(out);
    const slice = Buffer.concat([level1.subarray(file.o, file.o + file.n), Buffer.alloc(1024)]);
    execFileSync("tar", ["-x", "-f", "-", "-C", out], { input: slice });
    expect(readFileSync(path.join(out, "dir/data.bin"))).toEqual(
      readFileSync(path.join(src, "dir/data.bin")),
    );
  });

  it("reports the contents of a renamed directory as unresolved, and keeps no stale names", () => {
    // GNU tar records the rename (R/T) and calls the moved files unchanged ('N'); the parent
    // index only knows their old names. Backup turns this into a full stream next time.
    const long = "L".repeat(120);
    renameSync(path.join(src, long), path.join(src, "renamed"));
    const level2 = tarStream(path.join(work, "snar"));
    const entries2 = index(level2);
    const top = entries2.find((e) => e.path.toString() === ".")!;
    expect(top.dumpdir!.map((d) => d.control + d.name.toString())).toEqual(
      expect.arrayContaining([`R./${long}`, "T./renamed"]),
    );
    const { entries, unresolved } = mergeIndex(index1, entries2, 2);
    expect(unresolved).toEqual([`renamed/${"f".repeat(200)}`]);
    const names = entries.map((e) => entryPath(e).toString("latin1"));
    expect(names).toContain("renamed");
    expect(names.some((p) => p.startsWith(long))).toBe(false);
  });
});

describe("file index in memory", () => {
  const entry = (name: Buffer, type: TarEntry["type"], dumpdir: string[] | null = null) =>
    ({
      path: name,
      type,
      size: 0,
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: 1700000000.5,
      offset: 0,
      length: 512,
      link: null,
      dumpdir: dumpdir && dumpdir.map((n) => ({ control: "N", name: Buffer.from(n, "latin1") })),
    }) satisfies TarEntry;
  // ASCII, UTF-8 beyond ASCII, and bytes that are not UTF-8 at all, around the same prefix.
  const names = [
    Buffer.from("b"),
    Buffer.from("a/\u00fc", "utf8"),
    Buffer.from([0x61, 0x2f, 0xff]),
    // Not UTF-8 either, and before "a/\u00fc" in byte order though after it as a character.
    Buffer.from([0x61, 0x2f, 0xc4]),
    Buffer.from("a/z"),
    Buffer.from("a"),
    Buffer.from("Z"),
  ];

  it("orders entries by their raw bytes, whatever the names' encoding", () => {
    const types: TarEntry["type"][] = ["f", "f", "f", "f", "f", "d", "f"];
    const { entries } = mergeIndex(
      null,
      names.map((n, i) => entry(n, types[i]!)),
      0,
    );
    const raw = entries.map((e) => entryPath(e));
    expect(raw.map((b) => b.toString("hex"))).toEqual(
      [...names].sort(Buffer.compare).map((b) => b.toString("hex")),
    );
  });

  it("carries unchanged names of every encoding over from the parent index", () => {
    const types: TarEntry["type"][] = ["f", "f", "f", "f", "f", "d", "f"];
    const parent = mergeIndex(
      null,
      names.map((n, i) => entry(n, types[i]!)),
      0,
    ).entries;
    // Level 1: the root and "a" are listed again; "a"'s three children are unchanged, "Z" is gone.
    const children = names.filter((n) => n.length > 2).map((n) => n.subarray(2).toString("latin1"));
    const level1 = [
      entry(Buffer.from("."), "d", ["a", "b"]),
      entry(Buffer.from("a"), "d", children),
    ];
    const { entries, unresolved } = mergeIndex(parent, level1, 1);
    expect(unresolved).toEqual([]);
    const found = entries.map((e) => [entryPath(e).toString("hex"), e.k]);
    expect(found).toEqual(
      [Buffer.from("."), ...names.filter((n) => n.toString() !== "Z")]
        .sort(Buffer.compare)
        .map((n) => [n.toString("hex"), n.length === 1 && n[0] !== 0x62 ? 1 : 0]),
    );
  });

  it("encodes an index of many pieces exactly as one line after another", () => {
    const many = Array.from({ length: 30000 }, (_, i) => ({
      p: `usr/share/doc/package-${String(i).padStart(6, "0")}/changelog.Debian.gz`,
      t: "f" as const,
      s: i,
      m: 0o644,
      u: 0,
      g: 0,
      mt: 1700000000.25,
      k: 0,
      o: i * 1024,
      n: 1024,
    }));
    const bytes = encodeIndex(many);
    expect(bytes.length).toBeGreaterThan(2 * 1048576);
    expect(bytes.toString()).toBe(many.map((e) => `${JSON.stringify(e)}\n`).join(""));
    expect(decodeIndex(bytes)).toEqual(many);
    expect(encodeIndex([]).length).toBe(0);
  });
});
