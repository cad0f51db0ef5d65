// Garbage collection as docs/repository.md describes it: holds of live upload sessions and
// the grace period protect chunks; expired sessions and old unreferenced chunks go; an
// interrupted collection is finished at start-up. Tiny times keep the test short.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../agent/client/api.ts";
import { startServer } from "../helpers/server.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-gc-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function blob() {
  const data = randomBytes(3000);
  return { id: sha(data), data, hash: sha(data) };
}
type Blob = ReturnType<typeof blob>;

const fileOf = (dataDir: string, id: string) => path.join(dataDir, "chunks", id.slice(0, 2), id);
const noStats = { bytes: 0, newBytes: 0, files: 0, seconds: 0 };

async function upload(client: ApiClient, blobs: Blob[]) {
  const { id } = await client.createSnapshot({ keyId: null, parent: null });
  for (const b of blobs) await client.putChunk(id, b.id, b.data, b.hash);
  return id;
}

async function commit(client: ApiClient, snapshot: string, blobs: Blob[]) {
  const manifest = randomBytes(50);
  await client.putManifest(snapshot, manifest, sha(manifest));
  await client.commit(snapshot, { chunks: blobs.map((b) => b.id), stats: noStats });
  return snapshot;
}

describe("garbage collection", () => {
  it("keeps chunks held by a live upload session, and collects them once it expires", async () => {
    const server = await startServer({ gcGraceMs: 0, sessionTtlMs: 1500 });
    try {
      const { client } = await server.host("web");
      // `held` was uploaded by a backup still running; `answered` was reported present by
      // /missing to that backup, after the only snapshot referencing it was forgotten.
      const answered = blob();
      const old = await commit(client, await upload(client, [answered]), [answered]);
      const held = blob();
      const running = await upload(client, [held]);
      expect(await client.missing(running, [answered.id])).toEqual([]);
      await server.admin.deleteSnapshot(old);
      const first = await server.admin.prune({ keepLast: 1 });
      expect(first.gc).toEqual({ chunks: 0, bytes: 0 });
      for (const b of [held, answered]) expect(existsSync(fileOf(server.dataDir, b.id))).toBe(true);
      // The running backup can still commit what it holds.
      const other = await upload(client, []);
      await sleep(1600);
      const second = await server.admin.prune({ keepLast: 1 });
      expect(second.gc!.chunks).toBe(2);
      for (const b of [held, answered])
        expect(existsSync(fileOf(server.dataDir, b.id))).toBe(false);
      // The expired sessions are gone; a new one sees the chunks as missing.
      await expect(commit(client, other, [])).rejects.toMatchObject({
        code: "LB_SERVER_NO_SUCH_SNAPSHOT",
      });
      const fresh = await upload(client, []);
      expect((await client.missing(fresh, [held.id, answered.id])).sort()).toEqual(
        [held.id, answered.id].sort(),
      );
    } finally {
      await server.close();
    }
  });

  it("keeps unreferenced chunks and orphan files younger than the grace period", async () => {
    const server = await startServer({ gcGraceMs: 1000, sessionTtlMs: 60_000 });
    try {
      const { client } = await server.host("web");
      const young = blob();
      const kept = blob();
      await server.admin.deleteSnapshot(
        await commit(client, await upload(client, [young]), [young]),
      );
      await commit(client, await upload(client, [kept]), [kept]);
      // Files without a catalog row, as a crash between rename and insert leaves them.
      const orphans = [blob(), blob()];
      for (const o of orphans) {
        mkdirSync(path.dirname(fileOf(server.dataDir, o.id)), { recursive: true });
        writeFileSync(fileOf(server.dataDir, o.id), o.data);
      }
      const past = new Date(Date.now() - 5000);
      utimesSync(fileOf(server.dataDir, orphans[0]!.id), past, past);
      const first = await server.admin.prune({ keepLast: 5 });
      expect(first.gc).toEqual({ chunks: 1, bytes: orphans[0]!.data.length });
      expect(existsSync(fileOf(server.dataDir, young.id))).toBe(true);
      expect(existsSync(fileOf(server.dataDir, orphans[1]!.id))).toBe(true);
      await sleep(1100);
      const second = await server.admin.prune({ keepLast: 5 });
      expect(second.gc!.chunks).toBe(2);
      expect(existsSync(fileOf(server.dataDir, young.id))).toBe(false);
      expect(existsSync(fileOf(server.dataDir, kept.id))).toBe(true);
      const events = [];
      for await (const event of server.admin.verify(true)) events.push(event);
      expect(events.at(-1)).toMatchObject({ ok: true, chunks: 1, orphanFiles: 0, orphanRows: 0 });
    } finally {
      await server.close();
    }
  });

  it("treats a chunk being deleted as missing and takes it back on upload", async () => {
    const server = await startServer({ gcGraceMs: 0 });
    try {
      const { client } = await server.host("web");
      const chunk = blob();
      await server.admin.deleteSnapshot(
        await commit(client, await upload(client, [chunk]), [chunk]),
      );
      // Collection phase 1 marked it; phase 2 has not run yet.
      server.repo.catalog.db
        .prepare("UPDATE chunks SET state = 'deleting' WHERE id = ?")
        .run(chunk.id);
      const snapshot = await upload(client, []);
      expect(await client.missing(snapshot, [chunk.id])).toEqual([chunk.id]);
      await client.putChunk(snapshot, chunk.id, chunk.data, chunk.hash);
      expect(server.repo.catalog.chunk(chunk.id)?.state).toBe("present");
      await commit(client, snapshot, [chunk]);
      await server.admin.prune({ keepLast: 1 });
      expect(await client.getChunk(chunk.id)).toEqual(chunk.data);
    } finally {
      await server.close();
    }
  });

  it("finishes a collection that a crash interrupted, at start-up", async () => {
    const dataDir = path.join(work, "interrupted");
    const first = await startServer({ dataDir, gcGraceMs: 0 });
    const { token, client } = await first.host("web");
    const [a, b, c] = [blob(), blob(), blob()];
    const gone = await commit(client, await upload(client, [a, b]), [a, b]);
    const kept = await commit(client, await upload(client, [c]), [c]);
    await first.admin.deleteSnapshot(gone);
    // Phase 1 ran (a and b marked), phase 2 removed b's file and then the process died.
    first.repo.catalog.db
      .prepare("UPDATE chunks SET state = 'deleting' WHERE id IN (?, ?)")
      .run(a.id, b.id);
    rmSync(fileOf(dataDir, b.id));
    await first.kill();

    const second = await startServer({ dataDir, gcGraceMs: 0 });
    try {
      expect(existsSync(fileOf(dataDir, a.id))).toBe(false);
      expect(second.repo.catalog.chunk(a.id)).toBeNull();
      expect(second.repo.catalog.chunk(b.id)).toBeNull();
      expect(existsSync(fileOf(dataDir, c.id))).toBe(true);
      const events = [];
      for await (const event of second.admin.verify(true)) events.push(event);
      expect(events.at(-1)).toMatchObject({
        ok: true,
        snapshots: 1,
        orphanFiles: 0,
        orphanRows: 0,
      });
      const again = new ApiClient(second.url, token);
      expect((await again.listSnapshots()).map((s) => s.id)).toEqual([kept]);
    } finally {
      await second.close();
    }
  });
});
