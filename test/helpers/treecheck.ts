// A tree checker for round-trip tests: records everything a restore must bring back, per
// path, and compares two recordings. Paths are raw bytes (non-UTF-8 names are legal).
// xattrs come from getfattr's hex dump and ACLs from getfacl, both machine-oriented forms.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from "node:fs";
import path from "node:path";

export interface TreeEntry {
  path: string; // latin1 of the raw bytes, relative to the root
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: string;
  rdev: number;
  link: string | null;
  sha256: string | null;
  sparse: boolean;
  /** Other paths sharing this inode (hard links), sorted. */
  linkGroup: string[];
  xattrs: Record<string, string>;
  acl: string;
}

function typeOf(stat: Stats): string {
  if (stat.isFile()) return "file";
  if (stat.isDirectory()) return "dir";
  if (stat.isSymbolicLink()) return "symlink";
  if (stat.isFIFO()) return "fifo";
  if (stat.isCharacterDevice()) return "char";
  if (stat.isBlockDevice()) return "block";
  if (stat.isSocket()) return "socket";
  return "other";
}

function walk(root: Buffer, relative: Buffer, out: Buffer[]) {
  out.push(relative);
  const full = relative.length ? Buffer.concat([root, Buffer.from("/"), relative]) : root;
  if (!lstatSync(full).isDirectory()) return;
  for (const name of readdirSync(full, { encoding: "buffer" }).sort(Buffer.compare)) {
    walk(root, relative.length ? Buffer.concat([relative, Buffer.from("/"), name]) : name, out);
  }
}

function xattrsOf(file: Buffer): Record<string, string> {
  let text: string;
  try {
    text = execFileSync(
      "getfattr",
      ["--absolute-names", "-h", "-d", "-m", "-", "-e", "hex", file.toString("latin1")],
      {
        encoding: "latin1",
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([^#=][^=]*)=(0x[0-9a-f]*)$/.exec(line.trim());
    // ACLs are compared through getfacl; their raw xattr encoding may differ harmlessly.
    if (match && !match[1]!.startsWith("system.posix_acl")) out[match[1]!] = match[2]!;
  }
  return out;
}

function aclOf(file: Buffer, isLink: boolean): string {
  if (isLink) return "";
  try {
    return execFileSync("getfacl", ["-n", "-p", "--absolute-names", file.toString("latin1")], {
      encoding: "latin1",
      stdio: ["ignore", "pipe", "ignore"],
    })
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .join(",");
  } catch {
    return "";
  }
}

export function recordTree(root: string): TreeEntry[] {
  const rootBytes = Buffer.from(root, "latin1");
  const paths: Buffer[] = [];
  walk(rootBytes, Buffer.alloc(0), paths);
  const inodes = new Map<string, string[]>();
  const entries: TreeEntry[] = [];
  for (const relative of paths) {
    const full = relative.length
      ? Buffer.concat([rootBytes, Buffer.from("/"), relative])
      : rootBytes;
    const stat = lstatSync(full, { bigint: true });
    const type = typeOf(lstatSync(full));
    const name = relative.length ? relative.toString("latin1") : ".";
    if (type === "file" && stat.nlink > 1n) {
      const key = `${stat.dev}:${stat.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), name]);
    }
    entries.push({
      path: name,
      type,
      mode: Number(stat.mode & 0o7777n),
      uid: Number(stat.uid),
      gid: Number(stat.gid),
      size: type === "file" ? Number(stat.size) : 0,
      // Symlink times are not restored by every tool and mean nothing; directories and files count.
      mtimeNs: type === "symlink" ? "" : String(stat.mtimeNs),
      rdev: type === "char" || type === "block" ? Number(stat.rdev) : 0,
      link:
        type === "symlink" ? readlinkSync(full, { encoding: "buffer" }).toString("latin1") : null,
      sha256:
        type === "file" ? createHash("sha256").update(readFileSync(full)).digest("hex") : null,
      sparse:
        type === "file" && Number(stat.blocks) * 512 < Number(stat.size) / 2 && stat.size > 65536n,
      linkGroup: [],
      xattrs: xattrsOf(full),
      acl: aclOf(full, type === "symlink"),
    });
    if (type === "file" && stat.nlink > 1n)
      (entries.at(-1) as TreeEntry & { inode?: string }).inode = `${stat.dev}:${stat.ino}`;
  }
  for (const entry of entries as (TreeEntry & { inode?: string })[]) {
    if (entry.inode) entry.linkGroup = [...inodes.get(entry.inode)!].sort();
    delete entry.inode;
  }
  return entries;
}

/** Human-readable differences; empty when the trees are the same. */
export function compareTrees(expected: TreeEntry[], actual: TreeEntry[]): string[] {
  const differences: string[] = [];
  const byPath = new Map(actual.map((e) => [e.path, e]));
  for (const want of expected) {
    const got = byPath.get(want.path);
    const shown = JSON.stringify(want.path);
    if (!got) {
      differences.push(`${shown}: missing`);
      continue;
    }
    byPath.delete(want.path);
    for (const key of Object.keys(want) as (keyof TreeEntry)[]) {
      const a = JSON.stringify(want[key]);
      const b = JSON.stringify(got[key]);
      if (a !== b) differences.push(`${shown}: ${key} ${a} became ${b}`);
    }
  }
  for (const extra of byPath.keys()) differences.push(`${JSON.stringify(extra)}: unexpected`);
  return differences;
}

/**
 * Build a tree with every kind of thing a backup must keep. Needs root (devices, owners,
 * capabilities). Returns the tree's root.
 */
export function buildAttributeTree(root: string): string {
  const sh = (script: string) =>
    execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd: root });
  sh(`
    mkdir -p dir/sub empty 'with space' "$(printf 'latin1-\\xe9')"
    echo hello > file.txt
    head -c 300000 /dev/urandom > dir/random.bin
    ln file.txt dir/hardlink-a
    ln file.txt dir/sub/hardlink-b
    truncate -s 1G sparse.img && printf tail >> sparse.img
    dd if=/dev/urandom of=sparse.img bs=4096 count=2 seek=1000 conv=notrunc status=none
    ln -s /etc/passwd abs-link
    ln -s ../file.txt dir/rel-link
    ln -s does-not-exist dangling
    mkfifo fifo
    mknod chardev c 1 3
    mknod blockdev b 7 200
    echo s > setuid && chmod 4755 setuid
    echo g > setgid && chmod 2710 setgid
    chmod 1777 dir/sub
    echo big > big-owner && chown 300000:300001 big-owner
    long=$(printf 'n%.0s' $(seq 1 250))
    mkdir -p deep/$(printf 'd%.0s' $(seq 1 120))/$(printf 'e%.0s' $(seq 1 120))
    echo long > "deep/$(printf 'd%.0s' $(seq 1 120))/$(printf 'e%.0s' $(seq 1 120))/$long"
    printf 'x' > "$(printf 'latin1-\\xe9')/$(printf 'caf\\xe9')"
    setfattr -n user.note -v "hello world" file.txt
    setfattr -n user.binary -v 0x00ff10fe dir/random.bin
    setfattr -n security.capability -v 0x0100000200040000000000000000000000000000 setuid
    setfacl -m u:1234:rw-,g:2345:r-- file.txt
    setfacl -d -m u:1234:rwx dir
    touch -d '2021-03-04 05:06:07.123456789' file.txt
    touch -h -d '2020-01-01 00:00:00.5' dir/rel-link
    touch -d '2019-02-03 04:05:06.987654321' dir/sub
  `);
  return root;
}
