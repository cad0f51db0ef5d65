// A tree checker for round-trip tests: records everything a restore must bring back, per
// path, and compares two recordings. Paths are raw bytes (Linux allows any but "/" and NUL),
// kept as latin1 strings so that every byte survives. xattrs come from getfattr's hex dump
// and ACLs from getfacl, both machine-oriented forms, each read in one run for the tree.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type BigIntStats } from "node:fs";

export interface TreeEntry {
  /** Relative to the root, latin1 of the raw bytes; the root itself is ".". */
  path: string;
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket" | "other";
  /** Permission bits with setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files only; 0 otherwise. */
  size: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** Device number, for device nodes only. */
  rdev: number;
  /** Symlink target, latin1 of the raw bytes. */
  link: string | null;
  sha256: string | null;
  /** Allocated blocks far below the size: the file has holes. */
  sparse: boolean;
  /** Every path in the tree sharing this inode, sorted; empty when there is no other. */
  linkGroup: string[];
  /** name → hex value ("0x..."), without the ACL xattrs (see acl). */
  xattrs: Record<string, string>;
  /** The ACL entries getfacl prints (access and default), without its comment lines. */
  acl: string[];
}

function typeOf(stat: BigIntStats): TreeEntry["type"] {
  if (stat.isFile()) return "file";
  if (stat.isDirectory()) return "dir";
  if (stat.isSymbolicLink()) return "symlink";
  if (stat.isFIFO()) return "fifo";
  if (stat.isCharacterDevice()) return "char";
  if (stat.isBlockDevice()) return "block";
  if (stat.isSocket()) return "socket";
  return "other";
}

const SLASH = Buffer.from("/");

function walk(root: Buffer, relative: Buffer, out: Buffer[]) {
  out.push(relative);
  const full = relative.length ? Buffer.concat([root, SLASH, relative]) : root;
  if (!lstatSync(full).isDirectory()) return;
  for (const name of readdirSync(full, { encoding: "buffer" }).sort(Buffer.compare)) {
    walk(root, relative.length ? Buffer.concat([relative, SLASH, name]) : name, out);
  }
}

/** getfattr and getfacl print "\ooo" for unprintable bytes and "\\" for a backslash. */
function unescape(text: string): string {
  return text.replace(/\\(\\|[0-7]{3})/g, (_, code: string) =>
    code === "\\" ? "\\" : String.fromCharCode(parseInt(code, 8)),
  );
}

/** Runs a tool on the whole tree and splits its output into "# file: PATH" blocks. */
function blocks(tool: string, args: string[], root: string): Map<string, string[]> {
  let text: string;
  try {
    text = execFileSync(tool, [...args, root], {
      encoding: "latin1",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 1 << 30,
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(
      code === "ENOENT"
        ? `${tool} is missing: apt-get install ${tool === "getfacl" ? "acl" : "attr"}`
        : `${tool} failed on ${root}: ${String((error as { stderr?: unknown }).stderr ?? error)}`,
    );
  }
  const out = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("# file: ")) {
      const full = unescape(line.slice("# file: ".length));
      const relative = full === root ? "." : full.slice(root.length + 1);
      current = [];
      out.set(relative, current);
    } else if (current && line !== "" && !line.startsWith("#")) {
      current.push(line);
    }
  }
  return out;
}

/** Record every path under `root` (which is included as "."). */
export function recordTree(root: string): TreeEntry[] {
  const rootBytes = Buffer.from(root, "latin1");
  const paths: Buffer[] = [];
  walk(rootBytes, Buffer.alloc(0), paths);
  const xattrs = blocks(
    "getfattr",
    ["-R", "--absolute-names", "-h", "-d", "-m", "-", "-e", "hex"],
    root,
  );
  // Symlinks have no ACLs; getfacl -R skips them.
  const acls = blocks("getfacl", ["-R", "-P", "-n", "-p", "--absolute-names"], root);
  const byInode = new Map<string, string[]>();
  const inodeOf = new Map<string, string>();
  const entries: TreeEntry[] = [];
  for (const relative of paths) {
    const full = relative.length ? Buffer.concat([rootBytes, SLASH, relative]) : rootBytes;
    const stat = lstatSync(full, { bigint: true });
    const type = typeOf(stat);
    const name = relative.length ? relative.toString("latin1") : ".";
    if (type !== "dir") {
      const inode = `${stat.dev}:${stat.ino}`;
      byInode.set(inode, [...(byInode.get(inode) ?? []), name]);
      inodeOf.set(name, inode);
    }
    const attributes: Record<string, string> = {};
    for (const line of xattrs.get(name) ?? []) {
      const equals = line.indexOf("=");
      const key = equals < 0 ? line : line.slice(0, equals);
      // ACLs are compared through getfacl; their raw xattr encoding may differ harmlessly.
      if (!key.startsWith("system.posix_acl_")) attributes[key] = line.slice(equals + 1);
    }
    entries.push({
      path: name,
      type,
      mode: Number(stat.mode & 0o7777n),
      uid: Number(stat.uid),
      gid: Number(stat.gid),
      size: type === "file" ? Number(stat.size) : 0,
      mtimeNs: String(stat.mtimeNs),
      rdev: type === "char" || type === "block" ? Number(stat.rdev) : 0,
      link:
        type === "symlink" ? readlinkSync(full, { encoding: "buffer" }).toString("latin1") : null,
      sha256:
        type === "file" ? createHash("sha256").update(readFileSync(full)).digest("hex") : null,
      sparse: type === "file" && stat.size > 65536n && stat.blocks * 512n * 2n < stat.size,
      linkGroup: [],
      xattrs: attributes,
      acl: acls.get(name) ?? [],
    });
  }
  for (const entry of entries) {
    const group = byInode.get(inodeOf.get(entry.path) ?? "") ?? [];
    if (group.length > 1) entry.linkGroup = [...group].sort();
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
      const show = (value: unknown) =>
        key === "mode" ? (value as number).toString(8) : JSON.stringify(value);
      const a = show(want[key]);
      const b = show(got[key]);
      if (a !== b) differences.push(`${shown}: ${key} ${a} became ${b}`);
    }
  }
  for (const extra of byPath.keys()) differences.push(`${JSON.stringify(extra)}: unexpected`);
  return differences;
}

/** One shell script for the attribute tree, so that a reader sees every case in one place. */
const ATTRIBUTE_TREE = String.raw`
  cap() { if command -v setcap >/dev/null; then setcap "$1" "$2";
          else setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$2"; fi; }
  mkdir -p dir/sub empty 'with space' "$(printf 'latin1-\xe9')" ro
  : > empty-file
  echo hello > file.txt
  head -c 300000 /dev/urandom > dir/random.bin
  ln file.txt dir/hardlink-a
  ln file.txt dir/sub/hardlink-b
  truncate -s 1G sparse.img
  dd if=/dev/urandom of=sparse.img bs=4096 count=2 seek=100000 conv=notrunc status=none
  printf tail >> sparse.img
  ln -s /etc/passwd abs-link
  ln -s /etc abs-dir-link
  ln -s ../file.txt dir/rel-link
  ln -s does-not-exist dangling
  ln -s "$(printf 'caf\xe9')" "$(printf 'link-\xff')"
  mkfifo fifo
  mknod chardev c 1 3
  mknod blockdev b 7 200
  echo s > setuid && chmod 4755 setuid
  echo g > setgid && chmod 2710 setgid
  chmod 1777 dir/sub
  chmod 2775 'with space'
  echo big > big-owner && chown 300000:300001 big-owner
  echo huge > huge-owner && chown 4000000000:4000000001 huge-owner
  long=$(printf 'n%.0s' $(seq 1 255))
  deep="deep/$(printf 'd%.0s' $(seq 1 200))/$(printf 'e%.0s' $(seq 1 200))"
  mkdir -p "$deep" && echo long > "$deep/$long"
  printf 'x' > "$(printf 'latin1-\xe9')/$(printf 'caf\xe9')"
  printf 'y' > "$(printf 'new\nline')"
  setfattr -n user.note -v "hello world" file.txt
  setfattr -n user.binary -v 0x00ff10fe dir/random.bin
  setfattr -n trusted.lifeboat -v 0x01 empty-file
  setfattr -n user.on-a-dir -v 1 dir
  setfattr -n security.capability -v 0x0100000200040000000000000000000000000000 setuid
  echo capable > capable && cap cap_net_bind_service,cap_net_raw=ep capable
  setfacl -m u:1234:rw-,g:2345:r-- file.txt
  setfacl -m u:1234:rwx dir
  setfacl -d -m u:1234:rwx,g:2345:r-x dir
  touch ro/inside && chmod 555 ro
  touch -d '2021-03-04 05:06:07.123456789' file.txt
  touch -d '1960-05-06 07:08:09.5' empty-file
  touch -d '2200-01-01 00:00:00.000000001' huge-owner
  touch -h -d '2020-01-01 00:00:00.5' dir/rel-link
  touch -d '2019-02-03 04:05:06.987654321' dir/sub
  touch -d '2018-01-02 03:04:05.25' ro
`;

/**
 * Build a tree with every kind of thing a backup must keep: hard links, a 1 GiB sparse file,
 * binary xattrs (security.capability, trusted.*), access and default ACLs, 255-byte names in
 * a path longer than 255 bytes, non-UTF-8 names, absolute, relative and dangling symlinks,
 * a FIFO, devices, setuid/setgid/sticky bits, owners above 2^16 and 2^31, times before 1970
 * and after 2038 with nanoseconds, an empty and a read-only directory. Needs root.
 */
export function buildAttributeTree(root: string): string {
  execFileSync("bash", ["-euo", "pipefail", "-c", ATTRIBUTE_TREE], { cwd: root });
  return root;
}
