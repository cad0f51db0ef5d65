// A data directory that runs out of space (a 16 MiB ext4 on a loop device; root only):
// uploads get a clear 507 naming the directory, nothing half-written stays or becomes
// visible, and once prune frees space a small snapshot commits.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { startServer } from "../helpers/server.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-full-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.runIf(root)("full data directory", () => {
  it("answers 507 LB_SERVER_DISK_FULL, keeps serving, and commits again after prune", async () => {
    const image = path.join(work, "small.img");
    const mount = path.join(work, "mnt");
    mkdirSync(mount);
    execFileSync("truncate", ["-s", "16M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
    const loop = execFileSync("losetup", ["-f", "--show", image]).toString().trim();
    let mounted = false;
    let server: Awaited<ReturnType<typeof startServer>> | null = null;
    try {
      execFileSync("mount", [loop, mount]);
      mounted = true;
      const dataDir = path.join(mount, "data");
      server = await startServer({ dataDir, gcGraceMs: 0, sessionTtlMs: 1500 });
      const { client } = await server.host("web");
      const { id: snapshot } = await client.createSnapshot({ keyId: null, parent: null });
      let stored = 0;
      let refusal: unknown = null;
      while (!refusal && stored < 200) {
        const data = randomBytes(256 * 1024);
        refusal = await client.putChunk(snapshot, sha(data), data, sha(data)).then(
          () => void stored++,
          (error: unknown) => error,
        );
      }
      expect(stored).toBeGreaterThan(0);
      expect(refusal).toBeInstanceOf(LifeboatError);
      expect(refusal).toMatchObject({ code: "LB_SERVER_DISK_FULL" });
      expect((refusal as LifeboatError).message).toContain(dataDir);
      expect(readdirSync(path.join(dataDir, "tmp"))).toEqual([]);
      expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
      expect(await client.listSnapshots()).toEqual([]);

      // The abandoned session expires; prune (which works on a full disk) frees its chunks.
      await new Promise((resolve) => setTimeout(resolve, 1600));
      const pruned = await server.admin.prune({ keepLast: 1 });
      expect(pruned.gc!.chunks).toBe(stored);
      const { id: small } = await client.createSnapshot({ keyId: null, parent: null });
      const data = randomBytes(64 * 1024);
      await client.putChunk(small, sha(data), data, sha(data));
      const manifest = randomBytes(1000);
      await client.putManifest(small, manifest, sha(manifest));
      await client.commit(small, {
        chunks: [sha(data)],
        stats: { bytes: data.length, newBytes: data.length, files: 1, seconds: 0 },
      });
      expect((await client.listSnapshots()).map((s) => s.id)).toEqual([small]);
      const events = [];
      for await (const event of server.admin.verify(true)) events.push(event);
      expect(events.at(-1)).toMatchObject({ ok: true, chunks: 1 });
    } finally {
      await server?.kill();
      if (mounted) execFileSync("umount", [mount]);
      execFileSync("losetup", ["-d", loop]);
    }
  }, 60_000);
});
