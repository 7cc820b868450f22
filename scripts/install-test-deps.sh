#!/usr/bin/env bash
# Debian packages the tests and benchmarks use as real peers: nginx, haproxy, curl, python3 with
# scapy (crafted TCP options), tcpdump (captures for `toa inspect`), nftables, iproute2 (netns,
# veth), ethtool (checksum offload off: full checksums through the packet path), chromium (status
# page screenshot).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  nginx-light haproxy curl iproute2 ethtool nftables tcpdump python3 python3-scapy chromium \
  procps util-linux kmod ca-certificates >/dev/null
