// The HTTP client against small scripted HTTP servers on loopback: how it retries, what
// errors it raises, and that it never hands back a blob that does not match its hash.
// (test/server/ covers the client against the real server.)
import { createHash } from "node:crypto";
import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { ApiClient } from "../../agent/client/api.ts";
import { EXIT, exitCodeFor, LifeboatError } from "../../common/errors.ts";
import { freePort } from "../helpers/server.ts";

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

/** A server answering with `handler`; `n` counts the requests (from 1). */
async function scripted(handler: Handler): Promise<{ url: string; requests: () => number }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    // Read the body first, like a real server, then answer.
    req.resume();
    req.on("end", () => handler(req, res, n));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}`, requests: () => n };
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function failure(promise: Promise<unknown>): Promise<LifeboatError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LifeboatError);
  return error as LifeboatError;
}

describe("errors", () => {
  it("names the URL when nothing listens, as an environment error (exit 3)", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const error = await failure(new ApiClient(url, "t").whoami());
    expect(error.code).toBe("LB_SERVER_UNREACHABLE");
    expect(error.message).toContain(url);
    expect(error.hint).toMatch(/--server/);
    expect(exitCodeFor(error)).toBe(EXIT.environment);
  });

  it("carries the server's code, message and hint; auth failures are environment errors", async () => {
    const server = await scripted((req, res) =>
      req.url === "/v1/whoami"
        ? json(res, 401, { error: { code: "LB_AUTH_REQUIRED", message: "bad token", hint: "fix" } })
        : json(res, 409, { error: { code: "LB_SERVER_HOST_EXISTS", message: "exists" } }),
    );
    const client = new ApiClient(server.url, "t");
    const auth = await failure(client.whoami());
    expect(auth).toMatchObject({ code: "LB_AUTH_REQUIRED", message: "bad token", hint: "fix" });
    expect(exitCodeFor(auth)).toBe(EXIT.environment);
    const conflict = await failure(client.addHost("x"));
    expect(conflict).toMatchObject({ code: "LB_SERVER_HOST_EXISTS", message: "exists" });
    expect(exitCodeFor(conflict)).toBe(EXIT.input);
  });

  it("refuses an answer that does not fit the API, naming the field", async () => {
    const server = await scripted((_req, res) => json(res, 200, { role: "root" }));
    const error = await failure(new ApiClient(server.url, "t").whoami());
    expect(error.code).toBe("LB_SERVER_BAD_RESPONSE");
    expect(error.message).toContain("role");
  });
});

describe("retries", () => {
  it("retries an idempotent call after a 5xx and after a reset connection", async () => {
    const server = await scripted((req, res, n) => {
      if (n === 1) return json(res, 503, { error: { code: "LB_X", message: "busy" } });
      if (n === 2) return req.socket.destroy();
      json(res, 200, { role: "admin" });
    });
    expect(await new ApiClient(server.url, "t").whoami()).toEqual({ role: "admin" });
    expect(server.requests()).toBe(3);
  });

  it("gives up after a bounded number of attempts", async () => {
    const server = await scripted((_req, res) =>
      json(res, 502, { error: { code: "LB_X", message: "down" } }),
    );
    await failure(new ApiClient(server.url, "t").listSnapshots());
    expect(server.requests()).toBe(3);
  });

  it("does not repeat a call that is not idempotent, nor a full disk", async () => {
    const server = await scripted((req, res) =>
      req.url === "/v1/snapshots"
        ? json(res, 503, { error: { code: "LB_X", message: "busy" } })
        : json(res, 507, { error: { code: "LB_SERVER_DISK_FULL", message: "full" } }),
    );
    const client = new ApiClient(server.url, "t");
    await failure(client.createSnapshot({ keyId: null, parent: null }));
    expect(server.requests()).toBe(1);
    const full = await failure(
      client.putChunk("s", "a".repeat(64), Buffer.from("x"), sha(Buffer.from("x"))),
    );
    expect(full.code).toBe("LB_SERVER_DISK_FULL");
    expect(server.requests()).toBe(2);
  });
});

describe("blobs", () => {
  const data = Buffer.from("the blob's bytes");

  it("returns a blob whose bytes match the hash header", async () => {
    const server = await scripted((_req, res) => {
      res.writeHead(200, { "x-blob-sha256": sha(data) });
      res.end(data);
    });
    expect(await new ApiClient(server.url, "t").getChunk("a".repeat(64))).toEqual(data);
  });

  it("refuses bytes that don't match the hash header, or come without one", async () => {
    const server = await scripted((req, res) => {
      res.writeHead(200, req.url!.includes("aaaa") ? { "x-blob-sha256": sha(data) } : {});
      res.end(Buffer.from("other bytes, same length"));
    });
    const client = new ApiClient(server.url, "t");
    const wrong = await failure(client.getChunk("a".repeat(64)));
    expect(wrong.code).toBe("LB_REPO_CORRUPT_CHUNK");
    expect(wrong.message).toContain(sha(data));
    expect((await failure(client.getChunk("b".repeat(64)))).code).toBe("LB_REPO_CORRUPT_CHUNK");
  });

  it("hands a chunk to decode over unhashed, and checks it against the sent hash on request", async () => {
    const server = await scripted((_req, res) => {
      res.writeHead(200, { "x-blob-sha256": sha(data) });
      res.end(Buffer.from("other bytes, same length"));
    });
    const client = new ApiClient(server.url, "t");
    const arrived = await client.getChunkToDecode("a".repeat(64));
    expect(arrived.toString()).toBe("other bytes, same length");
    const wrong = (() => {
      try {
        client.checkChunk("a".repeat(64), arrived);
      } catch (error) {
        return error as LifeboatError;
      }
    })();
    expect(wrong?.code).toBe("LB_REPO_CORRUPT_CHUNK");
    expect(wrong?.message).toContain(sha(data));
    // As sent: nothing to say. Never fetched: nothing known.
    expect(() => client.checkChunk("a".repeat(64), data)).not.toThrow();
    expect(() => client.checkChunk("b".repeat(64), arrived)).not.toThrow();
  });

  it("refuses a body cut short", async () => {
    const server = await scripted((req, res) => {
      res.writeHead(200, { "x-blob-sha256": sha(data), "content-length": String(data.length) });
      res.write(data.subarray(0, 5));
      setTimeout(() => req.socket.destroy(), 20);
    });
    const error = await failure(new ApiClient(server.url, "t").getManifest("s"));
    expect(error.code).toBe("LB_REPO_CORRUPT_CHUNK");
  });
});

describe("verify stream", () => {
  const result = {
    type: "result",
    ok: true,
    snapshots: 1,
    chunks: 2,
    bytes: 3,
    missing: [],
    corrupt: [],
    manifestsMissing: [],
    brokenSnapshots: [],
    orphanFiles: 0,
    orphanRows: 0,
  };

  it("reads NDJSON events split anywhere across packets", async () => {
    const text = `${JSON.stringify({ type: "progress", done: 1, total: 2, bytes: 3 })}\n${JSON.stringify(result)}\n`;
    const server = await scripted(async (_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (let i = 0; i < text.length; i += 7) {
        res.write(text.slice(i, i + 7));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      res.end();
    });
    const events = [];
    for await (const event of new ApiClient(server.url, "t").verify(true)) events.push(event);
    expect(events.map((e) => e.type)).toEqual(["progress", "result"]);
    expect(events[1]).toEqual(result);
  });

  it("turns a stream that breaks off into an environment error", async () => {
    const server = await scripted((req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(`${JSON.stringify({ type: "progress", done: 1, total: 9, bytes: 0 })}\n`);
      setTimeout(() => req.socket.destroy(), 20);
    });
    const events: unknown[] = [];
    const error = await failure(
      (async () => {
        for await (const event of new ApiClient(server.url, "t").verify(false)) events.push(event);
      })(),
    );
    expect(events).toHaveLength(1);
    expect(exitCodeFor(error)).toBe(EXIT.environment);
  });
});
