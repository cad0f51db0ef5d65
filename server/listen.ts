// The server's listen address: checked by the CLI before anything starts, without loading
// the server itself (fastify and its plugins stay out of every other command).

import { usageError } from "../common/errors.ts";

export const DEFAULT_LISTEN = "127.0.0.1:8450";

export function parseListen(value: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw usageError(
      "LB_USAGE_LISTEN",
      `--listen ${value} is not HOST:PORT.`,
      `For example --listen ${DEFAULT_LISTEN} (loopback) or --listen [::1]:8450.`,
    );
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}
