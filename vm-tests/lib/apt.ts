// What the VM harness needs to know about apt: its deb822 records (from `apt-cache show`
// and from /etc/apt/sources.list.d/*.sources), Debian version order, and which mirror this
// machine is configured with. The mirror is read at run time so that no package host name
// is ever written into the project.

import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { environmentError } from "../../common/errors.ts";

export type Deb822Record = Record<string, string>;

/**
 * Parses deb822 text: records separated by blank lines, `Field: value` lines, continuation
 * lines starting with a space or tab, and `#` comment lines. Field names keep their case;
 * continuation lines are joined with "\n" (without the leading space).
 */
export function parseDeb822(text: string): Deb822Record[] {
  const records: Deb822Record[] = [];
  let current: Deb822Record = {};
  let lastField: string | undefined;
  const flush = () => {
    if (Object.keys(current).length > 0) records.push(current);
    current = {};
    lastField = undefined;
  };
  for (const rawLine of text.split("\n")) {
    const line = rawLine.replace(/\r$/, "");
    if (line.trim() === "") {
      flush();
      continue;
    }
    if (line.startsWith("#")) continue;
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (lastField === undefined) continue;
      const more = line.trim() === "." ? "" : line.trim();
      current[lastField] = `${current[lastField] ?? ""}\n${more}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    lastField = line.slice(0, colon);
    current[lastField] = line.slice(colon + 1).trim();
  }
  flush();
  return records;
}

/** A relation field (`Depends`) as package names, ignoring versions and alternatives. */
export function relationNames(field: string | undefined): string[] {
  if (field === undefined) return [];
  return field
    .split(",")
    .map((entry) => entry.split("|")[0]?.trim().split(/[\s(]/)[0] ?? "")
    .filter((name) => name !== "");
}

// Debian version order (deb-version(7)): epoch, then upstream and revision compared with
// the "non-digits then digits" algorithm, where "~" sorts before everything, even the end.
export function compareDebianVersions(a: string, b: string): number {
  const pa = splitVersion(a);
  const pb = splitVersion(b);
  if (pa.epoch !== pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  return compareFragment(pa.upstream, pb.upstream) || compareFragment(pa.revision, pb.revision);
}

function splitVersion(version: string) {
  const colon = version.indexOf(":");
  const epoch = colon >= 0 ? Number(version.slice(0, colon)) : 0;
  const rest = colon >= 0 ? version.slice(colon + 1) : version;
  const dash = rest.lastIndexOf("-");
  return dash >= 0
    ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
    : { epoch, upstream: rest, revision: "0" };
}

function charOrder(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // The non-digit part, character by character.
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ca = i < a.length && !isDigit(a[i]) ? a[i] : undefined;
      const cb = j < b.length && !isDigit(b[j]) ? b[j] : undefined;
      const diff = charOrder(ca) - charOrder(cb);
      if (diff !== 0) return diff < 0 ? -1 : 1;
      if (ca !== undefined) i++;
      if (cb !== undefined) j++;
    }
    // The digit part, as a number.
    let da = "";
    let db = "";
    while (i < a.length && isDigit(a[i])) da += a[i++];
    while (j < b.length && isDigit(b[j])) db += b[j++];
    const na = BigInt(da || "0");
    const nb = BigInt(db || "0");
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return 0;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

/** The record with the highest Version, which is the one apt picks at equal priority. */
export function newestRecord(records: readonly Deb822Record[]): Deb822Record | undefined {
  let best: Deb822Record | undefined;
  for (const record of records) {
    const version = record.Version;
    if (version === undefined) continue;
    if (best === undefined || compareDebianVersions(version, best.Version ?? "0") > 0) {
      best = record;
    }
  }
  return best;
}

/**
 * The mirror URI of the first apt source that serves `suite` for .deb packages: deb822
 * `.sources` files first, then the one-line sources.list format.
 */
export function findMirrorInSources(
  files: readonly { name: string; text: string }[],
  suite: string,
): string | undefined {
  for (const file of files.filter((f) => f.name.endsWith(".sources"))) {
    for (const record of parseDeb822(file.text)) {
      const types = (record.Types ?? "").split(/\s+/);
      const suites = (record.Suites ?? "").split(/\s+/);
      if (record.Enabled?.toLowerCase() === "no") continue;
      if (!types.includes("deb") || !suites.includes(suite)) continue;
      const uri = (record.URIs ?? "").split(/\s+/).find((u) => u !== "");
      if (uri !== undefined) return uri;
    }
  }
  for (const file of files.filter((f) => f.name.endsWith(".list"))) {
    for (const rawLine of file.text.split("\n")) {
      const line = rawLine.replace(/#.*/, "").trim();
      // deb [ option=value ... ] uri suite component...
      const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (match?.[2] === suite && match[1] !== undefined) return match[1];
    }
  }
  return undefined;
}

/** The mirror this machine's apt uses for `suite`, read from /etc/apt at run time. */
export function debianMirror(suite = "bookworm", aptDir = "/etc/apt"): string {
  const files: { name: string; text: string }[] = [];
  const partsDir = path.join(aptDir, "sources.list.d");
  let parts: string[] = [];
  try {
    parts = readdirSync(partsDir).sort();
  } catch {
    // No sources.list.d: only sources.list counts.
  }
  for (const name of parts) {
    if (name.endsWith(".sources") || name.endsWith(".list")) {
      files.push({ name, text: readFileSync(path.join(partsDir, name), "utf8") });
    }
  }
  try {
    files.push({
      name: "sources.list",
      text: readFileSync(path.join(aptDir, "sources.list"), "utf8"),
    });
  } catch {
    // Optional when .sources files exist.
  }
  const mirror = findMirrorInSources(files, suite);
  if (mirror === undefined) {
    throw environmentError(
      "LB_NO_DEBIAN_MIRROR",
      `No apt source for the Debian suite "${suite}" was found in ${aptDir}.`,
      `Add a deb822 entry with "Suites: ${suite}" to ${partsDir}, or a "deb URI ${suite} main" line to sources.list.`,
    );
  }
  return mirror;
}
