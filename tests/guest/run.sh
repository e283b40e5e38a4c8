#!/bin/bash
# Runs a command as root inside a qemu guest whose root file system is this machine's, read-only,
# for tests that need what the host kernel or the container does not give: a capability the
# container lacks (CAP_SYS_RESOURCE for online ext4 resizing), or kernel clients (nbd) that the
# host kernel has no module for.
#
# The guest is Debian's kernel (linux-image-amd64, the newest /boot/vmlinuz-* with modules) under
# software emulation (TCG: KVM is not available here). A small initramfs made at each run (busybox,
# tests/guest/init.sh) loads the virtio, 9p and overlay modules, mounts the host's / over virtio-9p
# read-only, puts an overlay on it whose upper layer is the guest's memory (tmpfs), mounts proc,
# sysfs, devtmpfs and /run in it, loads the modules listed in OVBD_GUEST_MODULES (default: loop
# fuse ext4) and runs the command chrooted into it, in the directory it was started from. Every
# host file (a build tree under /tmp included) is seen as it is, so binaries run as they were
# built; what the command writes goes to the guest's memory (up to 85% of it) and is gone when it
# ends: the host's files are never changed.
#
# The command's output reaches the console (ttyS0 = this script's stdout), and its exit status is
# this script's: the guest prints it in a marker line that this script reads back. A guest that
# does not print the marker (kernel panic, timeout) is a failure (exit 1). Without qemu, busybox,
# cpio or a kernel, it exits 77 (a skipped test) naming what is missing: scripts/install-deps.sh
# installs them.
#
# usage: run.sh [--mem MiB] [--cpus N] [--timeout SECONDS] -- COMMAND [ARG...]
# Environment: OVBD_GUEST_MODULES (modules to load), OVBD_GUEST_KEEP=1 (keep the work directory).
set -euo pipefail

mem=3072 cpus=2 timeout=600
while [ $# -gt 0 ]; do
  case $1 in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run.sh [--mem MiB] [--cpus N] [--timeout S] -- COMMAND..." >&2; exit 2; }

die() { echo "guest: $*" >&2; exit 1; }
missing() { echo "SKIP: guest: $*" >&2; exit 77; }
QEMU=$(command -v qemu-system-x86_64) || missing "qemu-system-x86_64 is not installed (qemu-system-x86)"
BUSYBOX=$(command -v busybox) || missing "busybox is not installed (busybox-static)"
! ldd "$BUSYBOX" > /dev/null 2>&1 ||  # ldd fails on a static executable
  missing "$BUSYBOX is not static (install busybox-static)"
command -v cpio >/dev/null || missing "cpio is not installed"

# The newest Debian kernel that has its modules.
KVER=""
for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
  v=${k#/boot/vmlinuz-}
  [ -f "/lib/modules/$v/modules.dep" ] && { KVER=$v; break; }
done
[ -n "$KVER" ] || missing "no /boot/vmlinuz-VERSION with /lib/modules/VERSION (install linux-image-amd64)"
[ -r "/boot/vmlinuz-$KVER" ] || die "/boot/vmlinuz-$KVER is not readable"

W=$(mktemp -d /tmp/ovbd-guest.XXXXXX)
cleanup() { [ "${OVBD_GUEST_KEEP:-0}" = 1 ] && echo "guest: work directory $W" >&2 || rm -rf "$W"; }
trap cleanup EXIT
R=$W/initramfs
mkdir -p "$R"/{bin,dev,proc,sys,modules}
cp "$BUSYBOX" "$R/bin/busybox"

# The modules that mounting the host's root needs, in load order (dependencies first).
: > "$R/modules/order"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -S "$KVER" --show-depends "$m" | while read -r verb path _; do
    [ "$verb" = insmod ] || continue
    name=$(basename "$path")
    grep -qx "$name" "$R/modules/order" && continue
    case $path in
      *.ko) cp "$path" "$R/modules/$name" ;;
      *.ko.xz) xz -dc "$path" > "$R/modules/${name%.xz}"; name=${name%.xz} ;;
      *.ko.zst) zstd -qdc "$path" > "$R/modules/${name%.zst}"; name=${name%.zst} ;;
      *) die "module $path: unknown compression" ;;
    esac
    echo "$name" >> "$R/modules/order"
  done
done

# The command, quoted for the guest's shell.
printf '%q ' "$@" > "$R/command"
printf '%s' "$PWD" > "$R/cwd"
printf '%s' "${OVBD_GUEST_MODULES:-loop fuse ext4}" > "$R/load"
# Environment the command sees: the variables a test harness sets that matter inside.
for v in $(compgen -e); do
  if [[ $v =~ ^(CI|OVBD_[A-Z_]+|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$ && $v != OVBD_GUEST_* ]]; then
    printf 'export %s=%q\n' "$v" "${!v}"
  fi
done > "$R/env"

cp "$(dirname "$0")/init.sh" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet) > "$W/initramfs.cpio"

echo "guest: booting linux $KVER (TCG, $cpus cpus, $mem MiB)"
start=$(date +%s)
set +e
timeout --kill-after=10 "$timeout" "$QEMU" \
  -machine q35 -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
  -kernel "/boot/vmlinuz-$KVER" -initrd "$W/initramfs.cpio" \
  -append "console=ttyS0 panic=-1 quiet loglevel=4" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -display none -monitor none -serial stdio -no-reboot -nodefaults \
  < /dev/null | tee "$W/console.log"
qrc=${PIPESTATUS[0]}
set -e
echo "guest: qemu exited ($qrc) after $(( $(date +%s) - start )) s"
rc=$(tr -d '\r' < "$W/console.log" | sed -n 's/^OVBD-GUEST-EXIT=\([0-9]*\)$/\1/p' | tail -1)
[ -n "$rc" ] || die "the guest ended without the command's exit status (qemu $qrc; timeout ${timeout}s?)"
exit "$rc"
