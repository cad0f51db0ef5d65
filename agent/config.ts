// The agent's configuration file, /etc/lifeboat/agent.json (LIFEBOAT_CONFIG names another).
// Every field is optional; flags and environment variables override it.

import { readFile } from "node:fs/promises";
import { z } from "zod";
import { inputError, usageError } from "../common/errors.ts";

export const DEFAULT_CONFIG_FILE = "/etc/lifeboat/agent.json";

export const AgentConfigSchema = z
  .object({
    /** The backup server, e.g. https://backup.example.internal:8450 */
    server: z.string().url().optional(),
    /** This host's token (prefer tokenFile, which can be mode 0600). */
    token: z.string().optional(),
    tokenFile: z.string().optional(),
    /** A CA (or self-signed certificate) to trust for an https server. */
    ca: z.string().optional(),
    /** The repository key file; without one, backups are not encrypted. */
    keyFile: z.string().optional(),
    /** The host name backups are filed under (default: the machine's hostname). */
    host: z.string().optional(),
    /** Extra exclude patterns (absolute paths or globs). */
    excludes: z.array(z.string()).default([]),
    hooks: z
      .object({ pre: z.array(z.string()).default([]), post: z.array(z.string()).default([]) })
      .default({ pre: [], post: [] }),
    /** Start a new full tar stream after this many streams in a chain. */
    fullEvery: z.number().int().min(1).max(100).default(7),
    /** The agent's local state (tar incremental state, file index cache). */
    stateDir: z.string().optional(),
  })
  .strict();
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export async function loadAgentConfig(
  file?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AgentConfig | null> {
  const explicit = file ?? env.LIFEBOAT_CONFIG;
  const path = explicit || DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && !explicit) return null;
    throw inputError(
      "LB_CONFIG_UNREADABLE",
      `Can't read the agent config ${path}: ${(error as Error).message}.`,
      explicit ? "Check LIFEBOAT_CONFIG." : `Fix the file's permissions, or remove ${path}.`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw inputError(
      "LB_CONFIG_INVALID",
      `The agent config ${path} is not valid JSON: ${(error as Error).message}.`,
      "Fix the syntax; see the README for an example.",
    );
  }
  const result = AgentConfigSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw inputError(
      "LB_CONFIG_INVALID",
      `The agent config ${path} has a bad field ${issue.path.join(".") || "(top level)"}: ${issue.message}.`,
      "Fix that field; see the README for the fields and an example.",
    );
  }
  return result.data;
}

/** What the command line gave for the connection; each wins over env and config. */
export interface ConnectionFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  ca?: string;
}

export interface Connection {
  server: string;
  token: string;
  /** A CA (or self-signed certificate) to trust, PEM. */
  ca: Buffer | null;
}

/**
 * Where the server and the token come from: flags (--server, --token/--token-file, --ca),
 * then the environment (LIFEBOAT_SERVER, LIFEBOAT_TOKEN, LIFEBOAT_CA), then the agent
 * config (LIFEBOAT_CONFIG or /etc/lifeboat/agent.json). Pass `config` when the caller has
 * loaded it already, else `configPath` (or neither, for the default).
 */
export async function resolveConnection(options: {
  flags: ConnectionFlags;
  env?: NodeJS.ProcessEnv;
  configPath?: string;
  config?: AgentConfig | null;
}): Promise<Connection> {
  const { flags } = options;
  const env = options.env ?? process.env;
  const config =
    options.config !== undefined ? options.config : await loadAgentConfig(options.configPath, env);
  const server = flags.server ?? env.LIFEBOAT_SERVER ?? config?.server;
  if (!server) {
    throw usageError(
      "LB_NO_SERVER",
      "No backup server given.",
      'Pass --server URL, set LIFEBOAT_SERVER, or put "server" in /etc/lifeboat/agent.json (or the file LIFEBOAT_CONFIG names).',
    );
  }
  if (!/^https?:\/\/[^/\s]+/.test(server)) {
    throw usageError(
      "LB_BAD_SERVER_URL",
      `The server URL ${server} is not an http:// or https:// URL.`,
      "For example --server http://127.0.0.1:8450",
    );
  }
  const token =
    flags.token ??
    (flags.tokenFile ? await readTokenFile(flags.tokenFile) : undefined) ??
    env.LIFEBOAT_TOKEN ??
    config?.token ??
    (config?.tokenFile ? await readTokenFile(config.tokenFile) : undefined);
  if (!token) {
    throw usageError(
      "LB_NO_TOKEN",
      "No access token given.",
      'Pass --token or --token-file, set LIFEBOAT_TOKEN, or put "token"/"tokenFile" in /etc/lifeboat/agent.json (or the file LIFEBOAT_CONFIG names).',
    );
  }
  const caFile = flags.ca ?? env.LIFEBOAT_CA ?? config?.ca;
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
  return { server, token, ca };
}

async function readTokenFile(file: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(file, "utf8")).trim();
  } catch (error) {
    throw inputError(
      "LB_TOKEN_FILE",
      `Can't read the token file ${file}: ${(error as Error).message}.`,
      "Give the file 'lifeboat server' wrote (DATA/admin.token) or one holding a host token.",
    );
  }
  if (!token) {
    throw inputError(
      "LB_TOKEN_FILE",
      `The token file ${file} is empty.`,
      "Put the token 'lifeboat host add' printed into it (or use DATA/admin.token).",
    );
  }
  return token;
}
