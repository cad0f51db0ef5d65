// The one-shot check a restore drill leaves in the recovered system. Drills only: recovery
// installs it when the rescue image carries a drill spec (/etc/lifeboat/drill.json) and the
// kernel command line says lifeboat.drill=1. On the first boot it:
//
//   1. prints LIFEBOAT-DRILL-BOOTED host=<hostname> on the first serial port (level 1),
//   2. waits for systemd to finish starting, then reports the failed units, the mounts and
//      fstab as findmnt sees them (level 2), the SHA-256 of sampled files (level 3) and the
//      exit code and output tail of each probe (level 4), as one JSON block on the second
//      serial port (the VM harness's data channel),
//   3. prints LIFEBOAT-DRILL-DONE, disables itself and deletes its files, so a standby
//      started from this disk later doesn't run it again.

import { z } from "zod";

export const DrillSpecSchema = z
  .object({
    probes: z
      .array(
        z.object({
          name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
          command: z.string().min(1).max(4096),
          timeoutSeconds: z.number().int().positive().max(3600).default(60),
        }),
      )
      .max(32)
      .default([]),
    /** Absolute paths of regular files whose SHA-256 the drill compares with the snapshot. */
    sampleFiles: z.array(z.string().startsWith("/")).max(256).default([]),
  })
  .strict();
export type DrillSpec = z.infer<typeof DrillSpecSchema>;

/** What the check reports on the data port; the orchestrator parses it with this schema. */
export const DrillCheckReportSchema = z.object({
  hostname: z.string(),
  systemState: z.string(),
  failedUnits: z.array(z.string()),
  mounts: z.unknown(),
  fstab: z.unknown(),
  files: z.array(z.object({ path: z.string(), sha256: z.string().nullable() })),
  probes: z.array(
    z.object({
      name: z.string(),
      exitCode: z.number().int().nullable(),
      seconds: z.number(),
      output: z.string(),
    }),
  ),
});
export type DrillCheckReport = z.infer<typeof DrillCheckReportSchema>;

export const DRILL_UNIT = "lifeboat-drill-check.service";
export const DRILL_DIR = "/usr/local/lib/lifeboat-drill";
export const DRILL_BOOTED_MARKER = "LIFEBOAT-DRILL-BOOTED";
export const DRILL_DONE_MARKER = "LIFEBOAT-DRILL-DONE";
export const DRILL_REPORT_BLOCK = "drill-report";
/** Drills only: a unit that stays, so that a warm standby booted from the drilled disks says
 *  when it is up (the RTO of a standby is this marker's time). */
export const STANDBY_UNIT = "lifeboat-standby-ready.service";
export const STANDBY_READY_MARKER = "LIFEBOAT-STANDBY-READY";

const quote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

export function renderDrillUnit(): string {
  // Type=simple, not after multi-user.target: the boot marker must come as soon as systemd
  // runs services, even if some other unit holds the boot up; the script itself then waits
  // for the boot to finish (is-system-running --wait), which a oneshot ordered into the
  // boot could not do without waiting for itself.
  return `[Unit]
Description=Lifeboat restore drill check (runs once, then removes itself)

[Service]
Type=simple
ExecStart=/bin/sh ${DRILL_DIR}/check.sh

[Install]
WantedBy=multi-user.target
`;
}

/** The check script: POSIX sh, using only what a Debian system has (findmnt, sha256sum, base64). */
export function renderDrillScript(spec: DrillSpec): string {
  const probes = spec.probes
    .map((p) => `run_probe ${quote(p.name)} ${p.timeoutSeconds} ${quote(p.command)}`)
    .join("\n");
  const files = spec.sampleFiles.map((f) => `hash_file ${quote(f)}`).join("\n");
  return `#!/bin/sh
# Installed by lifeboat recover for a restore drill; deletes itself when done.
CONSOLE=\${LB_DRILL_CONSOLE:-/dev/ttyS0}
DATA=\${LB_DRILL_DATA:-/dev/ttyS1}
ROOT=\${LB_DRILL_ROOT:-}
WORK=$(mktemp -d)
say() { echo "$*" >> "$CONSOLE" 2>/dev/null || true; }
json_string() { printf '%s' "$1" | sed -e 's/\\\\/\\\\\\\\/g' -e 's/"/\\\\"/g' -e 's/\\t/\\\\t/g' | tr -d '\\000-\\010\\013-\\037' | awk 'BEGIN{ORS=""} NR>1{print "\\\\n"} {print}'; }

# findmnt writes odd bytes in names as \\xHH, which JSON does not allow: keep the backslash.
json_fix() { sed -e 's/\\\\x/\\\\\\\\x/g'; }

say "${DRILL_BOOTED_MARKER} host=$(hostname)"
state=$(timeout 600 systemctl is-system-running --wait 2>/dev/null)
failed=$(systemctl list-units --state=failed --plain --no-legend --no-pager 2>/dev/null | awk '{print $1}')

: > "$WORK/files"
hash_file() {
  if [ -f "$1" ]; then sum=$(sha256sum < "$1" | cut -d' ' -f1); value="\\"$sum\\""; else value=null; fi
  [ -s "$WORK/files" ] && printf ',' >> "$WORK/files"
  printf '{"path":"%s","sha256":%s}' "$(json_string "$1")" "$value" >> "$WORK/files"
}
${files}

: > "$WORK/probes"
run_probe() {
  started=$(date +%s)
  timeout "$2" sh -c "$3" > "$WORK/out" 2>&1
  code=$?
  ended=$(date +%s)
  [ "$code" = 124 ] && code=null
  [ -s "$WORK/probes" ] && printf ',' >> "$WORK/probes"
  printf '{"name":"%s","exitCode":%s,"seconds":%s,"output":"%s"}' "$1" "$code" "$((ended - started))" "$(json_string "$(tail -c 2048 "$WORK/out")")" >> "$WORK/probes"
}
${probes}

mounts=$(findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS 2>/dev/null | json_fix)
[ -n "$mounts" ] || mounts=null
fstab=$(findmnt --fstab -J -o TARGET,SOURCE,FSTYPE 2>/dev/null | json_fix)
[ -n "$fstab" ] || fstab=null
units=""
for unit in $failed; do
  [ -n "$units" ] && units="$units,"
  units="$units\\"$(json_string "$unit")\\""
done
{
  printf '{"hostname":"%s","systemState":"%s","failedUnits":[%s],' "$(json_string "$(hostname)")" "$(json_string "$state")" "$units"
  printf '"mounts":%s,' "$mounts"
  printf '"fstab":%s,' "$fstab"
  printf '"files":[%s],"probes":[%s]}' "$(cat "$WORK/files")" "$(cat "$WORK/probes")"
} > "$WORK/report.json"
stty -F "$DATA" raw -echo 2>/dev/null || true
{ echo "===BEGIN ${DRILL_REPORT_BLOCK}==="; base64 < "$WORK/report.json"; echo "===END ${DRILL_REPORT_BLOCK}==="; } > "$DATA" 2>/dev/null
systemctl disable ${DRILL_UNIT} >/dev/null 2>&1
rm -rf "$WORK" "$ROOT/etc/systemd/system/${DRILL_UNIT}" "$ROOT/etc/systemd/system/multi-user.target.wants/${DRILL_UNIT}" "$ROOT${DRILL_DIR}"
say "${DRILL_DONE_MARKER}"
`;
}

/** Prints the standby marker on the first serial port once the system has started. */
export function renderStandbyUnit(): string {
  return `[Unit]
Description=Lifeboat warm standby: says on the serial console that this clone is up
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "${STANDBY_READY_MARKER} host=$(hostname)" > /dev/ttyS0 2>/dev/null || true'

[Install]
WantedBy=multi-user.target
`;
}

/** Files to write into the recovered tree (relative to its root), with their modes. */
export function drillCheckFiles(
  spec: DrillSpec,
): { path: string; content: string; mode: number }[] {
  return [
    { path: `etc/systemd/system/${DRILL_UNIT}`, content: renderDrillUnit(), mode: 0o644 },
    { path: `${DRILL_DIR.slice(1)}/check.sh`, content: renderDrillScript(spec), mode: 0o755 },
    { path: `etc/systemd/system/${STANDBY_UNIT}`, content: renderStandbyUnit(), mode: 0o644 },
  ];
}

/** The symlinks `systemctl enable` would make, without running systemctl in a chroot. */
export const DRILL_ENABLE_LINKS = [DRILL_UNIT, STANDBY_UNIT].map((unit) => ({
  path: `etc/systemd/system/multi-user.target.wants/${unit}`,
  target: `/etc/systemd/system/${unit}`,
}));
