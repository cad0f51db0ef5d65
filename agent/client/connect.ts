// Where the server and the token come from: flags, then the environment, then the agent
// config. One place, so every command behaves the same.

import { readFile } from "node:fs/promises";
import { inputError, usageError } from "../../common/errors.ts";
import type { CommandContext, OptionSpec } from "../cli/command.ts";
import type { AgentConfig } from "../config.ts";
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

async function tokenFromFile(file: string): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    throw inputError(
      "LB_TOKEN_FILE",
      `Can't read the token file ${file}: ${(error as Error).message}.`,
      "Give the file 'lifeboat server' wrote (DATA/admin.token) or one holding a host token.",
    );
  }
}

export async function openClient(
  ctx: CommandContext,
  config: AgentConfig | null,
): Promise<ApiClient> {
  const server = ctx.string("server") ?? process.env.LIFEBOAT_SERVER ?? config?.server;
  if (!server) {
    throw usageError(
      "LB_NO_SERVER",
      "No backup server given.",
      'Pass --server URL, set LIFEBOAT_SERVER, or put "server" in /etc/lifeboat/agent.json.',
    );
  }
  const tokenFile = ctx.string("token-file");
  const token =
    ctx.string("token") ??
    (tokenFile ? await tokenFromFile(tokenFile) : undefined) ??
    process.env.LIFEBOAT_TOKEN ??
    config?.token ??
    (config?.tokenFile ? await tokenFromFile(config.tokenFile) : undefined);
  if (!token) {
    throw usageError(
      "LB_NO_TOKEN",
      "No access token given.",
      'Pass --token or --token-file, set LIFEBOAT_TOKEN, or put "token"/"tokenFile" in /etc/lifeboat/agent.json.',
    );
  }
  const caFile = ctx.string("ca") ?? process.env.LIFEBOAT_CA ?? config?.ca;
  let ca: Buffer | null = null;
  if (caFile) {
    try {
      ca = await readFile(caFile);
    } catch (error) {
      throw inputError(
        "LB_CA_FILE",
        `Can't read the CA file ${caFile}: ${(error as Error).message}.`,
        "Give the PEM file of the CA that signed the server's certificate, or the certificate itself.",
      );
    }
  }
  return new ApiClient(server, token, { ca });
}
