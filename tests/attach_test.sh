#!/bin/bash
# End-to-end test of `ovbd attach` / `ovbd detach` with real tools: ext4 built from a tree,
# imported as a layer, changed through /dev/loopN in two sessions, each committed into a layer,
# then every stack mounted read-only and compared with `diff -r`; an erofs image served from a
# ZFile; the --fuse-only file against `ovbd cat`; foreground mode; error reporting; a killed
# attach process. Needs root, /dev/fuse and a free loop device (skips with 77 otherwise).
#
# usage: attach_test.sh /path/to/ovbd
set -euo pipefail

OVBD=$(realpath "$1")
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (FUSE mount, loop devices, mount)"
{ exec 3<>/dev/fuse; } 2>/dev/null || skip "/dev/fuse cannot be opened"
exec 3>&-
[ -c /dev/loop-control ] || skip "no /dev/loop-control"
losetup -f >/dev/null 2>&1 || skip "no free loop device"
for tool in mkfs.ext4 mount umount diff cmp losetup blockdev; do
  command -v $tool >/dev/null || skip "$tool is not installed"
done

W=$(mktemp -d /tmp/ovbd-attach-test.XXXXXX)
export OVBD_RUN_DIR=$W/run
log() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  set +e
  # Filesystems on our loop devices and FUSE mounts, deepest first.
  for m in $(awk -v w="$W" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for state in "$OVBD_RUN_DIR"/attach-*/state; do
    [ -f "$state" ] || continue
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$state")
    dev=$(sed -n 's/.*"device": *"\([^"]*\)".*/\1/p' "$state")
    [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    sleep 1
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  done
  for m in $(awk -v w="$W" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m"; done
  for dev in $(losetup -n -O NAME -j "$W/plain.img" 2>/dev/null); do losetup -d "$dev"; done
  rm -rf "$W"
}
trap cleanup EXIT

cd "$W"

# ---- source trees --------------------------------------------------------------------------
# Deterministic pseudo-random content: "payload SEED SIZE".
payload() { head -c "$2" <(openssl enc -aes-128-ctr -pass pass:"$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null); }
command -v openssl >/dev/null || payload() { head -c "$2" /dev/urandom; }

make_tree0() {
  local t=$1 i
  mkdir -p "$t"
  for d in 0 1 2 3 4 5 6 7; do mkdir -p "$t/dir$d/sub"; done
  for i in $(seq 0 299); do
    local size=$(( (i * 7919) % 65536 ))
    (( i % 50 == 0 )) && size=$(( 1048576 + i * 1000 ))  # a few large files
    (( i % 37 == 0 )) && size=0
    payload "f$i" $size > "$t/dir$(( i % 8 ))/file$i.bin"
  done
  for i in $(seq 0 19); do echo "text $i" > "$t/dir$(( i % 8 ))/sub/note$i.txt"; done
  ln -s ../dir1/file1.bin "$t/dir0/link-to-file1"
  ln -s sub "$t/dir2/sublink"
  ln -s /nonexistent/target "$t/dir3/dangling"
}

# Session 1 changes: add, modify (in place and by rewrite), delete, new dir and symlink.
changes1() {
  local t=$1
  payload new1 300000 > "$t/dir0/new-big.bin"
  echo "added in session 1" > "$t/dir1/added.txt"
  payload mod1 4096 | dd of="$t/dir2/file2.bin" bs=4096 seek=1 conv=notrunc status=none
  payload rew1 77777 > "$t/dir3/file3.bin"
  rm -f "$t/dir4/file4.bin" "$t/dir5/file5.bin" "$t/dir6/sub/note6.txt"
  mkdir -p "$t/newdir/deeper"
  payload deep1 12345 > "$t/newdir/deeper/x.bin"
  ln -s ../newdir/deeper/x.bin "$t/dir7/link-x"
}

# Session 2 changes, on top of session 1.
changes2() {
  local t=$1
  rm -rf "$t/dir7"
  payload new2 2000000 > "$t/dir0/new-big.bin"
  echo "session 2 was here" >> "$t/dir1/added.txt"
  mv "$t/dir2/file10.bin" "$t/dir2/renamed10.bin"
  payload tail2 1000 >> "$t/dir3/file11.bin"
  truncate -s 100 "$t/dir4/file12.bin"
}

log "building trees"
make_tree0 tree0
cp -a tree0 tree1 && changes1 tree1
cp -a tree1 tree2 && changes2 tree2

log "ext4 base layer"
truncate -s 256M raw0
mkfs.ext4 -q -b 4096 -d tree0 raw0
"$OVBD" import -q raw0 -o base.lsmt
"$OVBD" import -q --zfile raw0 -o base.zfile

# attach ARGS... -> device path; checks the state the attach process keeps.
attach() {
  local dev
  dev=$("$OVBD" attach "$@") || fail "ovbd attach $* failed"
  [ -b "$dev" ] || fail "attach printed '$dev', not a block device"
  echo "$dev"
}

# One writable session: attach base (+ lowers) with a fresh upper, apply changes, commit.
session() {
  local changes=$1 out=$2 commit_flags=$3; shift 3
  rm -f up.data up.index
  "$OVBD" create --size 256M up.data up.index
  local dev
  dev=$(attach "$@" --upper up.data up.index)
  [ "$(blockdev --getro "$dev")" = 0 ] || fail "$dev should be writable"
  mkdir -p mnt
  mount "$dev" mnt
  $changes mnt
  # Detaching while mounted must fail and change nothing.
  if "$OVBD" detach "$dev" 2>err.txt; then fail "detach of a mounted device succeeded"; fi
  grep -q "in use" err.txt || fail "detach of a mounted device: unclear error: $(cat err.txt)"
  umount mnt
  "$OVBD" detach "$dev"
  losetup "$dev" >/dev/null 2>&1 && fail "$dev still bound after detach"
  ls "$OVBD_RUN_DIR" | grep -q . && fail "run directory not cleaned: $(ls "$OVBD_RUN_DIR")"
  "$OVBD" commit -q $commit_flags up.data up.index "$out"
}

# Mounts a stack read-only and compares it with a tree.
check_stack() {
  local tree=$1; shift
  local dev
  dev=$(attach "$@")
  [ "$(blockdev --getro "$dev")" = 1 ] || fail "$dev should be read-only"
  mkdir -p mnt
  mount -o ro "$dev" mnt
  diff -r --no-dereference mnt "$tree" -x lost+found || fail "stack $* differs from $tree"
  umount mnt
  "$OVBD" detach "$dev"
}

log "session 1: base.lsmt + upper -> layer1.lsmt"
session changes1 layer1.lsmt "" base.lsmt
log "session 2: base.lsmt layer1.lsmt + upper -> layer2.zfile"
session changes2 layer2.zfile "--zfile" base.lsmt layer1.lsmt

log "read-only stacks"
check_stack tree2 base.lsmt layer1.lsmt layer2.zfile
check_stack tree2 base.zfile layer1.lsmt layer2.zfile
check_stack tree1 base.lsmt layer1.lsmt
check_stack tree0 base.zfile

log "--read-only over a writable upper, 4096-byte blocks"
rm -f up.data up.index && "$OVBD" create --size 256M up.data up.index
json=$("$OVBD" attach --json --read-only --block-size 4096 base.lsmt layer1.lsmt --upper up.data up.index)
dev=$(sed -n 's/.*"device":"\([^"]*\)".*/\1/p' <<<"$json")
[ -b "$dev" ] || fail "--json output without a device: $json"
grep -q '"pid":[0-9]' <<<"$json" || fail "--json output without a pid: $json"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "--read-only device is writable"
[ "$(blockdev --getss "$dev")" = 4096 ] || fail "--block-size 4096 not applied"
mount -o ro "$dev" mnt && diff -r --no-dereference mnt tree1 -x lost+found && umount mnt
"$OVBD" detach "$dev"

if command -v mkfs.erofs >/dev/null && grep -qw erofs /proc/filesystems; then
  log "erofs image served from a ZFile"
  mkfs.erofs --quiet erofs.img tree2 >/dev/null
  "$OVBD" zfile compress -q erofs.img erofs.zfile
  dev=$(attach erofs.zfile)
  mount -t erofs -o ro "$dev" mnt
  diff -r --no-dereference mnt tree2 || fail "erofs content differs"
  umount mnt
  "$OVBD" detach "$dev"
else
  echo "note: erofs part not run (no mkfs.erofs or no erofs in /proc/filesystems)"
fi

log "--fuse-only: the file reads back like ovbd cat"
mkdir -p fo
file=$("$OVBD" attach --fuse-only fo base.zfile layer1.lsmt layer2.zfile)
[ "$file" = "$W/fo/image" ] || fail "--fuse-only printed '$file'"
"$OVBD" cat base.zfile layer1.lsmt layer2.zfile > cat.img
cmp "$file" cat.img || fail "FUSE file differs from ovbd cat"
[ "$(stat -c %a "$file")" = 400 ] || fail "read-only FUSE file mode is $(stat -c %a "$file")"
"$OVBD" detach fo
mountpoint -q fo && fail "fo still mounted after detach"

log "foreground mode: SIGTERM detaches"
"$OVBD" attach --foreground base.lsmt > fg.out 2>fg.err &
fg=$!
for _ in $(seq 100); do [ -s fg.out ] && break; sleep 0.1; done
dev=$(head -1 fg.out)
[ -b "$dev" ] || fail "foreground attach printed '$dev' ($(cat fg.err))"
cmp -n 1048576 "$dev" raw0 || fail "foreground device content differs"
kill -TERM $fg
wait $fg || fail "foreground attach exited with $?"
losetup "$dev" >/dev/null 2>&1 && fail "$dev still bound after foreground stop"

log "errors are reported"
if "$OVBD" attach base.lsmt missing.lsmt 2>err.txt; then fail "attach of a missing layer succeeded"; fi
grep -q "missing.lsmt" err.txt || fail "attach error does not name the file: $(cat err.txt)"
head -c 100000 raw0 > junk.bin
if "$OVBD" attach --fuse-only /nonexistent-dir base.lsmt 2>err.txt; then fail "attach at a missing DIR succeeded"; fi
grep -q "nonexistent-dir" err.txt || fail "unclear error: $(cat err.txt)"
truncate -s 4M plain.img
plain=$(losetup -f --show plain.img)
set +e
"$OVBD" detach "$plain" 2>err.txt; rc=$?
set -e
losetup -d "$plain"
[ $rc = 1 ] || fail "detach of a non-ovbd loop device: exit $rc"
grep -q "not an ovbd device" err.txt || fail "unclear error: $(cat err.txt)"
set +e
"$OVBD" detach /dev/ovbd-no-such-device 2>err.txt; rc=$?
set -e
[ $rc = 1 ] || fail "detach of a missing device: exit $rc"
grep -q "no such device" err.txt || fail "unclear error: $(cat err.txt)"
set +e
"$OVBD" detach "$W" 2>err.txt; rc=$?
set -e
[ $rc = 1 ] || fail "detach of an unrelated directory: exit $rc"

log "a killed attach process leaves nothing bound; its state is swept"
json=$("$OVBD" attach --json base.lsmt)
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$json")
dev=$(sed -n 's/.*"device":"\([^"]*\)".*/\1/p' <<<"$json")
kill -KILL "$pid"
for _ in $(seq 50); do losetup "$dev" >/dev/null 2>&1 || break; sleep 0.1; done
losetup "$dev" >/dev/null 2>&1 && fail "$dev still bound after its process was killed"
dev=$(attach base.lsmt)  # sweeps the dead one's directory
[ "$(ls "$OVBD_RUN_DIR" | wc -l)" = 1 ] || fail "stale run directory not swept: $(ls "$OVBD_RUN_DIR")"
"$OVBD" detach "$dev"

echo "PASS"
