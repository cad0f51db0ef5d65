// A hostile archive never writes outside the restore target, and the restore says which
// members it refused.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tarStream from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { extractTar } from "../../agent/restore/extract.ts";
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

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-hostile-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cases: [string, Member[]][] = [
  ["a ../ name", [{ name: "../escape.txt", body: "pwned" }]],
  ["a ../ in the middle", [{ name: "a/../../escape.txt", body: "pwned" }]],
  ["an absolute name", [{ name: `${work}/sentinel/abs.txt`, body: "pwned" }]],
  [
    "a file written through an absolute symlink",
    [
      { name: "s", type: "symlink", linkname: `${work}/sentinel` },
      { name: "s/through.txt", body: "pwned" },
    ],
  ],
  [
    "a file written through a ../ symlink",
    [
      { name: "d", type: "symlink", linkname: "../sentinel" },
      { name: "d/through.txt", body: "pwned" },
    ],
  ],
  [
    "a symlink chain that ends outside",
    [
      { name: "inner", type: "symlink", linkname: `${work}/sentinel` },
      { name: "outer", type: "symlink", linkname: "inner" },
      { name: "outer/chain.txt", body: "pwned" },
    ],
  ],
  [
    "a hard link to a file outside",
    [{ name: "hl", type: "link", linkname: "../sentinel/keep.txt" }],
  ],
];

describe("hostile archives", () => {
  it.each(cases)("%s: nothing outside the target changes", async (name, members) => {
    const sentinel = path.join(work, "sentinel");
    rmSync(sentinel, { recursive: true, force: true });
    mkdirSync(sentinel);
    writeFileSync(path.join(sentinel, "keep.txt"), "original");
    const target = path.join(work, `target-${name.replace(/\W+/g, "-")}`);
    mkdirSync(target);
    const before = recordTree(work).filter((e) => !e.path.startsWith(path.basename(target)));
    let error: unknown = null;
    try {
      await extractTar({ target, input: [await archive(members)], incremental: false });
    } catch (caught) {
      error = caught;
    }
    const after = recordTree(work).filter((e) => !e.path.startsWith(path.basename(target)));
    expect(compareTrees(before, after)).toEqual([]);
    // Either tar refused the member (and we say so) or it landed inside the target.
    if (error) {
      expect(error).toBeInstanceOf(LifeboatError);
      expect((error as LifeboatError).code).toBe("LB_RESTORE_REFUSED_MEMBERS");
    }
  });

  it("keeps a legitimate absolute symlink as a symlink, without following it", async () => {
    const target = path.join(work, "legit");
    mkdirSync(target);
    await extractTar({
      target,
      input: [await archive([{ name: "etc/alt", type: "symlink", linkname: "/usr/bin/true" }])],
      incremental: false,
    });
    const entry = recordTree(target).find((e) => e.path === "etc/alt")!;
    expect(entry).toMatchObject({ type: "symlink", link: "/usr/bin/true" });
  });

  it("reports every refused member by name", async () => {
    const target = path.join(work, "report");
    mkdirSync(target);
    const error = await extractTar({
      target,
      input: [
        await archive([
          { name: "../x1", body: "a" },
          { name: "ok.txt", body: "b" },
        ]),
      ],
      incremental: false,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LifeboatError);
    expect((error as LifeboatError).message).toContain("../x1");
    expect(recordTree(target).map((e) => e.path)).toContain("ok.txt");
  });
});
