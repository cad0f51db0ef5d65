// Pre- and post-backup hooks: the admin's own commands (a database dump, fsfreeze...) that
// make a backup application-consistent. A failing pre-hook aborts the backup before anything
// is read; post-hooks always run, after success, failure, or a failed pre-hook, so that
// whatever the pre-hook froze or locked is released.

import { spawn } from "node:child_process";
import { environmentError } from "../../common/errors.ts";

export interface HookRecord {
  phase: "pre" | "post";
  command: string;
  exitCode: number | null;
  seconds: number;
}

export interface HookOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
}

const TAIL = 2000;

async function runHook(
  phase: "pre" | "post",
  command: string,
  options: HookOptions,
): Promise<HookRecord & { stderr: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", command], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...options.env, LIFEBOAT_PHASE: phase },
      timeout: options.timeoutMs ?? 30 * 60_000,
      killSignal: "SIGKILL",
    });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => (stderr = (stderr + text).slice(-TAIL)));
    const finish = (exitCode: number | null) =>
      resolve({
        phase,
        command,
        exitCode,
        seconds: (performance.now() - started) / 1000,
        stderr: stderr.trim(),
      });
    child.on("error", (error) => {
      stderr += error.message;
      finish(null);
    });
    child.on("close", (code) => finish(code));
  });
}

/**
 * Run the pre-hooks, then `fn`, then the post-hooks (always). Returns every hook's record.
 * A failed pre-hook throws LB_BACKUP_PRE_HOOK_FAILED (after the post-hooks ran). A failed
 * post-hook does not throw: the snapshot is already committed, so the caller reports it as
 * a warning from the records (exitCode !== 0).
 */
export async function withHooks(
  hooks: { pre: string[]; post: string[] },
  fn: (preHooks: HookRecord[]) => Promise<void>,
  options: HookOptions = {},
): Promise<HookRecord[]> {
  const records: HookRecord[] = [];
  let failure: unknown = null;
  for (const command of hooks.pre) {
    const result = await runHook("pre", command, options);
    records.push(strip(result));
    if (result.exitCode !== 0) {
      failure = environmentError(
        "LB_BACKUP_PRE_HOOK_FAILED",
        `Pre-backup hook failed (${result.exitCode === null ? "did not finish" : `exit ${result.exitCode}`}): ${command}${result.stderr ? `\n  ${result.stderr.split("\n").slice(-5).join("\n  ")}` : ""}`,
        "Nothing was backed up. Fix the hook (run it by hand as root to see why) and try again.",
      );
      break;
    }
  }
  if (failure === null) {
    try {
      await fn([...records]);
    } catch (error) {
      failure = error;
    }
  }
  for (const command of hooks.post) records.push(strip(await runHook("post", command, options)));
  if (failure !== null) throw failure;
  return records;
}

function strip(result: HookRecord & { stderr: string }): HookRecord {
  return {
    phase: result.phase,
    command: result.command,
    exitCode: result.exitCode,
    seconds: result.seconds,
  };
}
