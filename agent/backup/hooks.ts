// Pre- and post-backup hooks: the admin's own commands (a database dump, fsfreeze, stopping a
// service) that make a backup application-consistent. Each runs with /bin/sh -c (it is the
// admin's configuration, shell syntax is expected) in its own process group, with a timeout
// that kills the whole group, so "pg_dump | gzip" can't outlive it.
//
// Semantics (withHooks):
// - pre-hooks run in order; the first that fails stops the rest and the backup: nothing is
//   read. The error is LB_BACKUP_PRE_HOOK_FAILED naming the command, how it ended and the
//   tail of its stderr.
// - post-hooks ALWAYS run, all of them: after a successful backup, a failed one, and a
//   failed pre-hook, so that whatever a pre-hook froze or stopped is released. They see
//   LIFEBOAT_BACKUP_STATUS=ok|failed|pre-hook-failed.
// - a failed post-hook does not throw when the backup succeeded: the snapshot is committed
//   and complete, so the caller reports it from the returned records (exitCode !== 0). When
//   the backup failed too, its LifeboatError is rethrown with the post-hook failure added.
//
// Hooks are spawned directly (not through execa) because their output can be large (a dump
// written to stdout): only a bounded tail of each stream is kept.

import { spawn } from "node:child_process";
import { environmentError, LifeboatError } from "../../common/errors.ts";
import { keepTail } from "./tar.ts";

/** What the manifest records about each hook. */
export interface HookRecord {
  phase: "pre" | "post";
  command: string;
  /** null when the hook was killed (timeout, signal) or could not start. */
  exitCode: number | null;
  seconds: number;
}

export interface HookRun extends HookRecord {
  /** How it ended, in words: "exit 3", "killed after the 1800 s timeout", "signal SIGSEGV". */
  ended: string;
  stdoutTail: string;
  stderrTail: string;
}

export interface HookOptions {
  /** Per hook; default 30 minutes. */
  timeoutMs?: number;
  /** Extra environment (e.g. LIFEBOAT_HOST); LIFEBOAT_PHASE is always set. */
  env?: Record<string, string>;
}

export type BackupStatus = "ok" | "failed" | "pre-hook-failed";

const TAIL = 4096;
const DEFAULT_TIMEOUT_MS = 30 * 60_000;
/** After SIGTERM, how long a hook's process group gets before SIGKILL. */
const GRACE_MS = 5_000;

function runHook(phase: "pre" | "post", command: string, options: HookOptions): Promise<HookRun> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", command], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...options.env, LIFEBOAT_PHASE: phase },
      // Its own process group, so that a timeout reaches the hook's children too.
      detached: true,
    });
    const stdout = keepTail(child.stdout, TAIL);
    const stderr = keepTail(child.stderr, TAIL);
    let timedOut = false;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // The group is already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup("SIGTERM");
      setTimeout(() => killGroup("SIGKILL"), GRACE_MS).unref();
    }, timeoutMs);
    let settled = false;
    const finish = (exitCode: number | null, ended: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        phase,
        command,
        exitCode,
        seconds: (performance.now() - started) / 1000,
        ended,
        stdoutTail: stdout().trim(),
        stderrTail: stderr().trim(),
      });
    };
    child.on("error", (error) => finish(null, `could not start: ${error.message}`));
    // "exit", not "close": something the hook started in the background may hold its
    // output open for hours. Take what arrived, then stop listening.
    child.on("exit", (code, signal) => {
      const ended = timedOut
        ? `killed after the ${Number((timeoutMs / 1000).toFixed(1))} s timeout`
        : signal
          ? `killed by ${signal}`
          : `exit ${code}`;
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(timedOut ? null : code, ended);
      }, 20);
    });
  });
}

/**
 * Run hooks of one phase in order. Pre-hooks stop at the first failure; post-hooks all run.
 * `status` (post only) is passed as LIFEBOAT_BACKUP_STATUS.
 */
export async function runHooks(
  phase: "pre" | "post",
  commands: string[],
  options: HookOptions & { status?: BackupStatus } = {},
): Promise<HookRun[]> {
  const env = {
    ...options.env,
    ...(options.status ? { LIFEBOAT_BACKUP_STATUS: options.status } : {}),
  };
  const runs: HookRun[] = [];
  for (const command of commands) {
    const run = await runHook(phase, command, { ...options, env });
    runs.push(run);
    if (phase === "pre" && run.exitCode !== 0) break;
  }
  return runs;
}

/**
 * Pre-hooks, then `fn` (given the pre-hook records, for the manifest), then post-hooks,
 * always. Returns every hook's record; see the top of this file for failures.
 */
export async function withHooks(
  hooks: { pre: string[]; post: string[] },
  fn: (preHooks: HookRecord[]) => Promise<void>,
  options: HookOptions = {},
): Promise<HookRecord[]> {
  const pre = await runHooks("pre", hooks.pre, options);
  const failedPre = pre.find((run) => run.exitCode !== 0);
  let failure: unknown = failedPre ? preHookError(failedPre) : null;
  if (!failedPre) {
    try {
      await fn(pre.map(toRecord));
    } catch (error) {
      failure = error;
    }
  }
  const status: BackupStatus = failedPre ? "pre-hook-failed" : failure !== null ? "failed" : "ok";
  const post = await runHooks("post", hooks.post, { ...options, status });
  const failedPost = post.filter((run) => run.exitCode !== 0);
  if (failure instanceof LifeboatError && failedPost.length > 0) {
    throw new LifeboatError({
      kind: failure.kind,
      code: failure.code,
      message: `${failure.message}\nPost-backup hooks failed as well:\n${failedPost.map(describeHookRun).join("\n")}`,
      hint: failure.hint,
      cause: failure,
    });
  }
  if (failure !== null) throw failure;
  return [...pre, ...post].map(toRecord);
}

export function toRecord(run: HookRecord): HookRecord {
  return { phase: run.phase, command: run.command, exitCode: run.exitCode, seconds: run.seconds };
}

/** "  <command>: exit 3" and the last lines of its stderr (or stdout when stderr is empty). */
export function describeHookRun(run: HookRun): string {
  const tail = (run.stderrTail || run.stdoutTail).split("\n").slice(-5);
  return [`  ${run.command}: ${run.ended}`, ...tail.filter(Boolean).map((l) => `    ${l}`)].join(
    "\n",
  );
}

function preHookError(run: HookRun): LifeboatError {
  return environmentError(
    "LB_BACKUP_PRE_HOOK_FAILED",
    `A pre-backup hook failed, so nothing was backed up:\n${describeHookRun(run)}`,
    "Run the hook by hand as root to see why, fix it (or remove it from the config), and back up again.",
  );
}
