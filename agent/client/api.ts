// The HTTP client for the backup server (docs/repository.md has the protocol). Responses
// are checked with zod; server errors become LifeboatErrors carrying the server's code,
// message and hint. Idempotent calls are retried a few times on connection trouble.

import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import {
  BackupStatsSchema,
  ErrorBodySchema,
  PruneResultSchema,
  SnapshotInfoSchema,
  type PruneResult,
  RecoveryInfoSchema,
  type RecoveryInfo,
  type RecoveryReport,
  type SnapshotInfo,
} from "../../common/api.ts";
import { LifeboatError, environmentError } from "../../common/errors.ts";
import {
  DrillEventSchema,
  DrillSchema,
  DrillSettingsSchema,
  type Drill,
  type DrillEvent,
  type DrillRequest,
  type DrillSettings,
  StandbyStartSchema,
  StandbyStateSchema,
  type StandbyState,
} from "../../common/drills.ts";

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
  /** Size of every blob verify looks at (what --read-data will have hashed at the end). */
  totalBytes: z.number().optional(),
});
export type VerifyEvent = VerifyResult | z.infer<typeof VerifyProgressSchema>;

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

/** The server stopped sending a body part-way. */
class ResponseCut extends Error {
  constructor() {
    super("response cut short");
  }
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Hashes sent with the chunks fetched last, for checkChunk: a blob that fails to decode is
 * checked right after it arrived, while it is still among these.
 */
const SENT_HASHES_KEPT = 1024;

/**
 * The check of a blob against the SHA-256 the server sent with it, which is its catalog's
 * record: the server sends what it stores without hashing it, so a mismatch is damage on
 * the server's disk or on the way.
 */
function checkArrived(what: string, body: Buffer, sent: string) {
  const actual = createHash("sha256").update(body).digest("hex");
  if (actual !== sent) {
    throw environmentError(
      "LB_REPO_CORRUPT_CHUNK",
      `${what} arrived damaged: its SHA-256 is ${actual}, the server's catalog recorded ${sent}. Either the server's stored copy is damaged or it was damaged on the way.`,
      "Retry once. If it persists, the stored copy is damaged: restore an older snapshot ('lifeboat snapshots' lists them), and run 'lifeboat verify --read-data' with the admin token to see which snapshots the damage breaks.",
    );
  }
}

export class ApiClient {
  readonly url: string;
  readonly #token: string;
  readonly #sentHashes = new Map<string, string>();

  readonly #agent: http.Agent;

  constructor(url: string, token: string, options: { ca?: Buffer | null } = {}) {
    this.url = url.replace(/\/+$/, "");
    this.#token = token;
    // node:http with keep-alive rather than fetch: fetch copies every body once more, which
    // at backup rates is a good part of the CPU time, and it can't be given a CA to trust.
    const agentOptions = { keepAlive: true, maxSockets: 16 };
    this.#agent = this.url.startsWith("https:")
      ? new https.Agent({ ...agentOptions, ...(options.ca ? { ca: options.ca } : {}) })
      : new http.Agent(agentOptions);
  }

  /** One request; the body goes as its parts, without joining them. */
  #open(
    method: string,
    path: string,
    body: { parts: Buffer[]; type: string } | null,
    headers: Record<string, string>,
  ): Promise<http.IncomingMessage> {
    const target = new URL(`${this.url}${path}`);
    const transport = target.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const request = transport.request(
        target,
        {
          method,
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${this.#token}`,
            ...headers,
            ...(body
              ? {
                  "content-type": body.type,
                  "content-length": String(body.parts.reduce((n, p) => n + p.length, 0)),
                }
              : {}),
          },
        },
        resolve,
      );
      request.on("error", reject);
      if (body) for (const part of body.parts) request.write(part);
      request.end();
    });
  }

  /** The whole body of a response; a response cut short is an error. */
  #readAll(response: http.IncomingMessage): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const cut = () => reject(new ResponseCut());
      response.on("data", (data: Buffer) => chunks.push(data));
      response.on("error", cut);
      response.on("aborted", cut);
      response.on("end", () => {
        if (!response.complete) cut();
        else
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          });
      });
    });
  }

  /**
   * A request with retries (connection trouble and 5xx, for idempotent calls), the
   * unreachable-server error, and the server's error body turned into a LifeboatError.
   * `stream` returns the response unread (for NDJSON).
   */
  async #send(
    method: string,
    path: string,
    options: {
      json?: unknown;
      parts?: Buffer[];
      headers?: Record<string, string>;
      idempotent?: boolean;
    },
  ): Promise<http.IncomingMessage> {
    const body =
      options.json !== undefined
        ? { parts: [Buffer.from(JSON.stringify(options.json))], type: "application/json" }
        : options.parts
          ? { parts: options.parts, type: "application/octet-stream" }
          : null;
    const attempts = options.idempotent === false ? 1 : RETRIES;
    for (let attempt = 1; ; attempt++) {
      let response: http.IncomingMessage;
      try {
        response = await this.#open(method, path, body, options.headers ?? {});
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? "";
        if (/CERT|SSL|TLS/.test(code)) {
          throw environmentError(
            "LB_SERVER_TLS",
            `The TLS certificate of ${this.url} is not trusted: ${code}.`,
            "Pass the CA (or the self-signed certificate) with --ca FILE, LIFEBOAT_CA, or ca in the agent config.",
            error,
          );
        }
        if (attempt < attempts) {
          await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
          continue;
        }
        throw environmentError(
          "LB_SERVER_UNREACHABLE",
          `Can't reach the backup server at ${this.url}: ${code || (error as Error).message}.`,
          "Check that it runs ('lifeboat server') and the URL (--server, LIFEBOAT_SERVER, or server in the agent config).",
          error,
        );
      }
      const status = response.statusCode ?? 0;
      if (status < 400) return response;
      const raw = await this.#readAll(response).catch(() => null);
      const text = raw?.body.toString("utf8") ?? "";
      const damaged = text.includes("LB_REPO_CORRUPT_CHUNK");
      if (status >= 500 && status !== 507 && !damaged && attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
        continue;
      }
      throw this.#error(status, text, method, path);
    }
  }

  #error(status: number, text: string, method: string, path: string): LifeboatError {
    let parsed: z.infer<typeof ErrorBodySchema> | null = null;
    try {
      parsed = ErrorBodySchema.parse(JSON.parse(text));
    } catch {
      parsed = null;
    }
    const kind = status === 401 || status === 403 || status >= 500 ? "environment" : "input";
    return new LifeboatError({
      kind,
      code: parsed?.error.code ?? `LB_SERVER_HTTP_${status}`,
      message:
        parsed?.error.message ?? `${method} ${path} failed: HTTP ${status} ${text.slice(0, 200)}`,
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
    const response = await this.#send(method, path, { json, idempotent });
    const raw = await this.#readAll(response);
    return this.#parse(schema, raw.body.toString("utf8"), `${method} ${path}`);
  }

  /** A response body checked against its schema; anything else is not our server talking. */
  #parse<T>(schema: z.ZodType<T>, text: string, what: string): T {
    let problem: string;
    try {
      const result = schema.safeParse(JSON.parse(text));
      if (result.success) return result.data;
      const issue = result.error.issues[0]!;
      problem = `${issue.path.join(".") || "(top level)"}: ${issue.message}`;
    } catch (error) {
      problem = (error as Error).message;
    }
    throw environmentError(
      "LB_SERVER_BAD_RESPONSE",
      `${what} at ${this.url}: the answer is not what this client expects (${problem}).`,
      "Check that the server URL names a Lifeboat server of the same version.",
    );
  }

  async #putBlob(method: string, path: string, parts: Buffer[], headers: Record<string, string>) {
    await this.#readAll(await this.#send(method, path, { parts, headers }));
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
    await this.#putBlob(
      "PUT",
      `/v1/chunks/${id}?snapshot=${snapshot}`,
      Array.isArray(blob) ? blob : [blob],
      {
        "x-blob-sha256": sha256,
      },
    );
  }

  async putManifest(snapshot: string, blob: Buffer, sha256: string): Promise<void> {
    await this.#putBlob("PUT", `/v1/snapshots/${snapshot}/manifest`, [blob], {
      "x-blob-sha256": sha256,
    });
  }

  commit(
    snapshot: string,
    request: {
      chunks: string[];
      stats: z.infer<typeof BackupStatsSchema>;
      summary?: Record<string, unknown>;
    },
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
    const { body, sent } = await this.#blobAsSent(path, what);
    checkArrived(what, body, sent);
    return body;
  }

  /** A blob and the SHA-256 the server sent with it, not compared yet. */
  async #blobAsSent(path: string, what: string): Promise<{ body: Buffer; sent: string }> {
    let response: RawResponse;
    try {
      response = await this.#readAll(await this.#send("GET", path, {}));
    } catch (error) {
      if (error instanceof LifeboatError) throw error;
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `The server stopped sending ${what} part-way (it does so when the stored blob is damaged).`,
        "Run 'lifeboat verify --read-data' with the admin token to see which snapshots it breaks.",
        error,
      );
    }
    const sent = response.headers["x-blob-sha256"];
    if (typeof sent !== "string") {
      throw environmentError(
        "LB_REPO_CORRUPT_CHUNK",
        `${what} arrived without its hash header; this is not a Lifeboat server.`,
        "Check the server URL.",
      );
    }
    return { body: response.body, sent };
  }

  getManifest(snapshot: string): Promise<Buffer> {
    return this.#blob(
      `/v1/snapshots/${encodeURIComponent(snapshot)}/manifest`,
      `the manifest of ${snapshot}`,
    );
  }

  /** Files a recovery's outcome and log with the server (not retried: it is not idempotent). */
  reportRecovery(report: RecoveryReport) {
    return this.#json(z.object({ id: z.number() }), "POST", "/v1/recoveries", report, false);
  }

  async listRecoveries(host?: string): Promise<RecoveryInfo[]> {
    const query = host ? `?host=${encodeURIComponent(host)}` : "";
    const schema = z.object({ recoveries: z.array(RecoveryInfoSchema) });
    return (await this.#json(schema, "GET", `/v1/recoveries${query}`)).recoveries;
  }

  async recoveryLog(id: number): Promise<string> {
    const response = await this.#readAll(await this.#send("GET", `/v1/recoveries/${id}/log`, {}));
    return response.body.toString("utf8");
  }

  /** A chunk blob, checked against the SHA-256 the server sent (exports copy it as is). */
  getChunk(id: string): Promise<Buffer> {
    return this.#blob(`/v1/chunks/${id}`, `chunk ${id}`);
  }

  /**
   * A chunk blob to be decoded, not hashed on arrival: decoding checks it anyway (GCM and
   * the plaintext against the id), and checkChunk compares it with the hash the server sent
   * only when it does not decode, to say whether it was damaged on the way. Hashing every
   * blob as it arrived took half a second of a 500 MB restore's main thread.
   */
  async getChunkToDecode(id: string): Promise<Buffer> {
    const { body, sent } = await this.#blobAsSent(`/v1/chunks/${id}`, `chunk ${id}`);
    this.#sentHashes.set(id, sent);
    if (this.#sentHashes.size > SENT_HASHES_KEPT) {
      this.#sentHashes.delete(this.#sentHashes.keys().next().value!);
    }
    return body;
  }

  checkChunk(id: string, blob: Buffer): void {
    const sent = this.#sentHashes.get(id);
    if (sent !== undefined) checkArrived(`chunk ${id}`, blob, sent);
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

  // --- restore drills ----------------------------------------------------------------

  requestDrill(request: DrillRequest): Promise<Drill> {
    return this.#json(DrillSchema, "POST", "/v1/drills", request, false);
  }

  async listDrills(query: { host?: string; since?: string } = {}): Promise<Drill[]> {
    const params = new URLSearchParams();
    if (query.host) params.set("host", query.host);
    if (query.since) params.set("since", query.since);
    const suffix = params.size ? `?${params}` : "";
    return (
      await this.#json(z.object({ drills: z.array(DrillSchema) }), "GET", `/v1/drills${suffix}`)
    ).drills;
  }

  getDrill(id: string): Promise<Drill> {
    return this.#json(DrillSchema, "GET", `/v1/drills/${encodeURIComponent(id)}`);
  }

  async #text(path: string): Promise<string> {
    return (await this.#readAll(await this.#send("GET", path, {}))).body.toString("utf8");
  }

  drillJunit(id: string): Promise<string> {
    return this.#text(`/v1/drills/${encodeURIComponent(id)}/junit`);
  }

  async drillEvidence(id: string, name: string): Promise<Buffer> {
    const path = `/v1/drills/${encodeURIComponent(id)}/evidence/${encodeURIComponent(name)}`;
    return (await this.#readAll(await this.#send("GET", path, {}))).body;
  }

  getDrillSettings(host: string): Promise<DrillSettings> {
    return this.#json(
      DrillSettingsSchema,
      "GET",
      `/v1/hosts/${encodeURIComponent(host)}/drill-settings`,
    );
  }

  putDrillSettings(host: string, settings: DrillSettings): Promise<DrillSettings> {
    return this.#json(
      DrillSettingsSchema,
      "PUT",
      `/v1/hosts/${encodeURIComponent(host)}/drill-settings`,
      settings,
    );
  }

  report(query: { host?: string; since?: string; format: "html" | "json" }): Promise<string> {
    const params = new URLSearchParams({ format: query.format });
    if (query.host) params.set("host", query.host);
    if (query.since) params.set("since", query.since);
    return this.#text(`/v1/report?${params}`);
  }

  standbyState(): Promise<StandbyState> {
    return this.#json(StandbyStateSchema, "GET", "/v1/standby");
  }

  standbyStart(host: string, request: z.input<typeof StandbyStartSchema>) {
    return this.#json(
      z.object({ host: z.string(), bootSeconds: z.number(), consoleLog: z.string() }),
      "POST",
      `/v1/standby/${encodeURIComponent(host)}/start`,
      request,
      false,
    );
  }

  standbyStop(host: string) {
    return this.#json(
      z.object({ stopped: z.boolean() }),
      "POST",
      `/v1/standby/${encodeURIComponent(host)}/stop`,
      {},
      false,
    );
  }

  standbyExport(host: string, format: "qcow2" | "raw") {
    return this.#json(
      z.object({ files: z.array(z.object({ name: z.string(), bytes: z.number() })) }),
      "POST",
      `/v1/standby/${encodeURIComponent(host)}/export`,
      { format },
      false,
    );
  }

  /** One exported disk, streamed into `out`. */
  async standbyDownload(host: string, name: string, out: NodeJS.WritableStream): Promise<void> {
    const response = await this.#send(
      "GET",
      `/v1/standby/${encodeURIComponent(host)}/export/${encodeURIComponent(name)}`,
      {},
    );
    await pipeline(response, out);
  }

  /** A drill's progress (server-sent events), until its final record arrives. */
  async *drillEvents(id: string): AsyncGenerator<DrillEvent> {
    const response = await this.#send("GET", `/v1/drills/${encodeURIComponent(id)}/events`, {});
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const part of response as AsyncIterable<Buffer>) {
        buffered += decoder.decode(part, { stream: true });
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = block
            .split("\n")
            .filter((line) => line.startsWith("data: "))
            .map((line) => line.slice(6))
            .join("\n");
          if (data) yield this.#parse(DrillEventSchema, data, "GET /v1/drills/:id/events");
        }
      }
    } catch (error) {
      throw environmentError(
        "LB_SERVER_UNREACHABLE",
        `The connection to ${this.url} broke while following drill ${id}: ${(error as Error).message}.`,
        "The drill goes on in the server; follow it again with 'lifeboat drill show ID'.",
        error,
      );
    }
  }

  async *verify(readData: boolean): AsyncGenerator<VerifyEvent> {
    const response = await this.#send("POST", "/v1/verify", { json: { readData } });
    const decoder = new TextDecoder();
    let buffered = "";
    const parse = (line: string): VerifyEvent =>
      this.#parse(z.union([VerifyProgressSchema, VerifyResultSchema]), line, "POST /v1/verify");
    const lines: string[] = [];
    const parts = (response as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await parts.next();
      } catch (error) {
        throw environmentError(
          "LB_SERVER_UNREACHABLE",
          `The connection to ${this.url} broke during verify: ${(error as Error).message}.`,
          "Check that the server still runs, then run verify again.",
          error,
        );
      }
      if (next.done) break;
      buffered += decoder.decode(next.value, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
      }
      for (const line of lines.splice(0)) if (line.trim()) yield parse(line);
    }
    if (buffered.trim()) yield parse(buffered);
  }
}
