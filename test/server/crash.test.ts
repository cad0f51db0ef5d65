// The server as a child process, killed with SIGKILL in the middle of uploads and of
// commits, then restarted on the same data directory: no temp files, nothing half-visible,
// verify clean, and the chunks that were recorded are reused by the next snapshot.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../agent/client/api.ts";
import { freePort, startChildServer, type ChildServer } from "../helpers/server.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-crash-"));
const servers: ChildServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.kill().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

function blobs(count: number, size: number) {
  return Array.from({ length: count }, () => {
    const data = randomBytes(size);
    return { id: sha(data), data, hash: sha(data) };
  });
}

async function start(dataDir: string, port: number) {
  const server = await startChildServer(dataDir, {}, port);
  servers.push(server);
  return server;
}

/** Upload in batches of 16 at a time. */
async function putAll(client: ApiClient, snapshot: string, list: ReturnType<typeof blobs>) {
  for (let i = 0; i < list.length; i += 16)
    await Promise.all(
      list.slice(i, i + 16).map((b) => client.putChunk(snapshot, b.id, b.data, b.hash)),
    );
}

/** A request whose body is sent only in part, then left hanging. */
function partialPut(url: string, token: string, total: number, sent: Buffer) {
  const request = http.request(url, {
    method: "PUT",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/octet-stream",
      "content-length": String(total),
      "x-blob-sha256": "0".repeat(64),
    },
  });
  request.on("error", () => {});
  request.write(sent);
  return request;
}

async function verified(client: ApiClient) {
  const events = [];
  for await (const event of client.verify(true)) events.push(event);
  return events.at(-1)!;
}

async function until(condition: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("server killed with SIGKILL", () => {
  it("mid-upload: temp files go at restart, verify is clean, recorded chunks are reused", async () => {
    const dataDir = path.join(work, "upload");
    const port = await freePort();
    const server = await start(dataDir, port);
    const { token, client } = await server.host("web");
    const { id: snapshot } = await client.createSnapshot({ keyId: null, parent: null });
    const recorded = blobs(30, 20_000);
    await putAll(client, snapshot, recorded);
    // A manifest streaming into tmp/ and a chunk still arriving when the server dies.
    const manifest = partialPut(
      `${server.url}/v1/snapshots/${snapshot}/manifest`,
      token,
      8 << 20,
      randomBytes(2 << 20),
    );
    const chunk = partialPut(
      `${server.url}/v1/chunks/${"ab".repeat(32)}?snapshot=${snapshot}`,
      token,
      1 << 20,
      randomBytes(300_000),
    );
    await until(() => readdirSync(path.join(dataDir, "tmp")).length > 0);
    await server.kill("SIGKILL");
    manifest.destroy();
    chunk.destroy();

    const restarted = await start(dataDir, port);
    expect(readdirSync(path.join(dataDir, "tmp"))).toEqual([]);
    expect(await client.listSnapshots()).toEqual([]);
    expect(await verified(restarted.admin)).toMatchObject({ ok: true, orphanRows: 0 });
    // A new snapshot needs none of the recorded chunks again.
    const { id: next } = await client.createSnapshot({ keyId: null, parent: null });
    expect(
      await client.missing(
        next,
        recorded.map((b) => b.id),
      ),
    ).toEqual([]);
    const body = randomBytes(500);
    await client.putManifest(next, body, sha(body));
    await client.commit(next, {
      chunks: recorded.map((b) => b.id),
      stats: { bytes: 0, newBytes: 0, files: 0, seconds: 0 },
    });
    expect((await client.listSnapshots()).map((s) => s.id)).toEqual([next]);
    expect(await verified(restarted.admin)).toMatchObject({ ok: true, chunks: 30 });
    // The log is JSON on stderr, names the token file and never holds the token.
    expect(server.stderr()).toContain(path.join(dataDir, "admin.token"));
    expect(server.stderr()).not.toContain(server.adminToken);
    expect(server.stderr()).not.toContain(token);
  }, 60_000);

  it("mid-commit: a snapshot is all there or not at all, and the next commit completes it", async () => {
    const dataDir = path.join(work, "commit");
    const port = await freePort();
    let server = await start(dataDir, port);
    const { token } = await server.host("db");
    let client = new ApiClient(server.url, token);
    const chunks = blobs(1500, 64);
    const ids = chunks.map((b) => b.id);
    const stats = { bytes: 0, newBytes: 0, files: 0, seconds: 0 };
    const { id: first } = await client.createSnapshot({ keyId: null, parent: null });
    await putAll(client, first, chunks);
    const manifest = randomBytes(200);
    await client.putManifest(first, manifest, sha(manifest));
    // How long a commit of this size takes here, to spread the kills across it.
    const started = performance.now();
    await client.commit(first, { chunks: ids, stats });
    const commitMs = performance.now() - started;

    const outcomes: string[] = [];
    for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
      const { id } = await client.createSnapshot({ keyId: null, parent: null });
      expect(await client.missing(id, ids)).toEqual([]);
      await client.putManifest(id, manifest, sha(manifest));
      const committing = client.commit(id, { chunks: ids, stats }).catch(() => null);
      await new Promise((resolve) => setTimeout(resolve, fraction * commitMs));
      await server.kill("SIGKILL");
      await committing;

      // Straight from the catalog: committed exactly when every reference is there and the
      // holds are gone.
      const db = new DatabaseSync(path.join(dataDir, "catalog.sqlite"));
      const count = (sql: string) => (db.prepare(sql).get(id) as { n: number }).n;
      const state = (
        db.prepare("SELECT state FROM snapshots WHERE id = ?").get(id) as { state: string }
      ).state;
      const refs = count("SELECT COUNT(*) AS n FROM refs WHERE snapshot_id = ?");
      const holds = count("SELECT COUNT(*) AS n FROM holds WHERE snapshot_id = ?");
      db.close();
      expect({ state, refs, holds: holds > 0 }).toEqual(
        state === "committed"
          ? { state, refs: 1500, holds: false }
          : { state: "pending", refs: 0, holds: true },
      );
      outcomes.push(state);

      server = await start(dataDir, port);
      client = new ApiClient(server.url, token);
      const visible = (await client.listSnapshots()).map((s) => s.id);
      expect(visible.includes(id)).toBe(state === "committed");
      // Committing again (the agent's retry) completes it either way, uploading nothing.
      await client.commit(id, { chunks: ids, stats });
      expect((await client.listSnapshots()).map((s) => s.id)).toContain(id);
    }
    expect(readdirSync(path.join(dataDir, "tmp"))).toEqual([]);
    expect(await verified(server.admin)).toMatchObject({
      ok: true,
      snapshots: 6,
      chunks: 1500,
      orphanFiles: 0,
      orphanRows: 0,
    });
    // Which way each kill fell is timing; both outcomes are checked above.
    console.log(
      `commit of 1500 refs: ${commitMs.toFixed(1)} ms; after kill: ${outcomes.join(", ")}`,
    );
  }, 90_000);
});
