// The plan as a shell script. `layout plan --script` prints it for review; `layout apply`
// runs exactly these fragments, one step at a time, so what was reviewed is what runs.
// A journal directory records finished steps: rerunning the same plan resumes after the
// last finished step, and a different plan (another planId) starts from the beginning.

import { formatBytes } from "../../common/units.ts";
import { shellCommand, shellQuote } from "./shell.ts";
import type { Plan, PlanCommand, PlanStep } from "./types.ts";

const HEREDOC = "LIFEBOAT_INPUT";

export function renderPrelude(plan: Plan): string {
  return `set -euo pipefail
export LC_ALL=C
LB_STATE="\${LIFEBOAT_STATE_DIR:-${DEFAULT_STATE_DIR}}/plan-${plan.planId}"
mkdir -p "$LB_STATE"
# Device nodes appear asynchronously, and there may be no udev to wait for: poll.
lb_wait_device() {
  local i
  for i in $(seq 1 200); do
    [ -b "$1" ] && return 0
    sleep 0.05
  done
  echo "lifeboat: $1 did not appear within 10 s" >&2
  return 1
}
# Make the kernel drop its old view of a disk's partitions and read the new table. partx
# works where BLKRRPART does not (loop devices without partition scanning).
lb_reread_partitions() {
  partx -d "$1" 2>/dev/null || true
  partx -a "$1" 2>/dev/null || blockdev --rereadpt "$1" 2>/dev/null || true
}
`;
}

function renderCommand(command: PlanCommand): string {
  const run = shellCommand(command.argv);
  const guard = command.onlyIf
    ? `if ${shellCommand(command.onlyIf)} >/dev/null 2>&1; then`
    : command.skipIf
      ? `if ! ${shellCommand(command.skipIf)} >/dev/null 2>&1; then`
      : null;
  // A here-document's body and terminator must stay at the start of their lines.
  const input = command.stdin === undefined ? "" : ` <<'${HEREDOC}'\n${command.stdin}${HEREDOC}`;
  if (guard === null) return `  ${run}${input}`;
  if (input === "") return `  ${guard} ${run}; fi`;
  return `  ${guard}\n    ${run}${input}\n  fi`;
}

export const DEFAULT_STATE_DIR = "/run/lifeboat";

/** The journal marker's file name for a step, inside the plan's journal directory. */
export function stepMarkerName(step: PlanStep): string {
  return `${step.id.replace(/[^A-Za-z0-9._-]/g, "_")}.done`;
}

/** The plan's journal directory (what $LB_STATE is in the script). */
export function journalDir(plan: Plan, stateDir = DEFAULT_STATE_DIR): string {
  return `${stateDir}/plan-${plan.planId}`;
}

function stepMarker(step: PlanStep): string {
  return `"$LB_STATE"/${shellQuote(stepMarkerName(step))}`;
}

/**
 * Steps that only make sure something is in place (an open LUKS mapping, a mount) run every
 * time; their commands are guarded. A journal marker would be wrong after a reboot or an
 * unmount.
 */
const ALWAYS_RUN = new Set<PlanStep["kind"]>(["luks-open", "mount"]);

export function isJournaled(step: PlanStep): boolean {
  return !ALWAYS_RUN.has(step.kind);
}

/** One step as shell text: skipped when its journal marker exists, marked when it succeeds. */
export function renderStep(plan: Plan, step: PlanStep): string {
  const index = plan.steps.indexOf(step) + 1;
  const label = `step ${index}/${plan.steps.length}: ${step.title}`;
  const body = step.commands.map(renderCommand).join("\n");
  if (!isJournaled(step)) {
    return [
      `# ${label} (runs every time; its commands are guarded)`,
      `echo ${shellQuote(`lifeboat: ${label}`)}`,
      body,
    ].join("\n");
  }
  return [
    `# ${label}`,
    ...(step.destroys.length ? step.destroys.map((d) => `# DESTROYS: ${d}`) : []),
    `if [ -e ${stepMarker(step)} ]; then`,
    `  echo ${shellQuote(`lifeboat: ${label} (already done)`)}`,
    "else",
    `  echo ${shellQuote(`lifeboat: ${label}`)}`,
    body,
    `  touch ${stepMarker(step)}`,
    "fi",
  ].join("\n");
}

export function renderScript(plan: Plan): string {
  const header = [
    "#!/bin/bash",
    `# Lifeboat restore plan ${plan.planId} for host ${plan.host}.`,
    "# Review it; 'lifeboat layout apply ... --yes' runs these same steps.",
    "#",
    "# Disks:",
    ...plan.disks.map(
      (d) =>
        `#   ${d.from} (${formatBytes(d.fromBytes)}) -> ${d.to} (${formatBytes(d.toBytes)}), ${d.reason}`,
    ),
    ...(plan.resizes.length
      ? [
          "# Size changes:",
          ...plan.resizes.map(
            (r) =>
              `#   ${r.what}: ${formatBytes(r.fromBytes)} -> ${formatBytes(r.toBytes)} (${r.why})`,
          ),
        ]
      : []),
    ...(plan.warnings.length ? ["# Warnings:", ...plan.warnings.map((w) => `#   ${w}`)] : []),
    "",
  ];
  return `${header.join("\n")}${renderPrelude(plan)}\n${plan.steps.map((s) => renderStep(plan, s)).join("\n\n")}\n`;
}
