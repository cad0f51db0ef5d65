// GNU tar, as backup runs it (docs/repository.md, "What a snapshot is"). One stream per
// filesystem, POSIX format, every attribute a restore needs, and an incremental state file
// so that unchanged files are not read again.

import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { environmentError } from "../../common/errors.ts";
import { findTool, missingToolError } from "../../common/exec.ts";

export interface TarCreateOptions {
  /** The directory to archive; members are "./..." relative to it. */
  dir: string;
  /** Patterns relative to `dir` (see targets.ts excludesFor). */
  excludes: string[];
  /** GNU tar's incremental state: read (if present) and rewritten by this run. */
  snarFile: string;
  signal?: AbortSignal;
}

export function tarCreateArgs(options: TarCreateOptions): string[] {
  return [
    "--create",
    "--file=-",
    "--format=posix",
    // atime and ctime change without the content changing; leaving them out keeps the bytes
    // of an unchanged file identical from one stream to the next, and so its chunks.
    "--pax-option=delete=atime,delete=ctime",
    `--listed-incremental=${options.snarFile}`,
    // Device numbers differ after a reboot or a restore (LVM, md); don't treat every file as
    // changed because of them.
    "--no-check-device",
    "--one-file-system",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--selinux",
    "--sparse",
    "--numeric-owner",
    // Exclude patterns are wildcards by default; anchoring makes "./tmp/*" mean the top /tmp.
    // (--wildcards must not be given: it also turns the member "." into a pattern, and an
    // incremental stream then loses its directory entries.)
    "--anchored",
    ...options.excludes.map((pattern) => `--exclude=${pattern}`),
    `--directory=${options.dir}`,
    ".",
  ];
}

export interface TarCreate {
  stdout: Readable;
  /** Resolves when tar exits 0 or 1 (1: files changed while being read, a warning). */
  done: Promise<{ warnings: string[] }>;
}

export function spawnTarCreate(options: TarCreateOptions): TarCreate {
  if (!findTool("tar")) throw missingToolError("tar", "backup streams filesystems with GNU tar");
  const child = spawn("tar", tarCreateArgs(options), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
    signal: options.signal,
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    // Keep the tail only; a tree with many unreadable files must not eat memory.
    stderr = (stderr + text).slice(-64 * 1024);
  });
  // If the reader gives up, tar must not linger writing into a pipe nobody reads.
  let drained = false;
  child.stdout.on("end", () => (drained = true));
  child.stdout.on("close", () => {
    if (!drained && child.exitCode === null) child.kill("SIGTERM");
  });
  const done = new Promise<{ warnings: string[] }>((resolve, reject) => {
    child.on("error", (error) =>
      reject(
        environmentError(
          "LB_BACKUP_TAR",
          `GNU tar could not run for ${options.dir}: ${error.message}.`,
          "Check that GNU tar is installed and the directory is readable.",
        ),
      ),
    );
    child.on("close", (code, signal) => {
      const lines = stderr.split("\n").filter((line) => line.trim() !== "");
      if (code === 0 || code === 1)
        resolve({ warnings: lines.map((l) => l.replace(/^tar: /, "")) });
      else
        reject(
          environmentError(
            "LB_BACKUP_TAR",
            `GNU tar failed on ${options.dir} (${signal ? `signal ${signal}` : `exit ${code}`}): ${lines.slice(-5).join(" | ") || "no message"}.`,
            "Fix what tar names (permissions, a vanished mount) and run the backup again.",
          ),
        );
    });
  });
  done.catch(() => {});
  return { stdout: child.stdout, done };
}
