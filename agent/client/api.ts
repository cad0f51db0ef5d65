// The HTTP client for the backup server (docs/repository.md has the protocol). Responses
// are checked with zod; server errors become LifeboatErrors carrying the server's code,
// message and hint. Idempotent calls are retried a few times on connection trouble.

import http from "node:http";
import https from "node:https";
import { z } from "zod";
import { LifeboatError, environmentError } from "../../common/errors.ts";

const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }),
});
const Stats = z.object({
  bytes: z.number(),
  newBytes: z.number(),
  files: z.number(),
  seconds: z.number(),
});
export const SnapshotInfoSchema = z.object({
  id: z.string(),
  host: z.string(),
  createdAt: z.string(),
  committedAt: z.string().nullable(),
  keyId: z.string().nullable(),
  parent: z.string().nullable(),
  manifestId: z.string().nullable(),
  stats: Stats.nullable(),
  summary: z.unknown(),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfoSchema>;

export const VerifyResultSchema = z.object({
  type: z.literal("result"),
  ok: z.boolean(),
  snapshots: z.number(),
  chunks: z.number(),
  bytes: z.number(),
  missing: z.array(z.object({ id: z.string(), snapshots: z.array(z.string()) })),
  corrupt: z.array(z.object({ id: z.string(), snapshots: z.array(z.string()) })),
  manifestsMissing: z.array(z.string()),
  brokenSnapshots: z.array(z.string()),
  orphanFiles: z.number(),
  orphanRows: z.number(),
});
export type VerifyResult = z.infer<typeof VerifyResultSchema>;
const VerifyProgressSchema = z.object({
  type: z.literal("progress"),
  done: z.number(),
  total: z.number(),
  bytes: z.number(),
});
export type VerifyEvent = VerifyResult | z.infer<typeof VerifyProgressSchema>;

const PruneResultSchema = z.object({
  hosts: z.array(
    z.object({ host: z.string(), keep: z.array(z.string()), forget: z.array(z.string()) }),
  ),
  gc: z.object({ chunks: z.number(), bytes: z.number() }).nullable(),
});
export type PruneResult = z.infer<typeof PruneResultSchema>;

export interface PruneRequest {
  host?: string;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  dryRun?: boolean;
}

const RETRIES = 3;

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class ApiClient {
  readonly url: string;
  readonly #token: string;

  readonly #agent: http.Agent;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
    // Blobs go over node:http with keep-alive: fetch would copy every body once more, and
    // at backup rates those copies are a good part of the CPU time.
    const options = { keepAlive: true, maxSockets: 16 };
    this.#agent = this.url.startsWith("https:")
      ? new https.Agent(options)
      : new http.Agent(options);
  }

  /** One blob request over node:http; the body is sent as its parts, without joining them. */
  #raw(method: string, path: string, parts: Buffer[] | null, headers: Record<string, string>) {
    const target = new URL(`${this.url}${path}`);
    const transport = target.protocol === "https:" ? https : http;
    return new Promise<RawResponse>((resolve, reject) => {
      const request = transport.request(
        target,
        {
          method,
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${this.#token}`,
            ...headers,
            ...(parts
              ? {
                  "content-type": "application/octet-stream",
                  "content-length": String(parts.reduce((n, p) => n + p.length, 0)),
                }
              : {}),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (data: Buffer) => chunks.push(data));
          const cut = () => reject(new Error("response cut short"));
          response.on("error", cut);
          response.on("aborted", cut);
          response.on("end", () => {
            if (!response.complete) reject(new Error("response cut short"));
            else
              resolve({
                status: response.statusCode ?? 0,
                headers: response.headers,
                body: Buffer.concat(chunks),
              });
          });
        },
      );
      request.on("error", reject);
      if (parts) for (const part of parts) request.write(part);
      request.end();
    });
  }

  /** #raw with retries, the unreachable-server error and the server's error body. */
  async #blobRequest(
    method: string,
    path: string,
    parts: Buffer[] | null,
    headers: Record<string, string> = {},
  ) {
    for (let attempt = 1; ; attempt++) {
      let response: RawResponse;
      try {
        response = await this.#raw(method, path, parts, headers);
      } catch (error) {
        if (attempt < RETRIES && method === "PUT") {
          await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
          continue;
        }
        if ((error as Error).message.startsWith("response")) throw error;
        throw environmentError(
          "LB_SERVER_UNREACHABLE",
          `Can't reach the backup server at ${this.url}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`,
          "Check that it runs ('lifeboat server') and the URL (--server, LIFEBOAT_SERVER, or server in the agent config).",
          error,
        );
      }
      const damaged = response.body.includes("LB_REPO_CORRUPT_CHUNK");
      if (response.status >= 500 && response.status !== 507 && !damaged && attempt < RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
        continue;
      }
      if (response.status >= 400) {
        const fake = new Response(response.body, { status: response.status });
        throw await this.#error(fake, method, path);
      }
      return response;
    }
  }

  async #request(
    method: string,
    path: string,
    options: {
      json?: unknown;
      body?: Buffer;
      headers?: Record<string, string>;
      idempotent?: boolean;
    } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#token}`,
      ...options.headers,
    };
    let body: string | Buffer | undefined;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    } else if (options.body) {
      headers["content-type"] = "application/octet-stream";
      body = options.body;
    }
    const attempts = options.idempotent === false ? 1 : RETRIES;
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(`${this.url}${path}`, { method, headers, body });
      } catch (error) {
        if (attempt < attempts) {
          await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
          continue;
        }
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        throw environmentError(
          "LB_SERVER_UNREACHABLE",
          `Can't reach the backup server at ${this.url}: ${cause?.code ?? cause?.message ?? (error as Error).message}.`,
          "Check that it runs ('lifeboat server') and the URL (--server, LIFEBOAT_SERVER, or server in the agent config).",
          error,
        );
      }
      if (response.status >= 500 && response.status !== 507 && attempt < attempts) {
        await response.body?.cancel();
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
        continue;
      }
      if (!response.ok) throw await this.#error(response, method, path);
      return response;
    }
  }

  async #error(response: Response, method: string, path: string): Promise<LifeboatError> {
    const text = await response.text().catch(() => "");
    let parsed: z.infer<typeof ErrorBody> | null = null;
    try {
      parsed = ErrorBody.parse(JSON.parse(text));
    } catch {
      parsed = null;
    }
    const kind =
      response.status === 401 || response.status === 403 || response.status >= 500
        ? "environment"
        : "input";
    return new LifeboatError({
      kind,
      code: parsed?.error.code ?? `LB_SERVER_HTTP_${response.status}`,
      message:
        parsed?.error.message ??
        `${method} ${path} failed: HTTP ${response.status} ${text.slice(0, 200)}`,
      hint: parsed?.error.hint,
    });
  }

  async #json<T>(
    schema: z.ZodType<T>,
    method: string,
    path: string,
    json?: unknown,
    idempotent = true,
  ): Promise<T> {
    const response = await this.#request(method, path, { json, idempotent });
    return schema.parse(await response.json());
  }

  whoami() {
    return this.#json(
      z.object({ role: z.enum(["admin", "host"]), host: z.string().optional() }),
      "GET",
      "/v1/whoami",
    );
  }

  addHost(name: string) {
    return this.#json(
      z.object({ name: z.string(), token: z.string() }),
      "POST",
      "/v1/hosts",
      { name },
      false,
    );
  }

  async listHosts() {
    const schema = z.object({
      hosts: z.array(
        z.object({
          name: z.string(),
          createdAt: z.string(),
          snapshots: z.number(),
          lastBackup: z.string().nullable(),
        }),
      ),
    });
    return (await this.#json(schema, "GET", "/v1/hosts")).hosts;
  }

  createSnapshot(request: { host?: string; keyId: string | null; parent: string | null }) {
    return this.#json(
      z.object({ id: z.string(), expiresAt: z.string() }),
      "POST",
      "/v1/snapshots",
      request,
      false,
    );
  }

  async missing(snapshot: string, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const schema = z.object({ missing: z.array(z.string()) });
    return (await this.#json(schema, "POST", `/v1/snapshots/${snapshot}/missing`, { ids })).missing;
  }

  async putChunk(
    snapshot: string,
    id: string,
    blob: Buffer | Buffer[],
    sha256: string,
  ): Promise<void> {
    await this.#blobRequest(
      "PUT",
      `/v1/chunks/${id}?snapshot=${snapshot}`,
      Array.isArray(blob) ? blob : [blob],
      {
        "x-blob-sha256": sha256,
      },
    );
  }

  async putManifest(snapshot: string, blob: Buffer, sha256: string): Promise<void> {
    await this.#blobRequest("PUT", `/v1/snapshots/${snapshot}/manifest`, [blob], {
      "x-blob-sha256": sha256,
    });
  }

  commit(
    snapshot: string,
    request: { chunks: string[]; stats: z.infer<typeof Stats>; summary?: Record<string, unknown> },
  ) {
    return this.#json(
      z.object({ id: z.string(), committedAt: z.string() }),
      "POST",
      `/v1/snapshots/${snapshot}/commit`,
      request,
    );
  }

  async listSnapshots(host?: string): Promise<SnapshotInfo[]> {
    const query = host ? `?host=${encodeURIComponent(host)}` : "";
    return (
      await this.#json(
        z.object({ snapshots: z.array(SnapshotInfoSchema) }),
        "GET",
        `/v1/snapshots${query}`,
      )
    ).snapshots;
  }

  getSnapshot(id: string): Promise<SnapshotInfo> {
    return this.#json(SnapshotInfoSchema, "GET", `/v1/snapshots/${encodeURIComponent(id)}`);
  }

  async #blob(path: string, what: string): Promise<Buffer> {
    let response: RawResponse;
    try {
      response = await this.#blobRequest("GET", path, null);
    } catch (error) {
      if (error instanceof LifeboatError) throw error;
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `The server stopped sending ${what} part-way (it does so when the stored blob is damaged).`,
        "Run 'lifeboat verify --read-data' with the admin token to see which snapshots it breaks.",
        error,
      );
    }
    // The body is complete: the server re-hashed the stored blob before or while sending it
    // and refuses or cuts short a damaged one. Content is checked again against its id
    // when the blob is decoded, so a second SHA-256 here would only cost time.
    if (!response.headers["x-blob-sha256"]) {
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `${what} arrived without its hash header; this is not a Lifeboat server.`,
        "Check the server URL.",
      );
    }
    return response.body;
  }

  getManifest(snapshot: string): Promise<Buffer> {
    return this.#blob(
      `/v1/snapshots/${encodeURIComponent(snapshot)}/manifest`,
      `the manifest of ${snapshot}`,
    );
  }

  getChunk(id: string): Promise<Buffer> {
    return this.#blob(`/v1/chunks/${id}`, `chunk ${id}`);
  }

  deleteSnapshot(id: string) {
    return this.#json(
      z.object({ forgotten: z.string() }),
      "DELETE",
      `/v1/snapshots/${encodeURIComponent(id)}`,
      undefined,
      false,
    );
  }

  prune(request: PruneRequest): Promise<PruneResult> {
    return this.#json(PruneResultSchema, "POST", "/v1/prune", request, false);
  }

  async *verify(readData: boolean): AsyncGenerator<VerifyEvent> {
    const response = await this.#request("POST", "/v1/verify", { json: { readData } });
    const decoder = new TextDecoder();
    let buffered = "";
    const parse = (line: string): VerifyEvent =>
      z.union([VerifyProgressSchema, VerifyResultSchema]).parse(JSON.parse(line));
    for await (const part of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(part, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim()) yield parse(line);
      }
    }
    if (buffered.trim()) yield parse(buffered);
  }
}
