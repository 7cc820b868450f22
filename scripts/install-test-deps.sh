#!/usr/bin/env bash
# Debian packages the tests and benchmarks use as real peers: nginx, apache2 (its default
# TCP_DEFER_ACCEPT), haproxy, curl, python3 with
# scapy (crafted TCP options), tcpdump (captures for `toa inspect`), nftables, iproute2 (netns,
# veth), ethtool (checksum offload off: full checksums through the packet path), chromium (status
# page screenshot); and for the kernel matrix (test/kernels/: Debian kernels booted under qemu):
# qemu-system-x86, busybox-static (the VM's initramfs), cpio, kmod (depmod, modprobe), xz-utils and
# zstd (compressed kernel modules), debian-archive-keyring (the kernel packages' signatures), e2fsprogs
# (mkfs.ext4: the project's disk for each VM), qemu-system-arm and debootstrap (the arm64 legs: their
# Debian root file system is built once by test/kernels/arm64-rootfs.sh); and for
# `npm run package` and its tests: rpm (rpmbuild, and rpm -qp to inspect the .rpm), qemu-user with
# Debian's arm64 cross libraries (the arm64 executable runs under qemu-aarch64 -L /usr/aarch64-linux-gnu).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  nginx-light apache2 haproxy curl iproute2 ethtool nftables tcpdump python3 python3-scapy chromium \
  procps util-linux kmod ca-certificates \
  qemu-system-x86 busybox-static cpio xz-utils zstd debian-archive-keyring e2fsprogs qemu-system-arm debootstrap \
  rpm qemu-user libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross >/dev/null
