// The file index of a snapshot (docs/repository.md, "Manifests"): one NDJSON line per path
// that exists in a filesystem at that snapshot, saying which stream of the chain holds the
// entry and where. Lines are sorted by path, so that the index of the next snapshot differs
// only where files changed and deduplicates against this one.

import { z } from "zod";
import { inputError } from "../errors.ts";
import type { EntryType, TarEntry } from "./tarindex.ts";

export const IndexEntrySchema = z
  .object({
    /** Path relative to the mount point (UTF-8), or... */
    p: z.string().optional(),
    /** ...its raw bytes in base64 when the name is not valid UTF-8. */
    pb: z.string().optional(),
    t: z.enum(["f", "d", "l", "h", "c", "b", "p"]),
    s: z.number().nonnegative(),
    m: z.number().int().nonnegative(),
    u: z.number().int().nonnegative(),
    g: z.number().int().nonnegative(),
    mt: z.number(),
    /** Which stream of the chain holds the entry. */
    k: z.number().int().nonnegative(),
    /** Byte offset of the entry's first header in that stream, and its length in bytes. */
    o: z.number().int().nonnegative(),
    n: z.number().int().positive(),
    /** Symlink or hard link target (UTF-8), or its bytes in base64. */
    l: z.string().optional(),
    lb: z.string().optional(),
  })
  .refine((e) => (e.p === undefined) !== (e.pb === undefined), "exactly one of p and pb");
export type IndexEntry = z.infer<typeof IndexEntrySchema>;

function isUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString("utf8"), "utf8").equals(bytes);
}

const ASCII = /^[\x00-\x7f]*$/;

/**
 * A path's raw bytes, as a string usable as a map key (one char per byte). An ASCII path is
 * its own key: the same string, not a copy, which matters at a million entries.
 */
export function pathKey(entry: Pick<IndexEntry, "p" | "pb">): string {
  if (entry.p !== undefined) {
    return ASCII.test(entry.p) ? entry.p : Buffer.from(entry.p, "utf8").toString("latin1");
  }
  return Buffer.from(entry.pb!, "base64").toString("latin1");
}

export function entryPath(entry: Pick<IndexEntry, "p" | "pb">): Buffer {
  return entry.p !== undefined ? Buffer.from(entry.p, "utf8") : Buffer.from(entry.pb!, "base64");
}

export function toIndexEntry(entry: TarEntry, k: number): IndexEntry {
  const out: IndexEntry = {
    ...(isUtf8(entry.path)
      ? { p: entry.path.toString("utf8") }
      : { pb: entry.path.toString("base64") }),
    t: entry.type as EntryType,
    s: entry.size,
    m: entry.mode,
    u: entry.uid,
    g: entry.gid,
    mt: entry.mtime,
    k,
    o: entry.offset,
    n: entry.length,
  };
  if (entry.link) {
    if (isUtf8(entry.link)) out.l = entry.link.toString("utf8");
    else out.lb = entry.link.toString("base64");
  }
  return out;
}

export interface MergeResult {
  entries: IndexEntry[];
  /** Names the stream says are unchanged but the parent index lacks (e.g. after a rename). */
  unresolved: string[];
}

/**
 * The index after a stream: the stream's own entries (stream number k), plus, for every
 * directory in it, the names its GNU.dumpdir lists as unchanged ('N'), carried over from the
 * parent index. Whatever a directory no longer lists is gone.
 */
export function mergeIndex(
  parent: IndexEntry[] | null,
  stream: TarEntry[],
  k: number,
): MergeResult {
  // Memory is what limits this at a few million files: every map is keyed by the entries'
  // own path strings where they can be (pathKey), lookups build no string they keep, and the
  // result is sorted as an array of keys, not of [key, entry] pairs.
  const byPath = new Map<string, IndexEntry>();
  const unresolved: string[] = [];
  const parentByPath = new Map<string, IndexEntry>();
  for (const entry of parent ?? []) parentByPath.set(pathKey(entry), entry);
  for (const entry of stream) {
    const converted = toIndexEntry(entry, k);
    byPath.set(pathKey(converted), converted);
  }
  if (parent) {
    for (const entry of stream) {
      if (!entry.dumpdir) continue;
      const dir = entry.path.toString("latin1");
      for (const child of entry.dumpdir) {
        if (child.control !== "N") continue;
        const key = (dir === "." ? "" : `${dir}/`) + child.name.toString("latin1");
        if (byPath.has(key)) continue;
        const old = parentByPath.get(key);
        if (old) byPath.set(pathKey(old), old);
        else unresolved.push(Buffer.from(key, "latin1").toString("utf8"));
      }
    }
  }
  parentByPath.clear();
  // Keys hold one byte per character, so the default (UTF-16 code unit) order is byte order.
  const entries = [...byPath.keys()].sort().map((key) => byPath.get(key)!);
  return { entries, unresolved };
}

/** Lines are gathered into pieces of about this many characters before becoming bytes. */
const ENCODE_PIECE = 1 << 20;

export function encodeIndex(entries: IndexEntry[]): Buffer {
  // Piece by piece: all lines as strings at once, then joined, then as bytes, held the
  // index three times over.
  const pieces: Buffer[] = [];
  let text = "";
  for (const entry of entries) {
    text += `${JSON.stringify(entry)}\n`;
    if (text.length >= ENCODE_PIECE) {
      pieces.push(Buffer.from(text));
      text = "";
    }
  }
  if (text !== "") pieces.push(Buffer.from(text));
  return Buffer.concat(pieces);
}

export function decodeIndex(data: Buffer): IndexEntry[] {
  const entries: IndexEntry[] = [];
  const text = data.toString("utf8");
  let line = 0;
  const bad = (line: number, why: string) =>
    inputError(
      "LB_REPO_BAD_INDEX",
      `File index line ${line} is not an index entry: ${why}.`,
      "The snapshot's index is damaged; a full restore still works, single-file restore of it does not.",
    );
  for (const raw of text.split("\n")) {
    line++;
    if (raw === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      throw bad(line, (error as Error).message);
    }
    const result = IndexEntrySchema.safeParse(value);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw bad(line, `${issue?.path.join(".") || "(entry)"}: ${issue?.message}`);
    }
    entries.push(result.data);
  }
  return entries;
}

/**
 * The entries to extract for single-file restore: every entry at or under each path ("."
 * means all), plus the targets of hard links among them, in extraction order (stream, then
 * offset). Paths not in the index are an error naming them.
 */
export function selectEntries(index: IndexEntry[], paths: string[]): IndexEntry[] {
  const chosen = new Map<string, IndexEntry>();
  const byPath = new Map(index.map((e) => [pathKey(e), e]));
  const missing: string[] = [];
  for (const wanted of paths) {
    const norm = wanted.replace(/^\.\/+/, "").replace(/\/+$/, "") || ".";
    if (norm === ".") {
      for (const [key, e] of byPath) chosen.set(key, e);
      continue;
    }
    const key = Buffer.from(norm, "utf8").toString("latin1");
    const prefix = `${key}/`;
    let found = false;
    for (const [path, e] of byPath) {
      if (path === key || path.startsWith(prefix)) {
        chosen.set(path, e);
        found = true;
      }
    }
    if (!found) missing.push(wanted);
  }
  if (missing.length > 0) {
    throw inputError(
      "LB_RESTORE_PATH_NOT_IN_SNAPSHOT",
      `Not in this snapshot: ${missing.join(", ")}.`,
      "Check the spelling and the snapshot; paths are as they were on the backed-up machine.",
    );
  }
  for (const entry of [...chosen.values()]) {
    if (entry.t !== "h") continue;
    const target = entry.l !== undefined ? entry.l : undefined;
    const key =
      target !== undefined
        ? Buffer.from(target, "utf8").toString("latin1")
        : Buffer.from(entry.lb!, "base64").toString("latin1");
    const linked = byPath.get(key);
    if (linked) chosen.set(key, linked);
  }
  return [...chosen.values()].sort((a, b) => a.k - b.k || a.o - b.o);
}
