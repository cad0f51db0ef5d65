// GNU tar, as restore runs it: everything backup kept comes back (owners by number, modes
// with setuid bits, xattrs including security.capability, ACLs, SELinux labels, sparse
// files, hard links, devices, FIFOs, nanosecond mtimes), and for the streams of an
// incremental chain, what disappeared between levels is deleted.
//
// A hostile or damaged archive must never write outside the target. What GNU tar 1.34 does
// by itself (checked, see test/restore/hostile.test.ts):
// - strips a leading "/" from member names and hard-link targets (extracts inside);
// - refuses a member whose name contains ".." ("Member name contains '..'") and strips
//   leading "../" from hard-link targets;
// - a symlink that is absolute or contains ".." is first written as a placeholder file and
//   created only at the very end, so later members of the same archive can't go through it.
// What it does NOT do: a symlink that already exists in the target is followed. A chain is
// extracted level by level into one directory, so level 0's legitimate /etc/alternatives/x ->
// /usr/bin/x or var/run -> /run exist for real when level 1 is read, and a crafted level 1
// could write, delete (GNU.dumpdir purges) or move (dumpdir renames) through them, outside
// the target. Checked: all three happen with plain tar.
//
// So tar runs in a private mount namespace in which the target is bind-mounted onto itself
// with "nosymfollow": the kernel then refuses to follow any symlink below the target while
// tar resolves paths, whoever created it. Symlinks are still created, read and restored
// exactly (they are never followed during extraction, which GNU tar's own streams never
// need: tar --create does not descend into symlinks). The bind is not recursive, so a stream
// also can't reach into another filesystem mounted below its target. The options that turn
// tar's own guards off (--absolute-names, --keep-directory-symlink, --dereference) are never
// passed.
//
// A member tar refuses does not stop the rest: the whole archive is extracted, and then the
// restore fails with LB_RESTORE_REFUSED_MEMBERS naming every refused member.

import { spawn } from "node:child_process";
import { lstat, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { environmentError, inputError } from "../../common/errors.ts";
import { findTool, missingToolError } from "../../common/exec.ts";
import { keepTail, tarMessages } from "../backup/tar.ts";

export interface ExtractOptions {
  /** An existing directory; nothing outside it is ever written. */
  target: string;
  input: Readable | Iterable<Buffer> | AsyncIterable<Buffer>;
  /** A stream of an incremental chain: delete what the stream says is gone. */
  incremental: boolean;
  /**
   * Extract only these members (and, for directories, what is below them). Paths relative
   * to the archive root ("etc/hosts", "./etc/hosts" and "/etc/hosts" are the same member).
   */
  members?: string[];
  /**
   * A directory the target must be inside without any symlink on the way, e.g. the restore
   * root when the target is ROOT/boot: an earlier stream could have made "boot" a symlink.
   */
  within?: string;
  /**
   * tar messages that are expected and dealt with by the caller (a piece of a parallel
   * extraction meeting a hard link whose target another piece writes): they don't fail the
   * extraction when they are tar's only complaints.
   */
  tolerate?: RegExp;
  signal?: AbortSignal;
}

export interface ExtractResult {
  /** tar's warnings (e.g. "Removing leading `/' from member names"). */
  warnings: string[];
}

/** 512-byte blocks per record that tar reads: 1 MiB. */
const EXTRACT_BLOCKING_FACTOR = 2048;

export function tarExtractArgs(options: {
  target: string;
  incremental: boolean;
  members?: string[];
}): string[] {
  const members = options.members ?? [];
  return [
    "--extract",
    "--file=-",
    // Records of 1 MiB, each read whole from the pipe (tar's default is 10 KiB, so 80,000
    // reads and as many writes for the benchmark's 800 MiB). Side by side on a fresh ext4:
    // 3.7-3.8 s of system time instead of 4.3-4.7 s, and the restore about 1 s faster.
    // tar may stop at the end-of-archive blocks with the rest of the stream's last record
    // unread; the closed pipe that leaves is judged by tar's exit status, as before.
    `--blocking-factor=${EXTRACT_BLOCKING_FACTOR}`,
    "--read-full-records",
    `--directory=${options.target}`,
    "--numeric-owner",
    "--same-owner",
    "--preserve-permissions",
    "--xattrs",
    // tar extracts only user.* xattrs unless told otherwise.
    "--xattrs-include=*",
    "--acls",
    "--selinux",
    // Deletes what a level's GNU.dumpdir records say is gone, and applies dumpdir renames.
    ...(options.incremental ? ["--listed-incremental=/dev/null"] : []),
    ...(members.length > 0 ? ["--", ...members.map(memberName)] : []),
  ];
}

/** Backup streams name members "./etc/hosts" (tar -C DIR .), and tar matches names exactly. */
function memberName(member: string): string {
  const relative = member.replace(/^(\.?\/)+/, "").replace(/\/+$/, "");
  return relative === "" || relative === "." ? "." : `./${relative}`;
}

/** Runs `tar` with `args` confined to `target` (see the top of this file). */
function confinedTar(target: string, args: string[]) {
  // Absolute paths: a busybox sh (the rescue system's) would otherwise run its own tar and
  // mount applets, which know neither --xattrs nor nosymfollow.
  const script = [
    "set -e",
    "mount=$1 tar=$2 target=$3",
    "shift 3",
    '"$mount" --bind "$target" "$target"',
    '"$mount" -o remount,bind,nosymfollow "$target"',
    'exec "$tar" "$@"',
  ].join("\n");
  // $0 names the script in sh's messages; then mount, tar and the target; the rest goes to
  // tar. unshare and sh exec in place, so the child's pid is tar's by the time data flows.
  const argv = ["--mount", "--propagation", "private", "/bin/sh", "-c", script];
  const tools = [findTool("mount")!, findTool("tar")!];
  return spawn("unshare", [...argv, "lifeboat-extract", ...tools, target, ...args], {
    stdio: ["pipe", "ignore", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
}

export async function extractTar(options: ExtractOptions): Promise<ExtractResult> {
  options.signal?.throwIfAborted();
  const info = await stat(options.target).catch(() => null);
  if (!info?.isDirectory()) {
    throw inputError(
      "LB_RESTORE_TARGET",
      `Restore target ${options.target} is not an existing directory.`,
      `Create it first (mkdir -p ${options.target}).`,
    );
  }
  if (process.getuid?.() !== 0) {
    throw environmentError(
      "LB_RESTORE_NOT_ROOT",
      "Extracting a backup needs root: it restores owners, devices and capabilities, and it confines tar with a private mount.",
      "Run the restore as root.",
    );
  }
  for (const tool of ["tar", "unshare", "mount"]) {
    if (!findTool(tool)) throw missingToolError(tool, "restore extracts with it");
  }
  if (options.within !== undefined) await checkWithin(options.target, options.within);
  const target = await realpath(options.target);
  const child = confinedTar(target, tarExtractArgs({ ...options, target }));
  const stderr = keepTail(child.stderr, 256 * 1024);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal }));
    },
  );
  exited.catch(() => {});
  const source = options.input instanceof Readable ? options.input : Readable.from(options.input);
  try {
    await pipeline(source, child.stdin, { signal: options.signal });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPIPE") {
      // The input failed (a damaged chunk, an abort): stop tar before it sees anything more.
      child.kill("SIGKILL");
      await exited.catch(() => {});
      throw options.signal?.aborted ? options.signal.reason : error;
    }
    // tar stopped reading (the end-of-archive blocks, or it failed); its exit status says.
  }
  const { code, signal } = await exited;
  // tar names itself by the path it was started with; its messages read "tar: ..." here.
  const tarPath = findTool("tar")!;
  return judge(
    target,
    code,
    signal,
    stderr().replaceAll(`${tarPath}: `, "tar: "),
    options.tolerate,
  );
}

async function checkWithin(target: string, within: string) {
  const relative = path.relative(path.resolve(within), path.resolve(target));
  if (relative.startsWith("..") || path.isAbsolute(relative)) {
    throw inputError(
      "LB_RESTORE_TARGET",
      `Restore target ${target} is not inside ${within}.`,
      "Restore each filesystem below the restore root.",
    );
  }
  let at = path.resolve(within);
  for (const part of relative.split(path.sep).filter(Boolean)) {
    at = path.join(at, part);
    if ((await lstat(at)).isSymbolicLink()) {
      throw inputError(
        "LB_RESTORE_TARGET",
        `Restore target ${target} goes through the symlink ${at}, which could lead outside ${within}.`,
        "An earlier stream put a symlink where a mount point belongs: check the snapshot, and mount the filesystems under the restore root before restoring.",
      );
    }
  }
}

/** Messages about one member that mean tar refused or could not place it. */
const REFUSED =
  /: (Member name contains '\.\.'|.*Too many levels of symbolic links|.*Not a directory|Cannot hard link to .*|Cannot rename .*)$/;
/** Messages that only say what tar did on its own to keep a name inside the target. */
const NOTICE = /^Removing leading `.*' from (member names|hard link targets)$/;

function judge(
  target: string,
  code: number | null,
  signal: NodeJS.Signals | null,
  stderr: string,
  tolerate?: RegExp,
): ExtractResult {
  // tar prefixes all its messages; anything else comes from unshare, sh or mount.
  const setup = stderr
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("tar: "));
  if (setup.length > 0) {
    throw environmentError(
      "LB_RESTORE_CONFINE",
      `Could not confine GNU tar to ${target} with a private nosymfollow mount: ${setup.join(" | ")}.`,
      "Restore needs root and a kernel with the nosymfollow mount option (Linux 5.10 or newer).",
    );
  }
  const messages = tarMessages(stderr).filter((m) => !tolerate?.test(m));
  if (code === 0) return { warnings: messages };
  if (code === 2 && tolerate && messages.every((m) => NOTICE.test(m)))
    return { warnings: messages };
  const missing = messages.filter((m) => m.endsWith(": Not found in archive"));
  if (code === 2 && missing.length > 0 && missing.length === messages.length) {
    throw inputError(
      "LB_RESTORE_MEMBER_NOT_FOUND",
      `The archive has no ${missing.map((m) => m.replace(/: Not found in archive$/, "")).join(", ")}.`,
      "Name members by their path inside the backed-up filesystem, e.g. etc/hosts for /etc/hosts on /.",
    );
  }
  const refused = messages.filter((m) => REFUSED.test(m));
  const other = messages.filter((m) => !REFUSED.test(m) && !NOTICE.test(m));
  if (code === 2 && refused.length > 0 && other.length === 0) {
    const shown = refused.slice(0, 50);
    throw inputError(
      "LB_RESTORE_REFUSED_MEMBERS",
      `GNU tar refused ${refused.length} member(s) of the archive; the rest was extracted into ${target}:\n  ${shown.join("\n  ")}${refused.length > shown.length ? `\n  … and ${refused.length - shown.length} more` : ""}`,
      "Nothing was written outside the target. These members name paths outside it or go through a symlink, which archives written by 'lifeboat backup' never do: check where the archive came from.",
    );
  }
  throw environmentError(
    "LB_RESTORE_TAR",
    `GNU tar failed extracting into ${target} (${signal ? `signal ${signal}` : `exit ${code}`}): ${messages.slice(-5).join(" | ") || "no message"}.`,
    "Check free space and permissions on the target, and that the archive is complete.",
  );
}
