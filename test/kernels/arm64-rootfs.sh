#!/usr/bin/env bash
# Build, once, the root file system the arm64 legs boot: Debian bookworm for arm64 with the peers the
# tests start (nginx, apache2, haproxy, curl, python3 with scapy, tcpdump, iproute2, nftables), as an
# ext4 image. The x86 legs boot this machine's own root over 9p; an arm64 kernel can't run its
# binaries, so it gets a Debian of its own.
#   arm64-rootfs.sh CACHE_DIR KDIR
# KDIR: an arm64 kernel laid out by fetch-kernel.sh; it boots the image once to finish debootstrap's
# second stage (its maintainer scripts are arm64 programs). Prints the image's path on its last line;
# CACHE_DIR/busybox-arm64 (the arm64 initramfs's shell) is left beside it. The image's name carries a
# hash of the package list, so changing the list builds a new one. A few minutes of downloads (kept
# in CACHE_DIR/debootstrap-arm64) and unpacking on the host, then ~25 min of emulated second stage
# (2026-12-03, beside two other VMs).
# Needs: debootstrap, debian-archive-keyring, e2fsprogs, qemu-system-arm (and what run-kernel.sh needs).
set -euo pipefail
cache=$(mkdir -p "$1" && cd "$1" && pwd); kdir=$(readlink -f "$2")
here=$(dirname "$(readlink -f "$0")")
pkgs="busybox-static iproute2 nftables nginx-light apache2 haproxy curl python3 python3-scapy tcpdump ethtool procps kmod"
id=$(echo "bookworm $pkgs" | sha256sum | cut -c1-12)
img="$cache/rootfs-bookworm-arm64-$id.img"
if [ -f "$img.ready" ] && [ -f "$cache/busybox-arm64" ]; then echo "$img"; exit 0; fi
work=$(mktemp -d "$cache/rootfs-build.XXXXXX"); trap 'rm -rf "$work"' EXIT
echo "arm64-rootfs: debootstrap's first stage (downloads and unpacks bookworm for arm64)" >&2
mkdir -p "$cache/debootstrap-arm64"
debootstrap --arch=arm64 --foreign --variant=minbase --include="${pkgs// /,}" --cache-dir="$cache/debootstrap-arm64" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg bookworm "$work/root" http://deb.debian.org/debian >"$work/stage1.log" 2>&1 ||
  { tail -20 "$work/stage1.log" >&2; exit 1; }
# The initramfs's shell: busybox-static's binary, straight from its package (the first stage
# downloads every package but unpacks only the essential ones).
deb=$(ls "$work"/root/var/cache/apt/archives/busybox-static_*_arm64.deb "$cache"/debootstrap-arm64/busybox-static_*_arm64.deb 2>/dev/null | head -1)
dpkg-deb -x "$deb" "$work/bb"
cp "$work/bb/bin/busybox" "$cache/busybox-arm64.new"
echo "arm64-rootfs: making the ext4 image" >&2
rm -f "$img" "$img.ready"
truncate -s 3G "$img"
mkfs.ext4 -q -F -L rootfs -E root_owner=0:0 -d "$work/root" "$img"
rm -rf "$work/root"
echo "arm64-rootfs: debootstrap's second stage inside the VM (emulated arm64; ~25 min)" >&2
# The tests' hostname lookups and dpkg's runs want these; apt's caches go (the image stays small).
second='/debootstrap/debootstrap --second-stage && echo "127.0.0.1 localhost" > /etc/hosts && apt-get clean && rm -rf /var/lib/apt/lists/*'
if ! VM_ARCH=arm64 VM_BUSYBOX="$cache/busybox-arm64.new" VM_ROOT_IMAGE="$img" VM_ROOT_RW=1 VM_TIMEOUT=5400 \
  "$here/run-kernel.sh" "$kdir" "$work/vm" "$second" >&2; then
  cp "$work/vm/console" "$cache/rootfs-build-console.log" 2>/dev/null || true
  echo "arm64-rootfs: the second stage failed (VM console: $cache/rootfs-build-console.log); its output:" >&2
  tail -30 "$work/vm/log" >&2 || true
  rm -f "$img"; exit 1
fi
mv "$cache/busybox-arm64.new" "$cache/busybox-arm64"
touch "$img.ready"
echo "$img"
