// A manifest of a directory tree: one line per path with type, mode, owner and content hash,
// so a restore can be checked against the data that was backed up. A fast restore that
// drops a file, a mode or a byte does not count.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, opendir, readlink } from "node:fs/promises";
import path from "node:path";
import { forEachLimit } from "../../common/concurrency.ts";

/** path (relative, "/"-separated) → a description that two equal trees share. */
export type Manifest = Map<string, string>;

/**
 * What is compared: for files mode, owner, size, mtime (whole seconds) and SHA-256; for
 * symlinks owner and target; for devices mode, owner and device number; for directories mode
 * and owner. Directory mtimes and atimes are not compared (restoring a tree touches them),
 * nor is the tree's top directory itself (it is the restore target).
 */
export async function treeManifest(root: string): Promise<Manifest> {
  const entries: [string, string][] = [];
  const files: { index: number; file: string }[] = [];
  const walk = async (dir: string, prefix: string) => {
    const handle = await opendir(dir);
    const names: string[] = [];
    for await (const dirent of handle) names.push(dirent.name);
    for (const name of names.sort()) {
      const full = path.join(dir, name);
      const rel = prefix === "" ? name : `${prefix}/${name}`;
      const stat = await lstat(full, { bigint: true });
      const owner = `${stat.uid}:${stat.gid}`;
      const mode = (Number(stat.mode) & 0o7777).toString(8);
      if (stat.isDirectory()) {
        entries.push([rel, `d ${mode} ${owner}`]);
        await walk(full, rel);
      } else if (stat.isSymbolicLink()) {
        entries.push([rel, `l ${owner} -> ${await readlink(full)}`]);
      } else if (stat.isFile()) {
        const mtime = stat.mtimeNs / 1_000_000_000n;
        entries.push([rel, `f ${mode} ${owner} ${stat.size} ${mtime}`]);
        files.push({ index: entries.length - 1, file: full });
      } else {
        const kind = stat.isCharacterDevice() ? "c" : stat.isBlockDevice() ? "b" : "p";
        entries.push([rel, `${kind} ${mode} ${owner} ${stat.rdev}`]);
      }
    }
  };
  await walk(root, "");
  await forEachLimit(files, 4, async ({ index, file }) => {
    const entry = entries[index]!;
    entry[1] += ` ${await sha256File(file)}`;
  });
  return new Map(entries);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/** The differences in words, at most `limit` of them (plus a count of the rest). */
export function compareManifests(expected: Manifest, actual: Manifest, limit = 10): string[] {
  const problems: string[] = [];
  for (const [name, want] of expected) {
    const got = actual.get(name);
    if (got === undefined) problems.push(`missing: ${name}`);
    else if (got !== want) problems.push(`differs: ${name}: expected "${want}", got "${got}"`);
  }
  for (const name of actual.keys()) {
    if (!expected.has(name)) problems.push(`unexpected: ${name}`);
  }
  if (problems.length <= limit) return problems;
  return [...problems.slice(0, limit), `... and ${problems.length - limit} more differences`];
}

/** A short fingerprint of a whole manifest, to compare trees without keeping both around. */
export function manifestDigest(manifest: Manifest): string {
  const hash = createHash("sha256");
  for (const [name, line] of manifest) hash.update(`${name}\0${line}\n`);
  return hash.digest("hex");
}
