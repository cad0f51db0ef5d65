// The HTTP API (v1): fastify with zod schemas on every route, which also produce the
// OpenAPI document at /openapi.json (and a docs page at /docs). Auth is a bearer token:
// the admin token, or a host token that can only add to and read its own host's backups.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { fileURLToPath } from "node:url";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { z } from "zod";
import { LifeboatError, environmentError } from "../common/errors.ts";
import {
  BackupStatsSchema,
  ErrorBodySchema,
  PruneResultSchema,
  RecoveryInfoSchema,
  RecoveryReportSchema,
  SnapshotInfoSchema,
} from "../common/api.ts";
import { LIFEBOAT_VERSION } from "../common/version.ts";
import {
  Repository,
  MAX_CHUNK_BLOB,
  MAX_MANIFEST_BLOB,
  type RepositoryOptions,
} from "./repository.ts";
import { snapshotInfo } from "./catalog.ts";
import { HttpError, diskError } from "./store.ts";
import { DrillEngine, type DrillEngineOptions } from "./drills/engine.ts";
import { registerDrillRoutes } from "./drills/routes.ts";

export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");
const newToken = (prefix: string) => `${prefix}${randomBytes(32).toString("hex")}`;

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits");
const SnapshotId = z.string().regex(/^[0-9a-f]{28}$/, "must be a snapshot id (28 hex digits)");
const HostName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "must be a host name: a-z, 0-9, '.', '_', '-', at most 63");

/** A host token, or a drill's token: read-only, for one host, valid while its drill runs. */
type Actor = { role: "admin" } | { role: "host"; host: string; drill?: string };

export interface ServerOptions extends RepositoryOptions {
  dataDir: string;
  logger?: boolean | object;
  https?: { cert: Buffer; key: Buffer } | null;
  /** Restore drills: where the rescue kernel, keyring and limits are (dataDir is ours). */
  drills?: Omit<DrillEngineOptions, "dataDir">;
}

export interface LifeboatServer {
  app: FastifyInstance;
  repo: Repository;
  drills: DrillEngine;
  adminTokenFile: string;
}

const errorBody = (code: string, message: string, hint?: string) => ({
  error: { code, message, ...(hint ? { hint } : {}) },
});

/** Fastify's own error codes, as LB_ codes that say what was wrong with the request. */
function frameworkErrorCode(code: string | undefined): string {
  switch (code) {
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return "LB_SERVER_UNSUPPORTED_MEDIA_TYPE";
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return "LB_SERVER_BODY_TOO_LARGE";
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return "LB_SERVER_BAD_JSON";
    case "FST_ERR_MAX_PARAM_LENGTH":
    case "FST_ERR_BAD_URL":
      return "LB_SERVER_BAD_URL";
    default:
      return "LB_SERVER_BAD_REQUEST";
  }
}

const isBlobRoute = (request: FastifyRequest) =>
  (request.routeOptions.config as { blob?: boolean } | undefined)?.blob === true;

const wrongMediaType = (expected: string) =>
  new HttpError(
    415,
    "LB_SERVER_UNSUPPORTED_MEDIA_TYPE",
    `This route takes ${expected} only.`,
    "Set the Content-Type header; see /openapi.json.",
  );

const tooLarge = (limit: number) =>
  new HttpError(
    413,
    "LB_SERVER_BODY_TOO_LARGE",
    `The body is larger than this route's limit of ${limit} bytes.`,
    "Chunk blobs are at most 4 MiB + 4 KiB and manifests 256 MiB; check the client.",
  );

/** Malformed HTTP (not even a request fastify can route): a raw 400 with our error body. */
function writeClientError(error: NodeJS.ErrnoException, socket: Socket) {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [status, text] =
    error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request Timeout"]
      : error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large"]
        : [400, "Bad Request"];
  const body = JSON.stringify(
    errorBody(
      status === 400 ? "LB_SERVER_BAD_HTTP" : `LB_SERVER_HTTP_${status}`,
      `Malformed HTTP request: ${text}.`,
      "Send a well-formed HTTP/1.1 request; see /openapi.json.",
    ),
  );
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(error);
}

function denial(status: 401 | 403, message: string, hint: string) {
  return new HttpError(
    status,
    status === 401 ? "LB_AUTH_REQUIRED" : "LB_AUTH_FORBIDDEN",
    message,
    hint,
  );
}

export async function createServer(options: ServerOptions): Promise<LifeboatServer> {
  let repo: Repository;
  try {
    await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    repo = new Repository(options.dataDir, options);
  } catch (error) {
    throw environmentError(
      "LB_SERVER_DATA_DIR",
      `Can't open the data directory ${options.dataDir}: ${(error as Error).message}.`,
      "Give a directory the server may create and write (--data DIR), on a local filesystem.",
      error,
    );
  }
  await repo.open();
  const adminTokenFile = path.join(options.dataDir, "admin.token");
  if (!repo.catalog.hasAdmin()) {
    const token = newToken("lba_");
    await writeFile(adminTokenFile, `${token}\n`, { mode: 0o600 });
    await chmod(adminTokenFile, 0o600);
    repo.catalog.addAdminToken(hashToken(token));
  }

  const app = Fastify({
    // JSON lines to stderr; stdout stays free. Tokens never reach the log: the authorization
    // header is redacted should a request ever be logged with its headers.
    logger: options.logger ?? {
      level: "info",
      redact: ["req.headers.authorization"],
      stream: process.stderr,
    },
    bodyLimit: 64 * 1024 * 1024,
    // Errors raised before a route is found (bad URL encoding, over-long ids, malformed
    // HTTP) get the same error body as everything else.
    frameworkErrors: (error, _request, reply) =>
      (reply as FastifyReply)
        .status(400)
        .send(
          errorBody(
            frameworkErrorCode(error.code),
            error.message.slice(0, 300),
            "Path parameters are ids: 64 or 28 lowercase hex digits, or a host name.",
          ),
        ),
    clientErrorHandler: writeClientError,
    // One line per request is noise at backup rates (hundreds of chunks a second); commits,
    // denials, damage and errors are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    ...(options.https ? { https: options.https } : {}),
  }).withTypeProvider<ZodTypeProvider>();
  // Drills: a restart first stops what a killed server left running (engine.ts).
  const drills = new DrillEngine(repo.catalog, app.log, {
    ...options.drills,
    dataDir: options.dataDir,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // JSON routes take application/json only (anything else is a 415), blob routes take
  // application/octet-stream only. Blobs are streamed to disk by the handler, never
  // buffered here; a declared length over the route's limit is refused before any is read.
  app.removeContentTypeParser("text/plain");
  app.addContentTypeParser("application/octet-stream", (request, payload, done) => {
    if (!isBlobRoute(request)) return done(wrongMediaType("application/json"), undefined);
    const declared = Number(request.headers["content-length"] ?? 0);
    if (declared > request.routeOptions.bodyLimit)
      return done(tooLarge(request.routeOptions.bodyLimit), undefined);
    done(null, payload);
  });
  app.addHook("onRequest", async (request) => {
    const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
    if (isBlobRoute(request) && type !== "application/octet-stream")
      throw wrongMediaType("application/octet-stream");
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "Lifeboat backup server", version: LIFEBOAT_VERSION },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  const docs = swaggerUiFiles();
  if (docs !== null) {
    await app.register(fastifySwaggerUi, {
      routePrefix: "/docs",
      baseDir: docs,
      logo: { type: "image/svg+xml", content: readFileSync(path.join(docs, "logo.svg")) },
    });
  } else {
    app.log.warn(
      "The docs page is off: swagger-ui's files are neither in node_modules nor next to the bundle. /openapi.json still serves the API document.",
    );
  }

  app.setErrorHandler((error: unknown, request, reply) => {
    const send = (status: number, code: string, message: string, hint?: string) =>
      reply.status(status).send(errorBody(code, message, hint));
    if (hasZodFastifySchemaValidationErrors(error)) {
      return send(
        400,
        "LB_SERVER_BAD_REQUEST",
        `Invalid request: ${error.validation.map((v) => `${v.instancePath || v.params?.issue ? `${v.instancePath}` : ""} ${v.message}`.trim()).join("; ")}`.slice(
          0,
          2000,
        ),
        "Check the request against /openapi.json.",
      );
    }
    // The catalog could not grow (SQLITE_FULL): the same clear 507 as a full blob write.
    const disk = diskError(error, options.dataDir);
    if (disk instanceof HttpError) error = disk;
    if (error instanceof HttpError) {
      if (error.status === 401 || error.status === 403)
        request.log.warn(
          {
            actor: actorName(request),
            route: `${request.method} ${request.routeOptions.url ?? request.url.split("?")[0]}`,
            reason: error.message,
          },
          "denied",
        );
      return send(error.status, error.code, error.message, error.hint);
    }
    const e = error as { statusCode?: number; code?: string; message?: string };
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      const code = frameworkErrorCode(e.code);
      if (code === "LB_SERVER_UNSUPPORTED_MEDIA_TYPE")
        return send(
          415,
          code,
          `Content-Type ${String(request.headers["content-type"]).slice(0, 100)} is not accepted here; this route takes application/json.`,
          "Send the body as JSON with Content-Type: application/json.",
        );
      if (code === "LB_SERVER_BODY_TOO_LARGE")
        return send(
          413,
          code,
          `The request body is larger than this route's limit of ${request.routeOptions.bodyLimit} bytes.`,
          "Send fewer ids per request; see /openapi.json.",
        );
      return send(
        e.statusCode,
        code,
        e.message ?? "Bad request",
        "Check the request against /openapi.json.",
      );
    }
    if (error instanceof LifeboatError) return send(500, error.code, error.message, error.hint);
    request.log.error({ err: error }, "internal error");
    return send(500, "LB_SERVER_INTERNAL", "Internal server error; see the server log.");
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(
        errorBody(
          "LB_SERVER_NOT_FOUND",
          `No route ${request.method} ${request.url.split("?")[0]!.slice(0, 200)}.`,
          "See /openapi.json for the API.",
        ),
      ),
  );

  /** The caller: undefined without a bearer token, null for a token nobody holds. */
  const identify = (request: FastifyRequest): Actor | null | undefined => {
    const header = request.headers.authorization;
    const match = typeof header === "string" ? /^Bearer (\S+)$/.exec(header) : null;
    if (!match) return undefined;
    const hash = hashToken(match[1]!);
    if (repo.catalog.isAdminToken(hash)) return { role: "admin" };
    const host = repo.catalog.hostForToken(hash);
    if (host) return { role: "host", host };
    const drill = drills.actorForToken(hash);
    return drill ? { role: "host", host: drill.host, drill: drill.drill } : null;
  };
  /** Who sent a request, for denial logs; never the token itself. */
  const actorName = (request: FastifyRequest): string => {
    const actor = identify(request);
    if (actor === undefined) return "anonymous";
    if (actor === null) return "unknown token";
    if (actor.role === "admin") return "admin";
    return actor.drill ? `drill:${actor.drill}` : `host:${actor.host}`;
  };
  const actorOf = (request: FastifyRequest): Actor => {
    const actor = identify(request);
    if (actor === undefined)
      throw denial(
        401,
        "No bearer token in the Authorization header.",
        "Pass --token, LIFEBOAT_TOKEN, or token in /etc/lifeboat/agent.json.",
      );
    if (actor === null)
      throw denial(
        401,
        "The token is not valid on this server.",
        "Use the token 'lifeboat host add' printed, or the admin token from DATA/admin.token.",
      );
    // A drill's rescue system reads its host's snapshots and files its recovery report.
    if (
      actor.role === "host" &&
      actor.drill &&
      request.method !== "GET" &&
      !(request.method === "POST" && request.routeOptions.url === "/v1/recoveries")
    ) {
      throw forbidden(
        request,
        actor.host,
        actor.drill,
        `A drill's token only reads ${actor.host}'s snapshots and reports its recovery.`,
        "Drills never write backups; use the host's own token.",
      );
    }
    return actor;
  };
  /** A host token asking for more than it may: recorded in the audit trail, then 403. */
  const forbidden = (
    request: FastifyRequest,
    host: string,
    target: string | null,
    message: string,
    hint: string,
  ) => {
    repo.catalog.audit(
      `host:${host}`,
      `${request.method} ${request.routeOptions.url}`,
      target,
      "denied",
    );
    return denial(403, message, hint);
  };
  const requireAdmin = (request: FastifyRequest) => {
    const actor = actorOf(request);
    if (actor.role !== "admin") {
      throw forbidden(
        request,
        actor.host,
        null,
        `Host ${actor.host} may not do this; only the admin can.`,
        "Run it with the admin token (--token-file DATA/admin.token).",
      );
    }
    return actor;
  };
  /** The host a request acts for: its own for host tokens, the named one for the admin. */
  const hostScope = (request: FastifyRequest, asked: string | undefined): string | null => {
    const actor = actorOf(request);
    if (actor.role === "admin") return asked ?? null;
    if (asked !== undefined && asked !== actor.host) {
      throw forbidden(
        request,
        actor.host,
        asked,
        `Host ${actor.host} can't see host ${asked}.`,
        "A host token only reaches its own host's snapshots.",
      );
    }
    return actor.host;
  };
  const ownSnapshot = (request: FastifyRequest, id: string) => {
    const actor = actorOf(request);
    const row = repo.catalog.snapshot(id);
    if (!row || row.state !== "committed" || (actor.role === "host" && row.host !== actor.host)) {
      throw new HttpError(
        404,
        "LB_SERVER_NO_SUCH_SNAPSHOT",
        `No snapshot ${id}.`,
        "List them with 'lifeboat snapshots'.",
      );
    }
    return row;
  };
  const pending = (request: FastifyRequest, id: string) => {
    const actor = actorOf(request);
    const row = repo.catalog.snapshot(id);
    const host = actor.role === "admin" ? (row?.host ?? "") : actor.host;
    return repo.pendingFor(id, host);
  };
  const errors = {
    400: ErrorBodySchema,
    401: ErrorBodySchema,
    403: ErrorBodySchema,
    404: ErrorBodySchema,
  };

  app.get(
    "/v1/health",
    {
      schema: {
        security: [],
        response: { 200: z.object({ ok: z.literal(true), version: z.string() }) },
      },
    },
    async () => ({ ok: true as const, version: LIFEBOAT_VERSION }),
  );

  app.get(
    "/v1/whoami",
    {
      schema: {
        response: {
          200: z.object({ role: z.enum(["admin", "host"]), host: z.string().optional() }),
          ...errors,
        },
      },
    },
    async (request) => actorOf(request),
  );

  app.post(
    "/v1/hosts",
    {
      schema: {
        body: z.object({ name: HostName }),
        response: {
          201: z.object({ name: z.string(), token: z.string() }),
          409: ErrorBodySchema,
          ...errors,
        },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      const { name } = request.body;
      if (repo.catalog.hostExists(name))
        throw new HttpError(
          409,
          "LB_SERVER_HOST_EXISTS",
          `Host ${name} already exists.`,
          "Pick another name; a host's token is shown only once, when it is added.",
        );
      const token = newToken("lbh_");
      repo.catalog.addHost(name, hashToken(token));
      repo.catalog.audit("admin", "host add", name, "ok");
      return reply.status(201).send({ name, token });
    },
  );

  app.get(
    "/v1/hosts",
    {
      schema: {
        response: {
          200: z.object({
            hosts: z.array(
              z.object({
                name: z.string(),
                createdAt: z.string(),
                snapshots: z.number(),
                lastBackup: z.string().nullable(),
              }),
            ),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      return { hosts: repo.catalog.listHosts() };
    },
  );

  app.post(
    "/v1/snapshots",
    {
      schema: {
        body: z.object({
          host: HostName.optional(),
          keyId: z
            .string()
            .regex(/^[0-9a-f]{16}$/)
            .nullable(),
          parent: z.string().max(64).nullable(),
        }),
        response: { 201: z.object({ id: z.string(), expiresAt: z.string() }), ...errors },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request);
      const host = hostScope(
        request,
        request.body.host ?? (actor.role === "host" ? actor.host : undefined),
      );
      if (!host)
        throw new HttpError(
          400,
          "LB_SERVER_BAD_REQUEST",
          "The admin token must name the host the snapshot is for.",
          'Send {"host": NAME, ...}, or use that host\'s own token.',
        );
      if (!repo.catalog.hostExists(host))
        throw new HttpError(
          404,
          "LB_SERVER_NO_SUCH_HOST",
          `No host ${host}.`,
          "Add it with 'lifeboat host add NAME'.",
        );
      return reply
        .status(201)
        .send(repo.createSnapshot(host, request.body.keyId, request.body.parent));
    },
  );

  app.post(
    "/v1/snapshots/:id/missing",
    {
      schema: {
        params: z.object({ id: SnapshotId }),
        body: z.object({ ids: z.array(Hex64).max(20000) }),
        response: { 200: z.object({ missing: z.array(z.string()) }), ...errors },
      },
    },
    async (request) => {
      pending(request, request.params.id);
      return { missing: repo.catalog.missingAndHold(request.params.id, request.body.ids) };
    },
  );

  app.put(
    "/v1/chunks/:id",
    {
      bodyLimit: MAX_CHUNK_BLOB,
      config: { blob: true },
      schema: {
        params: z.object({ id: Hex64 }),
        querystring: z.object({ snapshot: SnapshotId }),
        headers: z.object({
          "x-blob-sha256": Hex64,
          "content-type": z.literal("application/octet-stream"),
        }),
        response: {
          200: z.object({ stored: z.literal(false) }),
          201: z.object({ stored: z.literal(true) }),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      pending(request, request.query.snapshot);
      const result = await repo.putChunk(
        request.query.snapshot,
        request.params.id,
        request.body as Readable,
        request.headers["x-blob-sha256"],
      );
      return result === "created"
        ? reply.status(201).send({ stored: true as const })
        : reply.status(200).send({ stored: false as const });
    },
  );

  app.put(
    "/v1/snapshots/:id/manifest",
    {
      bodyLimit: MAX_MANIFEST_BLOB,
      config: { blob: true },
      schema: {
        params: z.object({ id: SnapshotId }),
        headers: z.object({
          "x-blob-sha256": Hex64,
          "content-type": z.literal("application/octet-stream"),
        }),
        response: { 201: z.object({ stored: z.literal(true) }), ...errors },
      },
    },
    async (request, reply) => {
      pending(request, request.params.id);
      await repo.putManifest(
        request.params.id,
        request.body as Readable,
        request.headers["x-blob-sha256"],
      );
      return reply.status(201).send({ stored: true as const });
    },
  );

  app.post(
    "/v1/snapshots/:id/commit",
    {
      bodyLimit: 256 * 1024 * 1024,
      schema: {
        params: z.object({ id: SnapshotId }),
        body: z.object({
          chunks: z.array(Hex64).max(5_000_000),
          stats: BackupStatsSchema,
          summary: z.record(z.string(), z.unknown()).optional(),
        }),
        response: {
          200: z.object({ id: z.string(), committedAt: z.string() }),
          409: ErrorBodySchema,
          ...errors,
        },
      },
    },
    async (request) => {
      // A commit retried after its answer was lost: the snapshot is already visible.
      const done = repo.catalog.snapshot(request.params.id);
      const actor = actorOf(request);
      if (
        done?.state === "committed" &&
        (actor.role === "admin" || actor.host === done.host) &&
        done.committed_at
      )
        return { id: done.id, committedAt: done.committed_at };
      const row = pending(request, request.params.id);
      const committedAt = await repo.commit(
        row.id,
        request.body.chunks,
        request.body.stats,
        request.body.summary ?? null,
      );
      repo.catalog.audit(`host:${row.host}`, "commit", row.id, "ok");
      try {
        drills.snapshotCommitted(row.host, row.id);
      } catch (error) {
        request.log.warn({ err: error, snapshot: row.id }, "no drill for this snapshot");
      }
      request.log.info(
        { snapshot: row.id, host: row.host, chunks: request.body.chunks.length },
        "snapshot committed",
      );
      return { id: row.id, committedAt };
    },
  );

  app.get(
    "/v1/snapshots",
    {
      schema: {
        querystring: z.object({ host: HostName.optional() }),
        response: { 200: z.object({ snapshots: z.array(SnapshotInfoSchema) }), ...errors },
      },
    },
    async (request) => {
      const host = hostScope(request, request.query.host);
      return { snapshots: repo.catalog.listSnapshots(host).map(snapshotInfo) };
    },
  );

  app.get(
    "/v1/snapshots/:id",
    {
      schema: {
        params: z.object({ id: SnapshotId }),
        response: { 200: SnapshotInfoSchema, ...errors },
      },
    },
    async (request) => snapshotInfo(ownSnapshot(request, request.params.id)),
  );

  const noSuchChunk = (id: string) =>
    new HttpError(
      404,
      "LB_SERVER_NO_SUCH_CHUNK",
      `No chunk ${id} for this token.`,
      "Run 'lifeboat verify' if a snapshot needs it.",
    );

  const sendBlob = (
    reply: FastifyReply,
    kind: "chunks" | "manifests",
    id: string,
    expected: string,
    log: FastifyRequest["log"],
  ) => {
    // Re-hash while sending; on a mismatch, destroy the response so the client never gets
    // a complete body of wrong bytes.
    const hash = createHash("sha256");
    const check = new Transform({
      transform(data: Buffer, _enc, callback) {
        hash.update(data);
        callback(null, data);
      },
      flush(callback) {
        const actual = hash.digest("hex");
        if (actual !== expected) {
          log.error({ kind, id, expected, actual }, "stored blob is damaged; response aborted");
          callback(new Error(`stored ${kind} blob ${id} is damaged`));
        } else callback();
      },
    });
    reply.header("content-type", "application/octet-stream").header("x-blob-sha256", expected);
    return reply.send(repo.store.read(kind, id).pipe(check));
  };

  /**
   * A chunk blob (at most a few MiB), read whole and sent with the SHA-256 the catalog
   * recorded for it, unhashed here: every reader checks it (restore decodes it against its
   * id, and hashes it only when that fails; an export compares it with this hash). Hashing
   * each one before sending took 0.7 s of the server's CPU per 500 MB restored, on the
   * machine the restore itself runs on.
   */
  const sendChunk = async (reply: FastifyReply, id: string, expected: string) => {
    const data = await repo.store.readWhole("chunks", id).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") throw noSuchChunk(id);
      throw error;
    });
    return reply
      .header("content-type", "application/octet-stream")
      .header("x-blob-sha256", expected)
      .send(data);
  };

  app.get(
    "/v1/snapshots/:id/manifest",
    { schema: { params: z.object({ id: SnapshotId }) } },
    async (request, reply) => {
      const row = ownSnapshot(request, request.params.id);
      return sendBlob(reply, "manifests", row.id, row.manifest_hash!, request.log);
    },
  );

  app.get(
    "/v1/chunks/:id",
    { schema: { params: z.object({ id: Hex64 }) } },
    async (request, reply) => {
      const actor = actorOf(request);
      const row = repo.catalog.chunk(request.params.id);
      const allowed =
        row?.state === "present" &&
        (actor.role === "admin" || repo.catalog.hostMayRead(actor.host, row.id));
      if (!row || !allowed) throw noSuchChunk(request.params.id);
      return sendChunk(reply, row.id, row.blob_hash);
    },
  );

  app.delete(
    "/v1/snapshots/:id",
    {
      schema: {
        params: z.object({ id: SnapshotId }),
        response: { 200: z.object({ forgotten: z.string() }), ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const row = repo.catalog.snapshot(request.params.id);
      if (!row || row.state !== "committed")
        throw new HttpError(404, "LB_SERVER_NO_SUCH_SNAPSHOT", `No snapshot ${request.params.id}.`);
      await repo.forget([row.id]);
      repo.catalog.audit("admin", "forget", row.id, "ok");
      return { forgotten: row.id };
    },
  );

  const Keep = z.number().int().nonnegative().max(1_000_000).optional();
  app.post(
    "/v1/prune",
    {
      schema: {
        body: z.object({
          host: HostName.optional(),
          keepLast: Keep,
          keepHourly: Keep,
          keepDaily: Keep,
          keepWeekly: Keep,
          keepMonthly: Keep,
          dryRun: z.boolean().optional(),
        }),
        response: {
          200: PruneResultSchema,
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const { host, dryRun, ...policy } = request.body;
      if (host !== undefined && !repo.catalog.hostExists(host))
        throw new HttpError(
          404,
          "LB_SERVER_NO_SUCH_HOST",
          `No host ${host}.`,
          "List the hosts with 'lifeboat host list'.",
        );
      let plans;
      try {
        plans = repo.plan(host ?? null, policy);
      } catch (error) {
        if (error instanceof LifeboatError)
          throw new HttpError(400, error.code, error.message, error.hint);
        throw error;
      }
      if (dryRun) return { hosts: plans, gc: null };
      await repo.forget(plans.flatMap((p) => p.forget));
      const gc = await repo.collect();
      repo.catalog.audit(
        "admin",
        "prune",
        host ?? "*",
        `forgot ${plans.reduce((n, p) => n + p.forget.length, 0)}, collected ${gc.chunks}`,
      );
      return { hosts: plans, gc };
    },
  );

  app.post(
    "/v1/verify",
    { schema: { body: z.object({ readData: z.boolean().optional() }).optional() } },
    async (request, reply) => {
      const actor = actorOf(request);
      const host = actor.role === "admin" ? null : actor.host;
      reply.header("content-type", "application/x-ndjson");
      const events = repo.verify(host, request.body?.readData ?? false);
      return reply.send(
        Readable.from(
          (async function* () {
            for await (const event of events) yield `${JSON.stringify(event)}\n`;
          })(),
        ),
      );
    },
  );

  app.post(
    "/v1/recoveries",
    {
      bodyLimit: 8 * 1024 * 1024,
      schema: {
        body: RecoveryReportSchema,
        response: { 201: z.object({ id: z.number() }), ...errors },
      },
    },
    async (request, reply) => {
      const host = hostScope(request, request.body.host);
      if (host === null) {
        throw new HttpError(
          400,
          "LB_SERVER_HOST_REQUIRED",
          "The admin token reports a recovery for a host, and none was named.",
          'Put "host" in the report.',
        );
      }
      if (!repo.catalog.hostExists(host)) {
        throw new HttpError(404, "LB_SERVER_NO_SUCH_HOST", `No host ${host}.`);
      }
      const id = repo.catalog.addRecovery(host, request.body);
      repo.catalog.audit(
        actorName(request),
        "recovery report",
        host,
        request.body.ok ? "ok" : "failed",
      );
      return reply.status(201).send({ id });
    },
  );

  app.get(
    "/v1/recoveries",
    {
      schema: {
        querystring: z.object({ host: HostName.optional() }),
        response: { 200: z.object({ recoveries: z.array(RecoveryInfoSchema) }), ...errors },
      },
    },
    async (request) => ({
      recoveries: repo.catalog.listRecoveries(hostScope(request, request.query.host)),
    }),
  );

  app.get(
    "/v1/recoveries/:id/log",
    { schema: { params: z.object({ id: z.coerce.number().int().positive() }) } },
    async (request, reply) => {
      const actor = actorOf(request);
      const row = repo.catalog.recoveryLog(request.params.id);
      if (!row || (actor.role === "host" && row.host !== actor.host)) {
        throw new HttpError(404, "LB_SERVER_NO_SUCH_RECOVERY", `No recovery ${request.params.id}.`);
      }
      return reply.header("content-type", "text/plain; charset=utf-8").send(row.log);
    },
  );

  registerDrillRoutes(app, {
    engine: drills,
    catalog: repo.catalog,
    requireAdmin,
    hostScope,
    hostName: HostName,
  });

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  app.addHook("onReady", async () => drills.start(app));
  app.addHook("onClose", async () => {
    await drills.close();
    repo.close();
  });
  return { app, repo, drills, adminTokenFile };
}

/**
 * The directory of swagger-ui's static files: the package's own in a checkout, or
 * swagger-ui/ next to the bundled CLI (scripts/bundle.ts copies it there); the plugin's
 * default looks beside its own module, which a bundle doesn't have.
 */
function swaggerUiFiles(): string | null {
  const candidates = [path.join(path.dirname(fileURLToPath(import.meta.url)), "swagger-ui")];
  try {
    const require = createRequire(import.meta.url);
    const pkg = require.resolve("@fastify/swagger-ui/package.json");
    candidates.unshift(path.join(path.dirname(pkg), "static"));
  } catch {
    // Bundled, with no node_modules around: the copy next to the bundle.
  }
  return candidates.find((dir) => existsSync(path.join(dir, "logo.svg"))) ?? null;
}
