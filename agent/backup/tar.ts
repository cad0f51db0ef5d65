// GNU tar, as backup runs it (docs/repository.md, "What a snapshot is"). One stream per
// filesystem, POSIX format, every attribute a restore needs, and an incremental state file
// so that unchanged files are not read again.
//
// tar runs through node:child_process rather than execa: its output is a stream of any size
// that the caller consumes as it arrives (cut into chunks in place, see slabs.ts), and only a
// bounded tail of stderr is kept.

import { spawn } from "node:child_process";
import { closeSync, constants, openSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Socket } from "node:net";
import type { Readable } from "node:stream";
import { environmentError } from "../../common/errors.ts";
import { findTool, missingToolError, runTool } from "../../common/exec.ts";
import { SlabChunkReader } from "./slabs.ts";

export interface TarCreateOptions {
  /** The directory to archive; members are "./..." relative to it. */
  dir: string;
  /** Patterns relative to `dir` (see targets.ts excludesFor). */
  excludes: string[];
  /**
   * GNU tar's incremental state. If the file exists, the stream holds only what changed
   * since it was written (the next level); either way tar rewrites it for the level after.
   */
  snarFile: string;
  /** Make a level-0 stream even if `snarFile` exists (tar --level=0 starts it afresh). */
  full?: boolean;
  signal?: AbortSignal;
}

/**
 * The arguments, checked one by one against tar 1.34 (Debian 12):
 * - --format=posix: pax headers carry long names, non-UTF-8 names, large owners, nanosecond
 *   mtimes and xattrs without limits.
 * - --pax-option=delete=atime,delete=ctime: atime and ctime change without the content
 *   changing; leaving them out keeps an unchanged file's bytes, and so its chunks, identical.
 * - --listed-incremental: levels; every directory is dumped with a GNU.dumpdir record, so
 *   extraction with --listed-incremental deletes what disappeared between levels.
 * - --no-check-device: device numbers change after a reboot or a restore (LVM, md); they
 *   must not make every file look changed.
 * - --one-file-system: one stream per filesystem; a mount point is dumped as an empty
 *   directory (tar warns "directory is on a different filesystem", which we drop).
 * - --xattrs --xattrs-include=*: all namespaces (security.capability, trusted.*), not only
 *   user.*. --acls: access and default ACLs as SCHILY.acl records.
 * - --selinux: labels as RHT.security.selinux. On a host without SELinux it is harmless
 *   (checked: no warning, exit 0); a label present as an xattr is still stored.
 * - --sparse: holes are recorded, not stored (a 1 GiB sparse file costs a few blocks).
 * - --numeric-owner: uids and gids as numbers; a rescue system has no user database.
 * - --anchored: exclude patterns match from the start of the member name, so "./tmp/*"
 *   means the top-level tmp only (tar's default for excludes is unanchored). --wildcards is
 *   not given: it would also turn the member "." into a pattern, and an incremental stream
 *   then loses its directory entries.
 */
export function tarCreateArgs(options: TarCreateOptions): string[] {
  return [
    "--create",
    "--file=-",
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    `--listed-incremental=${options.snarFile}`,
    ...(options.full ? ["--level=0"] : []),
    "--no-check-device",
    "--one-file-system",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--selinux",
    "--sparse",
    "--numeric-owner",
    "--anchored",
    ...options.excludes.map((pattern) => `--exclude=${pattern}`),
    `--directory=${options.dir}`,
    ".",
  ];
}

export interface TarCreate {
  /** The archive, cut into chunks. Destroy it to stop early: tar is then killed. */
  chunks: SlabChunkReader;
  /** tar's process id (tests check that it is gone afterwards). */
  pid: number | undefined;
  /**
   * Resolves when tar exits 0 or 1 (1: files changed or vanished while being read; the
   * stream is still valid), with tar's warnings. Rejects with LB_BACKUP_TAR when tar fails,
   * or with the abort reason when the signal fired.
   */
  done: Promise<{ warnings: string[] }>;
}

/** Warnings that say nothing new: every other filesystem is its own stream or excluded. */
const EXPECTED = /: (directory|file) is on a different filesystem; not dumped$/;

/**
 * Start tar with its archive going into `chunks` (a new reader when not given).
 *
 * The archive travels through a FIFO made next to the state file (the backup's private
 * staging directory), not through a child_process pipe: Node can only give a socket the
 * `onread` buffers the reader needs when it opens the descriptor itself. Both ends are open
 * before tar starts and the name is removed at once, so tar is the only writer and the
 * reader sees the end of the archive when tar exits.
 */
export async function spawnTarCreate(
  options: TarCreateOptions,
  chunks: SlabChunkReader = new SlabChunkReader(),
): Promise<TarCreate> {
  if (!findTool("tar")) throw missingToolError("tar", "backup streams filesystems with GNU tar");
  options.signal?.throwIfAborted();
  const { readFd, writeFd } = await openFifo(`${options.snarFile}.stream`);
  const socket = new Socket({ fd: readFd, readable: true, writable: false, onread: chunks.onread });
  chunks.attach(socket);
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn("tar", tarCreateArgs(options), {
      stdio: ["ignore", writeFd, "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
  } catch (error) {
    chunks.destroy(error);
    throw error;
  } finally {
    closeSync(writeFd);
  }
  const stderr = keepTail(child.stderr!, 64 * 1024);
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  // A reader that gives up closes its end; tar must not linger on a FIFO nobody reads.
  let ended = false;
  let readerStopped = false;
  socket.on("end", () => (ended = true));
  socket.on("close", () => {
    if (ended) return;
    readerStopped = true;
    stop();
  });
  const onAbort = () => {
    stop();
    chunks.destroy(options.signal?.reason);
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });

  const done = new Promise<{ warnings: string[] }>((resolve, reject) => {
    child.on("error", (error) => {
      chunks.destroy(error);
      reject(
        environmentError(
          "LB_BACKUP_TAR",
          `GNU tar could not run for ${options.dir}: ${error.message}.`,
          "Check that GNU tar is installed (apt-get install tar).",
        ),
      );
    });
    child.on("close", (code, signal) => {
      options.signal?.removeEventListener("abort", onAbort);
      if (options.signal?.aborted) return reject(options.signal.reason);
      const lines = tarMessages(stderr());
      if (code === 0 || code === 1) {
        resolve({ warnings: lines.filter((line) => !EXPECTED.test(line)) });
        return;
      }
      // The reader stopped first: tar died of the broken pipe or of our kill.
      const why = readerStopped
        ? "stopped because the stream's reader stopped"
        : signal
          ? `killed by ${signal}`
          : `exit ${code}`;
      reject(
        environmentError(
          "LB_BACKUP_TAR",
          `GNU tar failed on ${options.dir} (${why}): ${lines.slice(-5).join(" | ") || "no message"}.`,
          "Fix what tar names (permissions, a vanished mount) and run the backup again.",
        ),
      );
    });
  });
  done.catch(() => {});
  return { chunks, pid: child.pid, done };
}

/** A FIFO opened at both ends (reader non-blocking, for the event loop), then unlinked. */
async function openFifo(file: string): Promise<{ readFd: number; writeFd: number }> {
  await rm(file, { force: true });
  const made = await runTool(["mkfifo", "-m", "600", file]);
  if (made.exitCode !== 0) {
    throw environmentError(
      "LB_BACKUP_FIFO",
      `Could not make the stream's FIFO ${file}: ${made.stderr.trim() || `exit ${made.exitCode}`}.`,
      "Check that the backup state directory is on a local, writable filesystem.",
    );
  }
  try {
    const readFd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      // Does not block: the FIFO has a reader.
      return { readFd, writeFd: openSync(file, constants.O_WRONLY) };
    } catch (error) {
      closeSync(readFd);
      throw error;
    }
  } finally {
    await rm(file, { force: true });
  }
}

/** tar's stderr as messages: one per line, without the "tar: " prefix and the summary. */
export function tarMessages(stderr: string): string[] {
  return stderr
    .split("\n")
    .map((line) => line.replace(/^tar: /, "").trimEnd())
    .filter((line) => line !== "" && !/^Exiting with failure status/.test(line));
}

/** Keep the last `limit` characters a child writes to `stream`; read them with the result. */
export function keepTail(stream: Readable, limit: number): () => string {
  let tail = "";
  stream.setEncoding("utf8");
  stream.on("data", (text: string) => {
    tail += text;
    if (tail.length > 2 * limit) tail = tail.slice(-limit);
  });
  return () => tail.slice(-limit);
}
