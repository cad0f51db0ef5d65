// The agent's local backup state: for each backed-up filesystem, where its incremental chain
// stands. Keeping it locally is what makes an unchanged backup cheap: GNU tar compares the
// tree against its snapshot file ("snar") and reads only changed files, and the file index
// of the new snapshot is the parent's index plus what changed.
//
// Layout on disk (default /var/lib/lifeboat, or LIFEBOAT_STATE_DIR):
//   backup/<host>/<target key>/current          snapshot id the chain last committed (atomic)
//   backup/<host>/<target key>/<snapshot id>/   snar, index.ndjson, chain.json of that snapshot
// A backup writes a new snapshot directory and only then, after the server committed the
// snapshot, switches `current` to it. A crash in between leaves the old state in force, and
// the next backup continues from the last snapshot that is really visible.

import { createHash } from "node:crypto";
import { mkdir, open, readFile, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { environmentError } from "../../common/errors.ts";
import { writeFileAtomic } from "../../common/fs.ts";
import { StreamSchema, type Stream } from "../../common/repository/manifest.ts";

export const DEFAULT_BACKUP_STATE_DIR = "/var/lib/lifeboat";

const ChainSchema = z.object({
  kind: z.literal("lifeboat/chain"),
  version: z.literal(1),
  host: z.string(),
  mountPoint: z.string(),
  snapshot: z.string(),
  streams: z.array(StreamSchema),
  /** Start the next backup of this filesystem with a full stream. */
  forceFull: z.boolean().default(false),
});
export type Chain = z.input<typeof ChainSchema>;

export interface ChainState {
  chain: Chain;
  /** GNU tar's incremental state after that snapshot. */
  snarFile: string;
  /** The plaintext file index (NDJSON) of that snapshot. */
  indexFile: string;
}

export function stateDirFor(stateDir: string, host: string, mountPoint: string): string {
  const key = createHash("sha256").update(mountPoint).digest("hex").slice(0, 16);
  return path.join(stateDir, "backup", host, key);
}

/** The chain state of a filesystem, or null when there is none (or it is unreadable). */
export async function loadChainState(
  stateDir: string,
  host: string,
  mountPoint: string,
): Promise<ChainState | null> {
  const dir = stateDirFor(stateDir, host, mountPoint);
  let current: string;
  try {
    current = (await readFile(path.join(dir, "current"), "utf8")).trim();
  } catch {
    return null;
  }
  if (!/^[A-Za-z0-9_-]+$/.test(current)) return null;
  const snapshotDir = path.join(dir, current);
  try {
    const chain = ChainSchema.parse(
      JSON.parse(await readFile(path.join(snapshotDir, "chain.json"), "utf8")),
    );
    if (chain.mountPoint !== mountPoint || chain.host !== host) return null;
    return {
      chain,
      snarFile: path.join(snapshotDir, "snar"),
      indexFile: path.join(snapshotDir, "index.ndjson"),
    };
  } catch {
    // A damaged state costs a full stream, never a wrong backup.
    return null;
  }
}

/** A directory to write the next snapshot's state into, before it is committed. */
export async function stagingDir(
  stateDir: string,
  host: string,
  mountPoint: string,
  snapshot: string,
): Promise<string> {
  const dir = path.join(stateDirFor(stateDir, host, mountPoint), snapshot);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * After the server committed `chain.snapshot`: write its chain.json, point `current` at it
 * and remove older snapshot directories.
 */
export async function promoteChainState(stateDir: string, chain: Chain): Promise<void> {
  const dir = stateDirFor(stateDir, chain.host, chain.mountPoint);
  const snapshotDir = path.join(dir, chain.snapshot);
  await writeFileAtomic(path.join(snapshotDir, "chain.json"), JSON.stringify(chain), 0o600);
  await writeFileAtomic(path.join(dir, "current"), `${chain.snapshot}\n`, 0o600);
  for (const entry of await readdir(dir)) {
    if (entry !== chain.snapshot && entry !== "current" && !entry.startsWith(".")) {
      await rm(path.join(dir, entry), { recursive: true, force: true });
    }
  }
}

/**
 * One backup per host at a time on this machine (cron runs can overlap). The lock file holds
 * the owner's pid; a lock whose process is gone is taken over.
 */
export async function lockBackups(stateDir: string, host: string): Promise<() => Promise<void>> {
  const dir = path.join(stateDir, "backup", host);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, "lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, "wx", 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
      if (pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw environmentError(
          "LB_BACKUP_RUNNING",
          `Another backup of host ${host} is running (pid ${pid}).`,
          `Wait for it to finish. If no backup is running, remove ${file}.`,
        );
      }
      await rm(file, { force: true });
    }
  }
  throw environmentError(
    "LB_BACKUP_RUNNING",
    `Could not take the backup lock ${path.join(dir, "lock")}.`,
    "Another backup may have started at the same moment; try again.",
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
