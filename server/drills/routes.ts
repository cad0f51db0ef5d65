// The drill API: ask for a drill (admin), follow it as server-sent events, read its record,
// JUnit XML and evidence files, set a host's drill settings (admin), and the evidence
// report as JSON or one self-contained HTML page. Host tokens see their own host only.

import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { ErrorBodySchema } from "../../common/api.ts";
import {
  DrillRequestSchema,
  DrillSchema,
  DrillSettingsSchema,
  StandbyStartSchema,
  StandbyStateSchema,
  type Drill,
  type DrillEvent,
} from "../../common/drills.ts";
import { LifeboatError } from "../../common/errors.ts";
import type { Catalog } from "../catalog.ts";
import { HttpError } from "../store.ts";
import type { DrillEngine } from "./engine.ts";

import { renderJunit } from "./junit.ts";
import { renderReportHtml, reportJson, type ReportInput } from "./report.ts";

export interface DrillRouteContext {
  engine: DrillEngine;
  catalog: Catalog;
  requireAdmin(request: FastifyRequest): unknown;
  /** The host a request may see: its own for host tokens, the named one (or all) for admin. */
  hostScope(request: FastifyRequest, asked: string | undefined): string | null;
  hostName: z.ZodString;
}

const DrillId = z.string().regex(/^d[0-9a-z]{6,12}[0-9a-f]{10}$/, "must be a drill id");
const errors = {
  400: ErrorBodySchema,
  401: ErrorBodySchema,
  403: ErrorBodySchema,
  404: ErrorBodySchema,
};
const TERMINAL = new Set(["passed", "failed"]);

/** A usage error from the engine (bad schedule, say) as a 400 with its hint. */
function asBadRequest(error: unknown): never {
  if (error instanceof LifeboatError && !(error instanceof HttpError))
    throw new HttpError(400, error.code, error.message, error.hint);
  throw error;
}

export function registerDrillRoutes(
  app: FastifyInstance,
  { engine, catalog, requireAdmin, hostScope, hostName }: DrillRouteContext,
) {
  const api = app.withTypeProvider<ZodTypeProvider>();
  const visible = (request: FastifyRequest, id: string): Drill => {
    // Another host's drill is "not found" to a host token, as if it did not exist.
    const scope = hostScope(request, undefined);
    const drill = catalog.drill(id);
    if (!drill || (scope !== null && scope !== drill.host)) {
      throw new HttpError(
        404,
        "LB_DRILL_NOT_FOUND",
        `No drill ${id}.`,
        "List drills with 'lifeboat drill list'.",
      );
    }
    return drill;
  };

  api.post(
    "/v1/drills",
    {
      schema: {
        body: DrillRequestSchema.extend({ host: hostName }),
        response: { 202: DrillSchema, ...errors },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      return reply.status(202).send(engine.request(request.body, "manual"));
    },
  );

  api.get(
    "/v1/drills",
    {
      schema: {
        querystring: z.object({
          host: hostName.optional(),
          since: z.iso.datetime({ offset: true }).optional(),
        }),
        response: { 200: z.object({ drills: z.array(DrillSchema) }), ...errors },
      },
    },
    async (request) => ({
      drills: catalog.listDrills({
        host: hostScope(request, request.query.host),
        since: request.query.since ? new Date(request.query.since).toISOString() : undefined,
      }),
    }),
  );

  api.get(
    "/v1/drills/:id",
    {
      schema: { params: z.object({ id: DrillId }), response: { 200: DrillSchema, ...errors } },
    },
    async (request) => visible(request, request.params.id),
  );

  api.get(
    "/v1/drills/:id/junit",
    { schema: { params: z.object({ id: DrillId }) } },
    async (request, reply) =>
      reply
        .header("content-type", "application/xml; charset=utf-8")
        .send(renderJunit(visible(request, request.params.id))),
  );

  api.get(
    "/v1/drills/:id/evidence/:name",
    {
      schema: {
        params: z.object({ id: DrillId, name: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/) }),
      },
    },
    async (request, reply) => {
      const drill = visible(request, request.params.id);
      const file = engine.evidenceFile(drill, request.params.name);
      if (!file) {
        throw new HttpError(
          404,
          "LB_DRILL_NO_EVIDENCE",
          `Drill ${drill.id} has no evidence file ${request.params.name} (any more).`,
          `It keeps: ${drill.evidence.join(", ") || "nothing (expired by the evidence retention)"}.`,
        );
      }
      const type = file.endsWith(".png")
        ? "image/png"
        : file.endsWith(".json")
          ? "application/json"
          : "text/plain; charset=utf-8";
      return reply.header("content-type", type).send(createReadStream(file));
    },
  );

  // Progress as server-sent events: the record now, each phase as it starts and ends, and
  // the record again at the end, then the stream closes.
  api.get(
    "/v1/drills/:id/events",
    {
      schema: {
        params: z.object({ id: DrillId }),
        description:
          "text/event-stream: 'state' events carry the drill's record, 'phase' events a phase starting, done or failed; the stream ends with the final record.",
      },
    },
    async (request, reply) => {
      const drill = visible(request, request.params.id);
      reply.hijack();
      const out = reply.raw;
      out.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      const send = (event: DrillEvent) =>
        out.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      let unsubscribe = () => {};
      const end = () => {
        clearInterval(keepAlive);
        unsubscribe();
        out.end();
      };
      const keepAlive = setInterval(() => out.write(": keep-alive\n\n"), 15_000);
      unsubscribe = engine.subscribe(drill.id, (event) => {
        send(event);
        if (event.type === "state" && TERMINAL.has(event.drill.state)) end();
      });
      request.raw.on("close", end);
      // Subscribed first, then read: a drill that ends in between is still seen ending.
      const now = catalog.drill(drill.id)!;
      send({ type: "state", drill: now });
      if (TERMINAL.has(now.state)) end();
    },
  );

  api.get(
    "/v1/hosts/:host/drill-settings",
    {
      schema: {
        params: z.object({ host: hostName }),
        response: { 200: DrillSettingsSchema, ...errors },
      },
    },
    async (request) => {
      const host = hostScope(request, request.params.host)!;
      if (!catalog.hostExists(host))
        throw new HttpError(404, "LB_SERVER_NO_SUCH_HOST", `No host ${host}.`);
      return engine.settings(host);
    },
  );

  api.put(
    "/v1/hosts/:host/drill-settings",
    {
      schema: {
        params: z.object({ host: hostName }),
        body: DrillSettingsSchema,
        response: { 200: DrillSettingsSchema, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const host = request.params.host;
      if (!catalog.hostExists(host))
        throw new HttpError(404, "LB_SERVER_NO_SUCH_HOST", `No host ${host}.`);
      try {
        engine.setSettings(host, request.body);
      } catch (error) {
        asBadRequest(error);
      }
      catalog.audit("admin", "drill settings", host, "ok");
      return engine.settings(host);
    },
  );

  api.get(
    "/v1/report",
    {
      schema: {
        querystring: z.object({
          host: hostName.optional(),
          since: z.iso.datetime({ offset: true }).optional(),
          format: z.enum(["json", "html"]).default("json"),
        }),
      },
    },
    async (request, reply) => {
      const scope = hostScope(request, request.query.host);
      const names = scope ? [scope] : catalog.listHosts().map((h) => h.name);
      if (scope && !catalog.hostExists(scope))
        throw new HttpError(404, "LB_SERVER_NO_SUCH_HOST", `No host ${scope}.`);
      const input: ReportInput = {
        generatedAt: new Date(),
        since: request.query.since ? new Date(request.query.since) : null,
        hosts: names.map((name) => ({
          name,
          targets: catalog.drillSettings(name).targets,
          drills: catalog.listDrills({ host: name }),
        })),
      };
      if (request.query.format === "html")
        return reply
          .header("content-type", "text/html; charset=utf-8")
          .send(renderReportHtml(input));
      return reply
        .header("content-type", "application/json")
        .send(JSON.stringify(reportJson(input)));
    },
  );

  // --- warm standby (admin) ---------------------------------------------------------------

  api.get(
    "/v1/standby",
    { schema: { response: { 200: StandbyStateSchema, ...errors } } },
    async (request) => {
      requireAdmin(request);
      return engine.standby.state();
    },
  );

  api.post(
    "/v1/standby/:host/start",
    {
      schema: {
        params: z.object({ host: hostName }),
        body: StandbyStartSchema,
        response: {
          200: z.object({ host: z.string(), bootSeconds: z.number(), consoleLog: z.string() }),
          409: ErrorBodySchema,
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const started = await engine.standby.start(request.params.host, request.body);
      catalog.audit("admin", "standby start", request.params.host, "ok");
      return {
        host: request.params.host,
        bootSeconds: started.bootSeconds,
        consoleLog: started.log,
      };
    },
  );

  api.post(
    "/v1/standby/:host/stop",
    {
      schema: {
        params: z.object({ host: hostName }),
        response: { 200: z.object({ stopped: z.boolean() }), ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      return { stopped: await engine.standby.stop(request.params.host) };
    },
  );

  api.post(
    "/v1/standby/:host/export",
    {
      schema: {
        params: z.object({ host: hostName }),
        body: z.object({ format: z.enum(["qcow2", "raw"]) }),
        response: {
          200: z.object({ files: z.array(z.object({ name: z.string(), bytes: z.number() })) }),
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const { files } = await engine.standby.export(request.params.host, request.body.format);
      return {
        files: files.map((file) => ({ name: path.basename(file), bytes: statSync(file).size })),
      };
    },
  );

  api.get(
    "/v1/standby/:host/export/:name",
    { schema: { params: z.object({ host: hostName, name: z.string().max(64) }) } },
    async (request, reply) => {
      requireAdmin(request);
      const file = engine.standby.exportFile(request.params.host, request.params.name);
      if (!file) {
        throw new HttpError(
          404,
          "LB_STANDBY_NO_EXPORT",
          `No exported ${request.params.name} for ${request.params.host}.`,
          "Export first: POST /v1/standby/HOST/export ('lifeboat standby export').",
        );
      }
      return reply
        .header("content-type", "application/octet-stream")
        .header("content-length", String(statSync(file).size))
        .send(createReadStream(file));
    },
  );
}
