// planRestore: layout + target disks + options -> an ordered, resumable plan. Pure: no
// devices are touched, so a dry run is free and the plan a user reviews is the one that runs.

import { createHash } from "node:crypto";
import type { Layout } from "../schema.ts";
import { mapDisks } from "./mapping.ts";
import { fitLayout } from "./sizing.ts";
import { buildDeviceMap, buildSteps } from "./steps.ts";
import type { Plan, PlanOptions, PlanStep, TargetDisk } from "./types.ts";

export function planRestore(layout: Layout, targets: TargetDisk[], options: PlanOptions): Plan {
  const assignments = mapDisks(layout.disks, targets, options);
  const sizing = fitLayout(layout, assignments, targets);
  const deviceMap = buildDeviceMap(layout, assignments);
  const warnings = [...layout.warnings.map((w) => `capture: ${w}`)];
  const steps = buildSteps({ layout, assignments, targets, sizing, options, deviceMap, warnings });
  assertOrdered(steps);
  return {
    planId: planIdentity(steps),
    host: layout.host.hostname,
    disks: assignments,
    deviceMap,
    resizes: sizing.resizes,
    warnings,
    targetRoot: options.targetRoot,
    steps,
  };
}

/**
 * The plan id keys the resume journal. It covers every step except what the wipe steps
 * found on the targets: after a failed run the targets hold half a rebuild, and the rerun
 * must still count as the same plan (its wipe steps are finished and skipped).
 */
function planIdentity(steps: PlanStep[]): string {
  const stable = steps.map((s) => (s.kind === "wipe" ? { id: s.id } : s));
  return createHash("sha256").update(JSON.stringify(stable)).digest("hex").slice(0, 16);
}

/** Every step must come after the steps it depends on; anything else is a planner bug. */
export function assertOrdered(steps: PlanStep[]) {
  const seen = new Set<string>();
  for (const step of steps) {
    for (const dep of step.dependsOn) {
      if (!seen.has(dep))
        throw new Error(`plan order: ${step.id} depends on ${dep}, which does not come before it`);
    }
    if (seen.has(step.id)) throw new Error(`plan order: step ${step.id} appears twice`);
    seen.add(step.id);
  }
}

/** Everything the plan will destroy, for the confirmation text. */
export function destroyedBy(plan: Plan): string[] {
  return plan.steps.flatMap((s) => s.destroys);
}
