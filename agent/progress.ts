// Progress of long operations (backup, restore, verify). On a terminal: one line redrawn in
// place with bytes, rate and ETA. Otherwise: JSON lines, one per interval, that a log
// collector or a CI job can parse. Both go to stderr, so stdout stays the command's result.

import { formatBytes } from "../common/units.ts";

export interface ProgressState {
  phase: string;
  /** Bytes handled so far (read for backup, written for restore, hashed for verify). */
  bytes: number;
  /** Expected total, when known; drives the percentage and the ETA. */
  totalBytes?: number | null;
  /** Bytes that were new to the repository (backup only). */
  newBytes?: number;
  /** The item being worked on, e.g. the mount point. */
  item?: string;
}

export interface Progress {
  update(state: ProgressState): void;
  /** Print the last state (JSON) or clear the bar (TTY). */
  finish(): void;
}

export interface ProgressSink {
  write(text: string): void;
  isTTY: boolean;
}

export function createProgress(
  sink: ProgressSink,
  options: { intervalMs?: number; now?: () => number; quiet?: boolean } = {},
): Progress {
  if (options.quiet) return { update() {}, finish() {} };
  const now = options.now ?? (() => performance.now());
  const started = now();
  const interval = options.intervalMs ?? (sink.isTTY ? 200 : 1000);
  let last = -Infinity;
  let current: ProgressState | null = null;
  let drawn = false;

  const render = () => {
    if (!current) return;
    const seconds = Math.max((now() - started) / 1000, 1e-3);
    const rate = current.bytes / seconds;
    const total = current.totalBytes ?? null;
    const eta = total && rate > 0 ? Math.max(0, (total - current.bytes) / rate) : null;
    if (sink.isTTY) {
      const parts = [current.phase];
      if (current.item) parts.push(current.item);
      parts.push(
        total
          ? `${formatBytes(current.bytes)} / ${formatBytes(total)}`
          : formatBytes(current.bytes),
      );
      parts.push(`${formatBytes(rate)}/s`);
      if (current.newBytes !== undefined) parts.push(`new ${formatBytes(current.newBytes)}`);
      if (eta !== null) parts.push(`ETA ${formatDuration(eta)}`);
      const bar = total ? `${progressBar(current.bytes / total, 24)} ` : "";
      sink.write(`\r\x1b[2K${bar}${parts.join("  ")}`);
      drawn = true;
    } else {
      sink.write(
        `${JSON.stringify({
          type: "progress",
          ...current,
          seconds: round(seconds),
          bytesPerSecond: Math.round(rate),
          etaSeconds: eta === null ? null : round(eta),
        })}\n`,
      );
    }
  };

  return {
    update(state) {
      current = state;
      const t = now();
      if (t - last >= interval) {
        last = t;
        render();
      }
    },
    finish() {
      if (sink.isTTY) {
        if (drawn) sink.write("\r\x1b[2K");
      } else if (current) {
        render();
      }
    },
  };
}

export function progressBar(fraction: number, width: number): string {
  const clamped = Math.min(1, Math.max(0, fraction));
  const full = Math.round(clamped * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}] ${String(Math.floor(clamped * 100)).padStart(3)}%`;
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
