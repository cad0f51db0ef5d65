// The `lifeboat layout ...` commands. Each lives in its own module; this file lists them.
import type { Command } from "../command.ts";
import { layoutCaptureCommand } from "./layout-capture.ts";
import { layoutCheckCommand } from "./layout-check.ts";
import { layoutImportRearCommand } from "./layout-import-rear.ts";
import { layoutApplyCommand, layoutPlanCommand } from "./layout-plan.ts";

export const layoutCommands: Command[] = [
  layoutCaptureCommand,
  layoutCheckCommand,
  layoutPlanCommand,
  layoutApplyCommand,
  layoutImportRearCommand,
];
