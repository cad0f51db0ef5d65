// The server through its HTTP API, on loopback: auth and isolation, atomic commits, garbage
// collection, damage detection, and malformed input.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync, readdirSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../agent/client/api.ts";
import { readChunk } from "../../agent/client/local.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** An opaque blob as the server sees it: any bytes, under an id. */
function blob(size = 1000) {
  const data = randomBytes(size);
  return { id: sha(data), data, hash: sha(data) };
}

async function backupOf(client: ApiClient, blobs: ReturnType<typeof blob>[]) {
  const { id } = await client.createSnapshot({ keyId: null, parent: null });
  const missing = new Set(
    await client.missing(
      id,
      blobs.map((b) => b.id),
    ),
  );
  await Promise.all(
    blobs.filter((b) => missing.has(b.id)).map((b) => client.putChunk(id, b.id, b.data, b.hash)),
  );
  const manifest = randomBytes(100);
  await client.putManifest(id, manifest, sha(manifest));
  await client.commit(id, {
    chunks: blobs.map((b) => b.id),
    stats: { bytes: 1, newBytes: 1, files: 1, seconds: 0 },
    summary: { manifestId: sha(manifest) },
  });
  return id;
}

let server: TestServer & { logs: string[] };
let a: ApiClient;
let b: ApiClient;
let tokenA: string;

beforeAll(async () => {
  server = await startServer({ gcGraceMs: 0, sessionTtlMs: 60_000 });
  const hostA = await server.host("host-a");
  tokenA = hostA.token;
  a = hostA.client;
  b = (await server.host("host-b")).client;
});
afterAll(() => server.close());

describe("auth and isolation", () => {
  it("writes the admin token 0600 and never logs a token", async () => {
    const file = path.join(server.dataDir, "admin.token");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await a.listSnapshots().catch(() => {});
    await new ApiClient(server.url, "lbh_wrong").whoami().catch(() => {});
    const logs = server.logs.join("\n");
    expect(logs).not.toContain(server.adminToken);
    expect(logs).not.toContain(tokenA);
    expect(logs).toContain("denied");
  });

  it("stores tokens only as hashes", () => {
    const files = ["catalog.sqlite", "catalog.sqlite-wal"].map((f) => path.join(server.dataDir, f));
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    expect(bytes.includes(Buffer.from(tokenA))).toBe(false);
    expect(bytes.includes(Buffer.from(server.adminToken))).toBe(false);
    expect(bytes.includes(Buffer.from(sha(Buffer.from(tokenA))))).toBe(true);
  });

  it("answers 401 without a token or with an unknown one", async () => {
    expect((await fetch(`${server.url}/v1/snapshots`)).status).toBe(401);
    await expect(
      new ApiClient(server.url, "lbh_" + "0".repeat(64)).listSnapshots(),
    ).rejects.toMatchObject({
      code: "LB_AUTH_REQUIRED",
    });
  });

  it("keeps host A out of host B's snapshots and chunks", async () => {
    const secret = blob();
    const snapB = await backupOf(b, [secret]);
    expect((await a.listSnapshots()).map((s) => s.id)).not.toContain(snapB);
    await expect(a.listSnapshots("host-b")).rejects.toMatchObject({ code: "LB_AUTH_FORBIDDEN" });
    await expect(a.getSnapshot(snapB)).rejects.toMatchObject({
      code: "LB_SERVER_NO_SUCH_SNAPSHOT",
    });
    await expect(a.getManifest(snapB)).rejects.toMatchObject({
      code: "LB_SERVER_NO_SUCH_SNAPSHOT",
    });
    await expect(a.getChunk(secret.id)).rejects.toMatchObject({ code: "LB_SERVER_NO_SUCH_CHUNK" });
    await expect(
      a.createSnapshot({ host: "host-b", keyId: null, parent: null }),
    ).rejects.toMatchObject({
      code: "LB_AUTH_FORBIDDEN",
    });
    // Writing into B's pending snapshot with A's token is refused too.
    const { id: pendingB } = await b.createSnapshot({ keyId: null, parent: null });
    const x = blob();
    await expect(a.putChunk(pendingB, x.id, x.data, x.hash)).rejects.toMatchObject({
      code: "LB_SERVER_NO_SUCH_SNAPSHOT",
    });
    expect(await b.getChunk(secret.id)).toEqual(secret.data);
  });

  it("lets no host token delete, prune or add hosts", async () => {
    const snapA = await backupOf(a, [blob()]);
    await expect(a.deleteSnapshot(snapA)).rejects.toMatchObject({ code: "LB_AUTH_FORBIDDEN" });
    await expect(a.prune({ keepLast: 1 })).rejects.toMatchObject({ code: "LB_AUTH_FORBIDDEN" });
    await expect(a.addHost("evil")).rejects.toMatchObject({ code: "LB_AUTH_FORBIDDEN" });
    expect((await a.listSnapshots()).map((s) => s.id)).toContain(snapA);
  });
});

describe("commits", () => {
  it("keeps a pending snapshot invisible, and refuses a commit with a missing chunk", async () => {
    const { id } = await a.createSnapshot({ keyId: null, parent: null });
    expect((await a.listSnapshots()).map((s) => s.id)).not.toContain(id);
    await expect(a.getSnapshot(id)).rejects.toMatchObject({ code: "LB_SERVER_NO_SUCH_SNAPSHOT" });
    const manifest = randomBytes(10);
    await a.putManifest(id, manifest, sha(manifest));
    await expect(
      a.commit(id, { chunks: [blob().id], stats: { bytes: 0, newBytes: 0, files: 0, seconds: 0 } }),
    ).rejects.toMatchObject({ code: "LB_SERVER_MISSING_CHUNKS" });
    expect((await a.listSnapshots()).map((s) => s.id)).not.toContain(id);
  });

  it("refuses a blob whose hash does not match, and stores nothing", async () => {
    const { id } = await a.createSnapshot({ keyId: null, parent: null });
    const x = blob();
    await expect(a.putChunk(id, x.id, x.data, sha(Buffer.from("other")))).rejects.toMatchObject({
      code: "LB_SERVER_BLOB_HASH_MISMATCH",
    });
    expect(await a.missing(id, [x.id])).toEqual([x.id]);
  });
});

describe("damage", () => {
  it("names a flipped chunk and every snapshot it breaks, and no client takes it", async () => {
    const shared = blob(5000);
    const s1 = await backupOf(a, [shared, blob()]);
    const s2 = await backupOf(a, [shared]);
    const file = path.join(server.dataDir, "chunks", shared.id.slice(0, 2), shared.id);
    const bytes = readFileSync(file);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(file, bytes);
    const events = [];
    for await (const event of server.admin.verify(true)) events.push(event);
    const result = events.at(-1)!;
    expect(result).toMatchObject({ type: "result", ok: false });
    if (result.type !== "result") throw new Error("no result");
    expect(result.corrupt).toEqual([{ id: shared.id, snapshots: [s1, s2].sort() }]);
    await expect(a.getChunk(shared.id)).rejects.toMatchObject({ code: "LB_REPO_CORRUPT_CHUNK" });
    // A restore takes it unhashed; when it does not decode, the damage is named as such.
    await expect(readChunk(a, shared.id, null)).rejects.toThrow(/catalog recorded/);
    // Repair it so later tests see a clean store.
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(file, bytes);
    // Intact but not a chunk blob at all: the decoding's own error, not a damaged transfer.
    await expect(readChunk(a, shared.id, null)).rejects.toThrow(/no LBK1 header/);
  });
});

describe("garbage collection", () => {
  it("keeps held chunks of a backup in progress, collects unreferenced ones, keeps referenced ones", async () => {
    const kept = blob();
    await backupOf(a, [kept]);
    // An upload in progress: a chunk uploaded but not committed yet.
    const { id: inFlight } = await b.createSnapshot({ keyId: null, parent: null });
    const held = blob();
    await b.putChunk(inFlight, held.id, held.data, held.hash);
    // A forgotten snapshot's chunk.
    const lost = blob();
    const gone = await backupOf(b, [lost]);
    await server.admin.deleteSnapshot(gone);
    // A file a crash left between rename and catalog insert.
    const orphan = blob();
    mkdirSync(path.join(server.dataDir, "chunks", orphan.id.slice(0, 2)), { recursive: true });
    writeFileSync(
      path.join(server.dataDir, "chunks", orphan.id.slice(0, 2), orphan.id),
      orphan.data,
    );
    const result = await server.admin.prune({ keepLast: 100 });
    expect(result.gc!.chunks).toBeGreaterThanOrEqual(2);
    const files = readdirSync(path.join(server.dataDir, "chunks"), { recursive: true }).map(String);
    expect(files.some((f) => f.endsWith(lost.id))).toBe(false);
    expect(files.some((f) => f.endsWith(orphan.id))).toBe(false);
    expect(files.some((f) => f.endsWith(held.id))).toBe(true);
    expect(files.some((f) => f.endsWith(kept.id))).toBe(true);
    // The backup in progress still commits.
    const manifest = randomBytes(10);
    await b.putManifest(inFlight, manifest, sha(manifest));
    await b.commit(inFlight, {
      chunks: [held.id],
      stats: { bytes: 0, newBytes: 0, files: 0, seconds: 0 },
    });
    const events = [];
    for await (const event of server.admin.verify(true)) events.push(event);
    expect(events.at(-1)).toMatchObject({ ok: true, orphanFiles: 0 });
  });

  it("prunes by policy with a dry run first", async () => {
    const c = (await server.host("host-c")).client;
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await backupOf(c, [blob()]));
    const dry = await server.admin.prune({ host: "host-c", keepLast: 1, dryRun: true });
    expect(dry.hosts[0]!.forget.sort()).toEqual(ids.slice(0, 2).sort());
    expect(await c.listSnapshots()).toHaveLength(3);
    await server.admin.prune({ host: "host-c", keepLast: 1 });
    expect((await c.listSnapshots()).map((s) => s.id)).toEqual([ids[2]]);
  });
});

describe("concurrency", () => {
  it("takes four backups at once, with shared chunks, and verifies clean", async () => {
    const shared = Array.from({ length: 5 }, () => blob(20_000));
    const clients = await Promise.all(["p1", "p2", "p3", "p4"].map((n) => server.host(n)));
    const ids = await Promise.all(
      clients.map(({ client }) =>
        backupOf(client, [...shared, ...Array.from({ length: 15 }, () => blob(20_000))]),
      ),
    );
    for (const [i, { client }] of clients.entries())
      expect((await client.listSnapshots()).map((s) => s.id)).toEqual([ids[i]]);
    const events = [];
    for await (const event of server.admin.verify(true)) events.push(event);
    expect(events.at(-1)).toMatchObject({ ok: true });
  });
});

describe("malformed requests", () => {
  it("serves an OpenAPI document and a docs page", async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/v1/snapshots", "/v1/chunks/{id}", "/v1/prune"]),
    );
    expect((await fetch(`${server.url}/docs`, { redirect: "follow" })).status).toBe(200);
  });

  it("answers every malformed request with 4xx, never 5xx, and keeps serving", async () => {
    const { id: pendingId } = await a.createSnapshot({ keyId: null, parent: null });
    const routes = [
      ["POST", "/v1/hosts"],
      ["POST", "/v1/snapshots"],
      ["POST", `/v1/snapshots/${pendingId}/missing`],
      ["POST", `/v1/snapshots/${pendingId}/commit`],
      ["PUT", `/v1/snapshots/${pendingId}/manifest`],
      ["PUT", `/v1/chunks/${"a".repeat(64)}?snapshot=${pendingId}`],
      ["POST", "/v1/prune"],
      ["GET", "/v1/snapshots"],
      ["GET", "/v1/chunks/zz"],
      ["DELETE", "/v1/snapshots/x"],
      ["POST", "/v1/verify"],
    ] as const;
    const jsonish = fc.oneof(
      fc.json(),
      fc.string(),
      fc.constant('{"ids": ["not hex"]}'),
      fc.constant('{"name": "' + "x".repeat(10000) + '"}'),
      fc.constant('{"keepLast": 1e308}'),
      fc.constant('{"keepLast": -1}'),
      fc.constant('{"chunks": 5, "stats": {}}'),
      fc.constant('{"keyId": {"a": 1}, "parent": []}'),
      fc.constant("[]"),
      fc.constant("null"),
    );
    const contentType = fc.constantFrom(
      "application/json",
      "text/plain",
      "application/octet-stream",
      "application/xml",
      "",
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        jsonish,
        contentType,
        fc.constantFrom(tokenA, server.adminToken, "garbage", ""),
        async ([method, route], body, type, token) => {
          const headers: Record<string, string> = {};
          if (type) headers["content-type"] = type;
          if (token) headers.authorization = `Bearer ${token}`;
          const response = await fetch(`${server.url}${route}`, {
            method,
            headers,
            body: method === "GET" || method === "DELETE" ? undefined : body,
          });
          const text = await response.text();
          expect(
            response.status,
            `${method} ${route} ${type} ${body.slice(0, 80)} -> ${text.slice(0, 200)}`,
          ).toBeLessThan(500);
          if (response.status >= 400) expect(JSON.parse(text)).toHaveProperty("error.code");
        },
      ),
      { numRuns: 300 },
    );
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
  }, 60_000);

  it("answers random methods, paths and ids with 4xx and an error body", async () => {
    const segment = fc.oneof(
      fc.constantFrom("v1", "snapshots", "chunks", "hosts", "missing", "commit", "manifest"),
      fc.constantFrom("..", "%00", "%zz", "%2F", "%F0%9F%9A%A2", "a".repeat(300), "A".repeat(64)),
      fc.stringMatching(/^[0-9a-f]{1,70}$/),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"),
        fc.array(segment, { minLength: 1, maxLength: 5 }),
        fc.option(fc.string({ maxLength: 40 }).map(encodeURIComponent)),
        fc.constantFrom(tokenA, server.adminToken, ""),
        async (method, segments, query, token) => {
          const url = `${server.url}/${segments.join("/")}${query ? `?snapshot=${query}` : ""}`;
          const headers: Record<string, string> = { "content-type": "application/json" };
          if (token) headers.authorization = `Bearer ${token}`;
          const response = await fetch(url, {
            method,
            headers,
            body: method === "GET" || method === "DELETE" ? undefined : "{}",
          });
          const text = await response.text();
          expect(response.status, `${method} ${url} -> ${text.slice(0, 200)}`).toBeLessThan(500);
          if (response.status >= 400) expect(JSON.parse(text)).toHaveProperty("error.code");
        },
      ),
      { numRuns: 300 },
    );
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
  }, 60_000);

  it("answers a wrong content type with 415, an oversized blob with 413", async () => {
    const { id } = await a.createSnapshot({ keyId: null, parent: null });
    const put = (type: string, body: Buffer) =>
      fetch(`${server.url}/v1/chunks/${sha(body)}?snapshot=${id}`, {
        method: "PUT",
        headers: {
          authorization: `Bearer ${tokenA}`,
          "content-type": type,
          "x-blob-sha256": sha(body),
        },
        body,
      });
    const small = Buffer.from("{}");
    for (const type of ["application/json", "text/plain"]) {
      const response = await put(type, small);
      expect(response.status).toBe(415);
      expect(await response.json()).toMatchObject({
        error: { code: "LB_SERVER_UNSUPPORTED_MEDIA_TYPE" },
      });
    }
    const json = await fetch(`${server.url}/v1/snapshots/${id}/missing`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokenA}`, "content-type": "application/octet-stream" },
      body: "{}",
    });
    expect(json.status).toBe(415);
    const big = await put("application/octet-stream", randomBytes(4 * 1024 * 1024 + 4097));
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { code: "LB_SERVER_BODY_TOO_LARGE" } });
    // Nothing of it was kept.
    expect(readdirSync(path.join(server.dataDir, "tmp"))).toEqual([]);
  });

  it("refuses a prune without a keep rule, even with nothing to forget", async () => {
    await expect(server.admin.prune({ host: "host-a" })).rejects.toMatchObject({
      code: "LB_PRUNE_NO_POLICY",
    });
    await expect(server.admin.prune({ keepDaily: 0 })).rejects.toMatchObject({
      code: "LB_PRUNE_NO_POLICY",
    });
    await expect(server.admin.prune({ host: "nobody", keepLast: 1 })).rejects.toMatchObject({
      code: "LB_SERVER_NO_SUCH_HOST",
    });
  });
});

describe("retried calls", () => {
  it("answers a commit sent again after it succeeded, and only to its own host", async () => {
    const x = blob();
    const id = await backupOf(a, [x]);
    const again = await a.commit(id, {
      chunks: [x.id],
      stats: { bytes: 1, newBytes: 1, files: 1, seconds: 0 },
    });
    expect(again.id).toBe(id);
    expect((await a.getSnapshot(id)).committedAt).toBe(again.committedAt);
    await expect(
      b.commit(id, { chunks: [], stats: { bytes: 0, newBytes: 0, files: 0, seconds: 0 } }),
    ).rejects.toMatchObject({ code: "LB_SERVER_NO_SUCH_SNAPSHOT" });
  });

  it("logs each denial with the actor and the route", async () => {
    await a.prune({ keepLast: 1 }).catch(() => {});
    const denied = server.logs
      .map((line) => JSON.parse(line) as { msg: string; actor?: string; route?: string })
      .filter((entry) => entry.msg === "denied");
    expect(denied).toContainEqual(
      expect.objectContaining({ actor: "host:host-a", route: "POST /v1/prune" }),
    );
    expect(denied).toContainEqual(expect.objectContaining({ actor: "unknown token" }));
  });
});
