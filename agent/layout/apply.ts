// The executor: the only code that writes to disks. It runs the plan's rendered steps one
// at a time with bash, exactly as `layout plan --script` prints them, and reports progress
// as events. A failed step stops the run; rerunning the same plan resumes after the last
// finished step (the journal lives under LIFEBOAT_STATE_DIR, /run/lifeboat by default).

import { execa } from "execa";
import { access } from "node:fs/promises";
import path from "node:path";
import { environmentError, inputError } from "../../common/errors.ts";
import {
  DEFAULT_STATE_DIR,
  isJournaled,
  journalDir,
  renderPrelude,
  renderStep,
  stepMarkerName,
} from "../../layouts/plan/script.ts";
import { keyFileFor } from "../../layouts/plan/steps.ts";
import type { Plan, PlanStep } from "../../layouts/plan/types.ts";
import type { Layout } from "../../layouts/schema.ts";

export type ApplyEvent =
  | { type: "step-start"; index: number; total: number; step: PlanStep }
  | { type: "step-output"; index: number; text: string }
  | {
      type: "step-done";
      index: number;
      total: number;
      step: PlanStep;
      seconds: number;
      skipped: boolean;
    };

export interface ApplyOptions {
  keyFiles: Record<string, string>;
  /** Where the resume journal lives (LIFEBOAT_STATE_DIR, /run/lifeboat by default). */
  stateDir?: string;
  onEvent?: (event: ApplyEvent) => void;
}

/** Checks that need no writes: everything the plan will read must exist before step 1. */
export async function preflight(plan: Plan, layout: Layout, options: ApplyOptions) {
  for (const luks of layout.luks) {
    const file = keyFileFor(luks, options.keyFiles);
    try {
      await access(file);
    } catch {
      throw inputError(
        "LB_KEY_FILE_MISSING",
        `LUKS device ${luks.device} (UUID ${luks.uuid}) needs a key file, and ${file} does not exist.`,
        `Pass --key-file ${luks.mapperName ?? luks.uuid}=FILE with the passphrase in it.`,
      );
    }
  }
  if (plan.steps.length === 0) {
    throw inputError(
      "LB_PLAN_EMPTY",
      "The plan has no steps: the layout has no disks.",
      "Check the layout file.",
    );
  }
}

export async function applyPlan(plan: Plan, options: ApplyOptions): Promise<void> {
  const prelude = renderPrelude(plan);
  const total = plan.steps.length;
  for (const [i, step] of plan.steps.entries()) {
    const index = i + 1;
    options.onEvent?.({ type: "step-start", index, total, step });
    const marker = path.join(journalDir(plan, options.stateDir), stepMarkerName(step));
    const skipped =
      isJournaled(step) &&
      (await access(marker).then(
        () => true,
        () => false,
      ));
    const started = performance.now();
    const child = execa("bash", ["-c", `${prelude}\n${renderStep(plan, step)}\n`], {
      reject: false,
      all: true,
      env: { LC_ALL: "C", LIFEBOAT_STATE_DIR: options.stateDir ?? DEFAULT_STATE_DIR },
    });
    let output = "";
    child.all?.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      output += text;
      options.onEvent?.({ type: "step-output", index, text });
    });
    const result = await child;
    if (result.exitCode !== 0) {
      const tail = output.trim().split("\n").slice(-5).join("\n  ");
      throw environmentError(
        "LB_APPLY_STEP_FAILED",
        `Step ${index}/${total} failed: ${step.title} (exit code ${result.exitCode}).\n  ${tail}`,
        "Fix the cause and run the same command again: finished steps are skipped.",
      );
    }
    options.onEvent?.({
      type: "step-done",
      index,
      total,
      step,
      seconds: (performance.now() - started) / 1000,
      skipped,
    });
  }
}
