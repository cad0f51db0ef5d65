// The HTTP client for the backup server (docs/repository.md has the protocol). Responses
// are checked with zod; server errors become LifeboatErrors carrying the server's code,
// message and hint. Idempotent calls are retried a few times on connection trouble.

import { createHash } from "node:crypto";
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

export class ApiClient {
  readonly url: string;
  readonly #token: string;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
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

  async putChunk(snapshot: string, id: string, blob: Buffer, sha256: string): Promise<void> {
    const response = await this.#request("PUT", `/v1/chunks/${id}?snapshot=${snapshot}`, {
      body: blob,
      headers: { "x-blob-sha256": sha256 },
    });
    await response.body?.cancel();
  }

  async putManifest(snapshot: string, blob: Buffer, sha256: string): Promise<void> {
    const response = await this.#request("PUT", `/v1/snapshots/${snapshot}/manifest`, {
      body: blob,
      headers: { "x-blob-sha256": sha256 },
    });
    await response.body?.cancel();
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
    const response = await this.#request("GET", path);
    const expected = response.headers.get("x-blob-sha256");
    let data: Buffer;
    try {
      data = Buffer.from(await response.arrayBuffer());
    } catch (error) {
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `The server stopped sending ${what} part-way (it does so when the stored blob is damaged).`,
        "Run 'lifeboat verify --read-data' with the admin token to see which snapshots it breaks.",
        error,
      );
    }
    if (!expected || createHash("sha256").update(data).digest("hex") !== expected) {
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `${what} arrived damaged (its SHA-256 does not match the server's record).`,
        "Run 'lifeboat verify --read-data' to find the damage; retry if the network is flaky.",
      );
    }
    return data;
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
