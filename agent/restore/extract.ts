// GNU tar, as restore runs it: everything backup kept comes back (owners by number, modes
// with setuid bits, xattrs including security.capability, ACLs, SELinux labels, sparse
// files, hard links, devices, FIFOs, nanosecond mtimes).
//
// A hostile or damaged archive must never write outside the target. GNU tar already strips
// leading "/" from names, refuses names and hard-link targets containing "..", and, for a
// symlink that is absolute or contains "..", writes a placeholder file and creates the real
// link only at the very end, so nothing is ever extracted *through* such a link. We never
// pass the options that turn those guards off (--absolute-names, --keep-directory-symlink,
// --dereference). A member tar refuses makes the whole restore fail, naming the member,
// after the rest has been extracted.

import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { environmentError, inputError } from "../../common/errors.ts";

export interface ExtractOptions {
  target: string;
  input: Readable | Iterable<Buffer> | AsyncIterable<Buffer>;
  /** A stream of an incremental chain: delete what the stream says is gone. */
  incremental: boolean;
  signal?: AbortSignal;
}

export function tarExtractArgs(options: { target: string; incremental: boolean }): string[] {
  return [
    "--extract",
    "--file=-",
    `--directory=${options.target}`,
    "--numeric-owner",
    "--same-owner",
    "--preserve-permissions",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--selinux",
    ...(options.incremental ? ["--listed-incremental=/dev/null"] : []),
  ];
}

export async function extractTar(options: ExtractOptions): Promise<void> {
  const info = await stat(options.target).catch(() => null);
  if (!info?.isDirectory()) {
    throw inputError(
      "LB_RESTORE_TARGET",
      `Restore target ${options.target} is not an existing directory.`,
      `Create it first (mkdir -p ${options.target}).`,
    );
  }
  const child = spawn("tar", tarExtractArgs(options), {
    stdio: ["pipe", "ignore", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => (stderr = (stderr + text).slice(-256 * 1024)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal }));
    },
  );
  const source = options.input instanceof Readable ? options.input : Readable.from(options.input);
  try {
    await pipeline(source, child.stdin, { signal: options.signal });
  } catch (error) {
    // The input failed (a damaged chunk, an abort): stop tar before it sees anything more.
    child.kill("SIGKILL");
    await exited.catch(() => {});
    if ((error as NodeJS.ErrnoException).code === "EPIPE") {
      // tar stopped reading; its own exit status explains why, below.
    } else {
      throw error;
    }
  }
  const { code, signal } = await exited;
  if (code === 0) return;
  const lines = stderr
    .split("\n")
    .filter((line) => line.trim() !== "" && !/Removing leading/.test(line))
    .map((line) => line.replace(/^tar: /, ""));
  const refused = lines.filter((line) =>
    /Member name contains|Cannot (open|create|hard link|mknod|change)|Not a directory|Cannot create symlink|skipping/i.test(
      line,
    ),
  );
  if (refused.length > 0 && code === 2) {
    throw inputError(
      "LB_RESTORE_REFUSED_MEMBERS",
      `GNU tar refused ${refused.length} member(s) of the archive into ${options.target}; the rest was extracted:\n  ${refused.slice(0, 20).join("\n  ")}`,
      "Nothing was written outside the target. If the archive is yours, check the listed names; a hostile archive is stopped exactly like this.",
    );
  }
  throw environmentError(
    "LB_RESTORE_TAR",
    `GNU tar failed extracting into ${options.target} (${signal ? `signal ${signal}` : `exit ${code}`}): ${lines.slice(-5).join(" | ") || "no message"}.`,
    "Check free space and permissions on the target; run as root to restore owners and devices.",
  );
}
