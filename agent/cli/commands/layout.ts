// The `lifeboat layout ...` commands. Each lives in its own module; this file lists them.
import type { Command } from "../command.ts";

export const layoutCommands: Command[] = [];
