// Level 3's expected hashes, read out of a real snapshot through its file index.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../agent/backup/backup.ts";
import { backupOptions } from "../helpers/backup.ts";
import { loadManifest } from "../../agent/restore/restore.ts";
import { deriveKeys } from "../../common/repository/keys.ts";
import { sampleFileHashes } from "../../server/drills/samples.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-samples-"));
const keys = deriveKeys(Buffer.alloc(32, 3));
let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

describe("sampled file hashes", () => {
  it("hashes regular files from the snapshot's own bytes, skipping empty, big and sparse ones", async () => {
    const tree = path.join(work, "tree");
    mkdirSync(path.join(tree, "usr", "bin"), { recursive: true });
    for (let i = 0; i < 6; i++) {
      writeFileSync(
        path.join(tree, "usr", "bin", `tool${i}`),
        `#!/bin/sh\necho ${i}\n`.repeat(i * 300 + 1),
      );
    }
    writeFileSync(path.join(tree, "usr", "empty"), "");
    writeFileSync(path.join(tree, "usr", "big"), Buffer.alloc(5 * 1024 * 1024, 1));
    execFileSync("truncate", ["-s", "3M", path.join(tree, "usr", "sparse")]);
    writeFileSync(path.join(tree, "usr", "sparse"), "head", { flag: "r+" });
    const { client } = await server.host("samples");
    const backup = await runBackup(
      backupOptions({
        client,
        host: "samples",
        keys,
        paths: [tree],
        stateDir: path.join(work, "state"),
      }),
    );
    const manifest = await loadManifest(client, backup.id, keys);
    const hashes = await sampleFileHashes({
      source: client,
      manifest,
      keys,
      count: 50,
      seed: "drill-1",
      trees: [`${tree}/`],
    });
    const expected = Object.fromEntries(
      [0, 1, 2, 3, 4, 5].map((i) => {
        const file = path.join(tree, "usr", "bin", `tool${i}`);
        return [file, sha(file)];
      }),
    );
    expect(Object.fromEntries(hashes)).toEqual(expected);
    const few = await sampleFileHashes({
      source: client,
      manifest,
      keys,
      count: 2,
      seed: "drill-1",
      trees: [`${tree}/`],
    });
    const again = await sampleFileHashes({
      source: client,
      manifest,
      keys,
      count: 2,
      seed: "drill-1",
      trees: [`${tree}/`],
    });
    expect([...few.keys()]).toEqual([...again.keys()]);
    expect(few.size).toBe(2);
  });
});
