#!/usr/bin/env bash
# Fetch a Debian kernel package and lay it out for run-kernel.sh.
#   fetch-kernel.sh SUITE CACHE_DIR [ARCH]
#     SUITE: bullseye (5.10) | bookworm (6.1) | trixie (6.12); ARCH: amd64 (default) | arm64
# Prints the kernel folder (CACHE_DIR/<version>) on its last line. Uses a private apt list folder, so
# the machine's own apt sources stay untouched; a kernel already laid out is not fetched again.
# Needs: apt-get, dpkg-deb, xz/zstd, depmod (kmod).
set -euo pipefail
suite=$1; cache=$(mkdir -p "$2" && cd "$2" && pwd); arch=${3:-amd64}
apt_dir="$cache/apt-$suite-$arch"; mkdir -p "$apt_dir/lists/partial" "$cache/debs"
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" > "$apt_dir/sources.list"
A=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$apt_dir/lists"
   -o APT::Get::List-Cleanup=0 -o APT::Architecture="$arch" -o APT::Architectures="$arch")
# A cached layout of this suite is used as is when the archive can't be reached (offline re-runs).
marker="$cache/$suite-$arch.kernel"
if ! apt-get "${A[@]}" update -qq >/dev/null 2>&1; then
  if [ -f "$marker" ] && [ -f "$(cat "$marker")/.ready" ]; then cat "$marker"; exit 0; fi
  echo "fetch-kernel: apt-get update for $suite/$arch failed and nothing is cached" >&2; exit 1
fi
# The newest generic image of the suite (not -cloud, -rt or -dbg).
pkg=$(apt-cache "${A[@]}" search "^linux-image-[0-9].*-$arch\$" | awk '{print $1}' | grep -vE 'cloud|rt-|dbg' | sort -V | tail -1)
[ -n "$pkg" ] || { echo "fetch-kernel: no linux-image-*-$arch in $suite" >&2; exit 1; }
ver=${pkg#linux-image-}
kdir="$cache/$ver"
if [ ! -f "$kdir/.ready" ]; then
  echo "fetch-kernel: downloading $pkg ($suite, $arch)" >&2
  (cd "$cache/debs" && apt-get "${A[@]}" download "$pkg:$arch" >/dev/null)
  rm -rf "$kdir"; mkdir -p "$kdir"
  dpkg-deb -x "$cache"/debs/"$pkg"_*_"$arch".deb "$kdir"
  if [ -d "$kdir/usr/lib/modules" ]; then mkdir -p "$kdir/lib"; mv "$kdir/usr/lib/modules" "$kdir/lib/"; fi
  # The initramfs loads modules with busybox insmod, which can't decompress.
  find "$kdir/lib/modules" -name '*.ko.xz' -print0 | xargs -0 -r -P2 -n200 xz -d
  find "$kdir/lib/modules" -name '*.ko.zst' -print0 | xargs -0 -r -P2 -n200 zstd -q -d --rm
  rm -f "$kdir"/lib/modules/*/modules.dep*
  depmod -b "$kdir" "$ver"
  touch "$kdir/.ready"
fi
echo "$kdir" > "$marker"
echo "$kdir"
