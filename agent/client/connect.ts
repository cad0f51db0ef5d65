// The connection options every client command takes, and the client they make. The
// precedence (flags, environment, config) is resolveConnection's, in agent/config.ts.

import type { CommandContext, OptionSpec } from "../cli/command.ts";
import { loadAgentConfig, resolveConnection, type AgentConfig } from "../config.ts";
import { ApiClient } from "./api.ts";

export const connectionOptions: Record<string, OptionSpec> = {
  server: {
    type: "string",
    value: "URL",
    description: "Backup server URL (else LIFEBOAT_SERVER, else config)",
  },
  token: {
    type: "string",
    value: "TOKEN",
    description: "Access token (else LIFEBOAT_TOKEN, else config)",
  },
  ca: {
    type: "string",
    value: "FILE",
    description: "Trust this CA or self-signed certificate (PEM) for an https server",
  },
  "token-file": {
    type: "string",
    value: "FILE",
    description: "Read the token from a file, e.g. DATA/admin.token",
  },
};

export const jsonOption: Record<string, OptionSpec> = {
  json: { type: "boolean", description: "Print machine-readable JSON" },
};

/** A client for the server the command line, the environment or the default config names. */
export async function openConfiguredClient(ctx: CommandContext): Promise<ApiClient> {
  return openClient(ctx, await loadAgentConfig());
}

/** A client for the server the command line, the environment or the config names. */
export async function openClient(
  ctx: CommandContext,
  config: AgentConfig | null,
): Promise<ApiClient> {
  const { server, token, ca } = await resolveConnection({
    flags: {
      server: ctx.string("server"),
      token: ctx.string("token"),
      tokenFile: ctx.string("token-file"),
      ca: ctx.string("ca"),
    },
    config,
  });
  return new ApiClient(server, token, { ca });
}
