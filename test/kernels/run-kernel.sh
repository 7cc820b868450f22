#!/usr/bin/env bash
# Boot a Debian kernel under qemu with this machine's root file system (read-only 9p + tmpfs overlay)
# and run one command as root inside it; its output and exit code come back in OUTDIR.
#   run-kernel.sh KDIR OUTDIR 'command'
# KDIR: a linux-image .deb laid out by fetch-kernel.sh (boot/vmlinuz-*, lib/modules/*, depmod done).
# OUTDIR gets: log (the command's output), rc (its exit code), console (the VM's console). It is
# mounted read-write at /mnt in the guest, so the command can leave result files there.
# Exit code: the command's, or 3 when the guest gave no result (crash, timeout: see OUTDIR/console).
# VM_DISK + VM_DISK_AT: an ext4 image attached as a virtio disk and mounted read-write at that path over
# the 9p root (a throwaway copy of the project: node reads hundreds of files per start, and 9p under
# TCG made `toa --help` take 25 s against 8 s from a local file system).
# VM_ARCH=arm64 (with VM_BUSYBOX, VM_ROOT_IMAGE): an arm64 kernel under qemu-system-aarch64. It can't
# run this machine's binaries, so its root is VM_ROOT_IMAGE (arm64-rootfs.sh builds it), a virtio disk
# whose writes are thrown away at power-off (qemu's snapshot=on; VM_ROOT_RW=1 keeps them), and the
# initramfs's shell is VM_BUSYBOX, an arm64 busybox-static. The kernel's modules come over 9p.
# Settings (environment): VM_MEM (6G), VM_CPUS (2), VM_TIMEOUT seconds (10800), VM_QUIET (quiet; empty
# shows the boot log), VM_ACCEL (-accel tcg,thread=multi -cpu max: nested KVM does not work on these
# machines, "KVM internal error ... emulation failure").
set -euo pipefail
kdir=$(readlink -f "$1"); out=$(readlink -f "$2"); cmd=$3
mem=${VM_MEM:-6G}; cpus=${VM_CPUS:-2}; tmo=${VM_TIMEOUT:-10800}; arch=${VM_ARCH:-amd64}
if [ "$arch" = arm64 ]; then
  [ -f "${VM_ROOT_IMAGE:-}" ] && [ -f "${VM_BUSYBOX:-}" ] || { echo "VM_ARCH=arm64 needs VM_ROOT_IMAGE and VM_BUSYBOX (arm64-rootfs.sh makes both)" >&2; exit 2; }
fi
kver=$(ls "$kdir/lib/modules")
vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
[ -f "$kdir/lib/modules/$kver/modules.dep" ] || depmod -b "$kdir" "$kver"
mkdir -p "$out"; rm -f "$out"/rc "$out"/log
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ird="$work/initrd"; mkdir -p "$ird"/{bin,dev,proc,sys,newroot,mods}
cp "${VM_BUSYBOX:-/usr/bin/busybox}" "$ird/bin/busybox"
# Modules the initramfs needs for a 9p root and an overlay, in dependency order (some are built in
# on some kernels: then modprobe names none).
mods=""
blk=""; { [ -n "${VM_DISK:-}" ] || [ "$arch" = arm64 ]; } && blk="virtio_blk ext4"
for m in virtio virtio_ring virtio_mmio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay $blk; do
  f=$(modprobe -d "$kdir" -S "$kver" --show-depends "$m" 2>/dev/null | awk '/^insmod/{print $2}') || true
  for p in $f; do b=$(basename "$p"); [ -f "$ird/mods/$b" ] && continue; cp "$p" "$ird/mods/$b"; mods="$mods $b"; done
done
case "$mods" in *.ko.xz*|*.ko.zst*) echo "compressed modules: decompress first (fetch-kernel.sh does)" >&2; exit 1;; esac
# The root: this machine's over 9p under a tmpfs overlay, or (arm64) the image on the first disk.
if [ "$arch" = arm64 ]; then
  project_dev=/dev/vdb
  root_mount="i=0; while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
mount -t ext4 /dev/vda /newroot || echo 'mounting the root image failed'
mkdir -p /newroot/lib/modules; mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 modules /newroot/lib/modules"
else
  project_dev=/dev/vda
  root_mount="mkdir -p /lower /upper; mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /lower
mount -t tmpfs -o size=4G tmp /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
mkdir -p /newroot/lib/modules; mount --bind /lower$kdir/lib/modules /newroot/lib/modules"
fi
disk_mount=""
[ -n "${VM_DISK:-}" ] && disk_mount="mkdir -p /newroot$VM_DISK_AT; mount -t ext4 $project_dev /newroot$VM_DISK_AT || echo 'mounting the project disk failed'"
cat > "$ird/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do insmod /mods/\$m 2>/dev/null; done
mkdir -p /newroot
$root_mount
mkdir -p /newroot/mnt; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /newroot/mnt
$disk_mount
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /mnt/guest-init
INIT
chmod +x "$ird/init"
cat > "$out/guest-init" <<GINIT
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t tmpfs run /run
mount -t cgroup2 none /sys/fs/cgroup; mount -t bpf bpf /sys/fs/bpf; mount -t debugfs none /sys/kernel/debug 2>/dev/null
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm
mkdir -p /run/netns /var/run; ip link set lo up; hostname vm-$kver
for m in veth sch_ingress sch_fq_codel cls_bpf act_bpf nf_tables nft_chain_nat nf_nat tun bridge; do modprobe \$m 2>/dev/null; done
echo "== guest \$(uname -r) up"
( $cmd ) > /mnt/log 2>&1; echo \$? > /mnt/rc
sync; echo o > /proc/sysrq-trigger; poweroff -f
GINIT
chmod +x "$out/guest-init"
( cd "$ird" && find . | cpio -o -H newc 2>/dev/null | gzip -1 ) > "$work/initrd.gz"
if [ "$arch" = arm64 ]; then
  # pauth-impdef: TCG's own pointer-authentication hash instead of QARMA's, several times cheaper.
  machine=(qemu-system-aarch64 -M virt ${VM_ACCEL:--accel tcg,thread=multi -cpu max,pauth-impdef=on}); console=ttyAMA0
  disks=(-drive "file=$VM_ROOT_IMAGE,format=raw,if=virtio,cache=unsafe$([ -n "${VM_ROOT_RW:-}" ] || echo ,snapshot=on)"
         -virtfs "local,path=$kdir/lib/modules,mount_tag=modules,security_model=none,readonly=on")
else
  machine=(qemu-system-x86_64 ${VM_ACCEL:--accel tcg,thread=multi -cpu max}); console=ttyS0
  disks=(-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap)
fi
timeout "$tmo" "${machine[@]}" -m "$mem" -smp "$cpus" -nographic -no-reboot \
  -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=$console ${VM_QUIET-quiet} panic=-1 init=/init net.ifnames=0" \
  "${disks[@]}" \
  -virtfs local,path="$out",mount_tag=out,security_model=none \
  ${VM_DISK:+-drive file=$VM_DISK,format=raw,if=virtio,cache=unsafe} \
  -nic none > "$out/console" 2>&1 || true
[ -f "$out/rc" ] || { echo "no result; console tail:"; tail -20 "$out/console"; exit 3; }
exit "$(cat "$out/rc")"
