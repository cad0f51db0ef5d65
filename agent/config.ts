// The agent's configuration file, /etc/lifeboat/agent.json (LIFEBOAT_CONFIG names another).
// Every field is optional; flags and environment variables override it.

import { readFile } from "node:fs/promises";
import { z } from "zod";
import { inputError } from "../common/errors.ts";

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

export async function loadAgentConfig(file?: string): Promise<AgentConfig | null> {
  const explicit = file ?? process.env.LIFEBOAT_CONFIG;
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
