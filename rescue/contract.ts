// What the rescue image holds where: the contract between the builder (rescue/build.ts) and
// the recovery engine that runs inside the image (lifeboat recover). Keep these paths fixed.

import { z } from "zod";
import type { AgentConfig } from "../agent/config.ts";

export const MODULES_PENDING = "modules.pending";

export const RESCUE_PATHS = {
  etc: "/etc/lifeboat",
  /** The captured layout document. */
  layout: "/etc/lifeboat/layout.json",
  /** The agent config, its file references rewritten to the paths below. */
  agentConfig: "/etc/lifeboat/agent.json",
  token: "/etc/lifeboat/token",
  repoKey: "/etc/lifeboat/repo.key",
  ca: "/etc/lifeboat/ca.pem",
  /** LUKS passphrase files, one per name given with --luks-key NAME=FILE. */
  luksDir: "/etc/lifeboat/luks",
  /** A restore drill's probes and sampled files (drill images only). */
  drillSpec: "/etc/lifeboat/drill.json",
  /** RescueInfo: what this image is. */
  info: "/etc/lifeboat/rescue.json",
  /** The bundled CLI, the Node it runs on, and the wrapper on PATH. */
  bundle: "/usr/lib/lifeboat/lifeboat.mjs",
  node: "/usr/lib/lifeboat/node",
  wrapper: "/usr/bin/lifeboat",
  /** The init's log, inside the running rescue system. */
  initLog: "/run/lifeboat/init.log",
  /**
   * Present while the init still loads the md, dm, filesystem and crypto modules; it sits in
   * recovery's state directory (/run/lifeboat), where `lifeboat recover` looks for it.
   */
  modulesPending: `/run/lifeboat/${MODULES_PENDING}`,
} as const;

/** Where an embedded snapshot export sits on the ISO, and where the rescue system sees it. */
export const EMBEDDED_SNAPSHOT_DIR = "lifeboat/snapshot";
export const MEDIUM_MOUNT = "/run/lifeboat/medium";
export const EMBEDDED_SNAPSHOT_MOUNTED = `${MEDIUM_MOUNT}/${EMBEDDED_SNAPSHOT_DIR}`;

/** The ISO's volume label; the planner never uses a disk that carries it (agent/layout). */
export const RESCUE_VOLUME_ID = "LIFEBOAT_RESCUE";

/** The line the init prints right before it starts the recovery UI (or the shell). */
export const RESCUE_READY_MARKER = "LIFEBOAT-RESCUE-READY";

export const RescueInfoSchema = z
  .object({
    /** Lifeboat's version that built the image. */
    version: z.string(),
    builtAt: z.string().datetime(),
    /** The host the image is for (the layout's hostname, or the config's host). */
    host: z.string().nullable(),
    /** The kernel release the image boots. */
    kernelVersion: z.string(),
  })
  .strict();
export type RescueInfo = z.infer<typeof RescueInfoSchema>;

export interface EmbeddedFile {
  /** Host file to copy. */
  source: string;
  /** Path inside the image. */
  dest: string;
  mode: number;
  /** A secret: the build output says it is inside the image. */
  secret: boolean;
  what: string;
}

/**
 * The agent config as the rescue image carries it: tokenFile, keyFile and ca point at the
 * copies inside the image; an inline token stays inline. Pure: returns the files to copy.
 * `baseDir` resolves relative paths in the config (the config file's directory).
 */
export function rewriteAgentConfig(
  config: AgentConfig,
  baseDir: string,
): { config: AgentConfig; files: EmbeddedFile[] } {
  const out: AgentConfig = { ...config };
  const files: EmbeddedFile[] = [];
  const resolve = (file: string) => (file.startsWith("/") ? file : `${baseDir}/${file}`);
  if (config.tokenFile !== undefined) {
    files.push({
      source: resolve(config.tokenFile),
      dest: RESCUE_PATHS.token,
      mode: 0o600,
      secret: true,
      what: "the host token",
    });
    out.tokenFile = RESCUE_PATHS.token;
  }
  if (config.keyFile !== undefined) {
    files.push({
      source: resolve(config.keyFile),
      dest: RESCUE_PATHS.repoKey,
      mode: 0o600,
      secret: true,
      what: "the repository key",
    });
    out.keyFile = RESCUE_PATHS.repoKey;
  }
  if (config.ca !== undefined) {
    files.push({
      source: resolve(config.ca),
      dest: RESCUE_PATHS.ca,
      mode: 0o644,
      secret: false,
      what: "the server's CA",
    });
    out.ca = RESCUE_PATHS.ca;
  }
  // The backup-side settings mean nothing in the rescue system.
  delete out.stateDir;
  return { config: out, files };
}

/** A LUKS key name becomes a file name under luksDir: no slashes, no dot files. */
export function luksKeyDest(name: string): string | undefined {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*$/.test(name) && name !== "*") return undefined;
  return `${RESCUE_PATHS.luksDir}/${name}`;
}
