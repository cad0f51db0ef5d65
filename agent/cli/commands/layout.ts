// The `lifeboat layout ...` commands. Each lives in its own module; this file lists them.
import type { Command } from "../command.ts";
import { layoutCaptureCommand } from "./layout-capture.ts";

export const layoutCommands: Command[] = [layoutCaptureCommand];
