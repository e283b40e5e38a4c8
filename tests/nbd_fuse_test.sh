#!/usr/bin/env bash
# `ovbd serve` under nbdfuse (libnbd-bin): the export mounted as one file, written and read with
# dd at byte offsets. nbdfuse passes each FUSE request on as it is, so this works only because
# the server advertises minimum block size 1 (docs/nbd.md, "Block sizes"); with 512, libnbd
# refused the first 1-byte write with EINVAL.
#
# usage: nbd_fuse_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (not root, no /dev/fuse, nbdfuse or fusermount3
# missing; the reason is printed).
set -u

OVBD=${1:?usage: nbd_fuse_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: nbd_fuse_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)

[ "$(id -u)" -eq 0 ] || { echo "SKIP: nbdfuse mounts need root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for tool in nbdfuse fusermount3 cmp "$PY"; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"; exit 77; }
done
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-fuse.XXXXXX")
SERVER_PID=""
FUSE_PID=""
cleanup() {
  [ -n "$FUSE_PID" ] && { fusermount3 -u "$T/mnt" 2>/dev/null; wait "$FUSE_PID" 2>/dev/null; }
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

. "$HERE/harness.sh"

# mount: nbdfuse of $URI at $T/mnt/disk, waiting for its pid file (written once it serves).
mount_export() {
  mkdir -p "$T/mnt"
  rm -f "$T/fuse.pid"
  nbdfuse -P "$T/fuse.pid" "$T/mnt/disk" "$URI" 2> "$T/fuse.err" &
  FUSE_PID=$!
  for _ in $(seq 1 200); do
    [ -s "$T/fuse.pid" ] && [ -f "$T/mnt/disk" ] && return 0
    kill -0 "$FUSE_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$T/fuse.err"
  return 1
}
unmount_export() {
  fusermount3 -u "$T/mnt" || return 1
  wait "$FUSE_PID"
  local rc=$?
  FUSE_PID=""
  return $rc
}

"$OVBD" cat -q -o "$T/model" "$VEC/layer0.lsmt" || { echo "FAIL: ovbd cat"; exit 1; }
size=$(stat -c %s "$T/model")
"$OVBD" create --size "$size" "$T/up.data" "$T/up.index" > /dev/null || exit 1
start rw "$VEC/layer0.lsmt" --upper "$T/up.data" "$T/up.index" || exit 1
check "nbdfuse mounts the export" mount_export
[ -z "$FUSE_PID" ] && { summary nbd_fuse; exit 1; }

# Each write goes to the mounted file and to the model; both must then hold the same bytes.
patch_both() {  # patch_both OFFSET BS COUNT TEXT: dd TEXT at OFFSET (as SEEK*BS) into both files
  local seek=$(( $1 / $2 ))
  printf '%s' "$4" | dd of="$T/mnt/disk" bs="$2" seek="$seek" count="$3" conv=notrunc status=none || return 1
  printf '%s' "$4" | dd of="$T/model" bs="$2" seek="$seek" count="$3" conv=notrunc status=none
}
check "dd bs=1 seek=1000 count=3: an unaligned 3-byte write" patch_both 1000 1 3 xyz
check "dd bs=1 skip=999 count=5 reads the bytes around it back" bash -c "
  [ \"\$(dd if='$T/mnt/disk' bs=1 skip=999 count=5 status=none | od -An -c)\" = \
    \"\$(dd if='$T/model' bs=1 skip=999 count=5 status=none | od -An -c)\" ] &&
  [ \"\$(dd if='$T/mnt/disk' bs=1 skip=1000 count=3 status=none)\" = xyz ]"
check "dd bs=100 seek=51: a write across a sector boundary (5100..5199)" \
  patch_both 5100 100 1 "$(printf 'w%.0s' $(seq 1 100))"
check "dd bs=1 at the last byte of the export" patch_both $((size - 1)) 1 1 Z
check "the whole mounted file equals the model" cmp "$T/mnt/disk" "$T/model"
saw_unaligned_refused_none() {
  [ "$(status_field unaligned_requests)" -gt 0 ] && status_is requests_refused 0
}
check "the server saw unaligned requests (FUSE passes them on) and refused none" saw_unaligned_refused_none
check "fusermount3 -u unmounts; nbdfuse exits 0" unmount_export
check "serve stops with exit 0 (upper flushed)" stop
check "the upper layer reopens to the model" bash -c \
  "'$OVBD' cat -q '$VEC/layer0.lsmt' --upper '$T/up.data' '$T/up.index' | cmp - '$T/model'"

summary nbd_fuse
