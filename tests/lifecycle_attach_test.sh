#!/bin/bash
# The online lifecycle operations of an attached image (docs/lifecycle.md) under a mounted ext4:
# `ovbd attach --config`, files written, `ovbd ctl /dev/loopN snapshot` twice (the file system
# frozen with fsfreeze for each, so that each checkpoint is a clean file system, checked with
# e2fsck and diff -r through its own read-only attach), a merge of the lowers while files are
# written, `ovbd ctl /dev/loopN resize` with the loop device growing at once and resize2fs growing
# the mounted file system (df shows it), a file that needs the new space, then umount, detach,
# `e2fsck -fn` of `ovbd cat --config`, and `diff -r` of the image attached again read-only
# against the same changes made in a plain directory.
#
# Online resize2fs needs CAP_SYS_RESOURCE (the ext4 resize ioctl checks it); without it (some
# containers) the file system is grown offline instead (umount, e2fsck -fn, resize2fs, mount) and
# a note says so; the loop device must still take the new size at once. OVBD_REQUIRE_ONLINE_RESIZE=1
# makes that a failure instead: the ctest `lifecycle_attach_guest` runs this script in a qemu guest
# (tests/guest/run.sh), where it is root with every capability, so resize2fs grows the mounted
# file system online.
#
# Needs root, /dev/fuse and a free loop device (skips with 77 otherwise).
# usage: lifecycle_attach_test.sh /path/to/ovbd
set -euo pipefail

OVBD=$(realpath "$1")
PY=/usr/bin/python3
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (FUSE mount, loop devices, mount)"
{ exec 3<>/dev/fuse; } 2>/dev/null || skip "/dev/fuse cannot be opened"
exec 3>&-
[ -c /dev/loop-control ] || skip "no /dev/loop-control"
losetup -f >/dev/null 2>&1 || skip "no free loop device"
for tool in mkfs.ext4 e2fsck resize2fs fsfreeze mount umount diff cmp losetup blockdev df; do
  command -v $tool >/dev/null || skip "$tool is not installed"
done
[ -x "$PY" ] || skip "$PY is not installed"

W=$(mktemp -d /tmp/ovbd-lifecycle-attach.XXXXXX)
export OVBD_RUN_DIR=$W/run
log() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  set +e
  fsfreeze -u "$W/mnt" 2>/dev/null
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
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"

MiB=1048576
# Deterministic pseudo-random content: "payload SEED SIZE".
payload() { head -c "$2" <(openssl enc -aes-128-ctr -pass pass:"$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null); }
command -v openssl >/dev/null || payload() { head -c "$2" /dev/urandom; }
# jget FILE EXPR: the Python expression EXPR over the JSON in FILE (as `j`).
jget() { "$PY" -c "import json, sys; j = json.load(open(sys.argv[1])); print($2)" "$1"; }
fs_kib() { df -k --output=size "$1" | tail -1 | tr -d ' '; }  # the file system's size, KiB
ctl() { "$OVBD" ctl "$DEV" "$@" > ctl.json || { cat ctl.json; fail "ovbd ctl $DEV $*"; }; }

# ---- the changes, applied to the mounted image and to a plain directory alike -------------------
make_tree0() {
  local t=$1 i
  for d in 0 1 2 3; do mkdir -p "$t/dir$d/sub"; done
  for i in $(seq 0 79); do
    local size=$(( (i * 7919) % 40000 ))
    (( i % 20 == 0 )) && size=$(( 700000 + i * 1000 ))
    (( i % 17 == 0 )) && size=0
    payload "f$i" $size > "$t/dir$(( i % 4 ))/file$i.bin"
  done
  for i in $(seq 0 9); do echo "text $i" > "$t/dir$(( i % 4 ))/sub/note$i.txt"; done
  ln -s ../dir1/file1.bin "$t/dir0/link-to-file1"
}
changes1() {  # before the first snapshot
  local t=$1
  payload one 3000000 > "$t/dir0/one.bin"
  payload mod1 4096 | dd of="$t/dir2/file2.bin" bs=4096 seek=1 conv=notrunc status=none
  rm -f "$t/dir3/file3.bin"
  mkdir -p "$t/new1"
  echo "session 1" > "$t/new1/a.txt"
}
changes2() {  # between the snapshots
  local t=$1
  payload two 2000000 > "$t/dir0/one.bin"
  mv "$t/dir1/file5.bin" "$t/dir1/renamed5.bin"
  payload tail2 1000 >> "$t/dir2/file6.bin"
  rm -rf "$t/dir3/sub"
  ln -s ../new1/a.txt "$t/dir2/link-a"
}
changes3() {  # while the merge runs
  local t=$1 i
  mkdir -p "$t/during-merge"
  for i in $(seq 0 19); do payload "m$i" $(( 20000 + i * 3000 )) > "$t/during-merge/m$i.bin"; done
  truncate -s 100 "$t/dir0/file4.bin"
}
changes4() {  # after the resize: one file larger than the file system was before
  local t=$1
  payload big 110000000 > "$t/big-after-resize.bin"
  echo "after resize" > "$t/new1/b.txt"
  rm -f "$t/dir1/file9.bin"
}

log "base layer: ext4 (-b 4096) of 96 MiB imported"
make_tree0 expect
truncate -s 96M raw0
mkfs.ext4 -q -b 4096 -d expect raw0
mkdir -p img mnt chk
"$OVBD" import -q raw0 -o img/base.lsmt
"$OVBD" create --size 96M img/up.data img/up.index > /dev/null
echo '{"lowers": [{"file": "base.lsmt"}], "upper": {"data": "up.data", "index": "up.index"}}' > img/config.v1.json

log "attach --config, mount, write"
"$OVBD" attach --config img/config.v1.json --json > attach.json || fail "ovbd attach --config failed"
DEV=$(jget attach.json "j['device']")
[ -b "$DEV" ] || fail "attach printed '$DEV', not a block device"
[ "$(blockdev --getro "$DEV")" = 0 ] || fail "$DEV should be writable"
mount "$DEV" mnt
changes1 mnt; changes1 expect

# snapshot NAME: a checkpoint of the frozen file system; prints the sealed layer's path.
snapshot() {
  sync -f mnt
  fsfreeze -f mnt
  "$OVBD" ctl "$DEV" snapshot --name "$1" > ctl.json || { fsfreeze -u mnt; cat ctl.json; fail "snapshot $1"; }
  fsfreeze -u mnt
  [ "$(jget ctl.json "j['checkpoint']['name']")" = "$1" ] || fail "snapshot $1: $(cat ctl.json)"
}
# check_checkpoint TREE LAYER...: the stack of LAYERs is a clean ext4 holding TREE.
check_checkpoint() {
  local tree=$1; shift
  "$OVBD" cat -q -o chk.img "$@"
  e2fsck -fn chk.img > e2fsck.log 2>&1 || { cat e2fsck.log; fail "checkpoint $*: e2fsck -fn found errors"; }
  local dev
  dev=$("$OVBD" attach --read-only "$@") || fail "attach --read-only $*"
  mount -o ro "$dev" chk
  diff -r --no-dereference chk "$tree" -x lost+found || fail "checkpoint $* differs from $tree"
  umount chk
  "$OVBD" detach "$dev"
  rm -f chk.img
}

log "snapshot 1 through $DEV"
snapshot s1
S1=$(jget ctl.json "j['layer']['path']")
[ "$(jget img/config.v1.json "[l.get('checkpoint', {}).get('name') for l in j['lowers']]")" = "[None, 's1']" ] ||
  fail "manifest after s1: $(cat img/config.v1.json)"
cp -a expect tree1
check_checkpoint tree1 img/base.lsmt "$S1"

log "more writes, snapshot 2"
changes2 mnt; changes2 expect
snapshot s2
S2=$(jget ctl.json "j['layer']['path']")
cp -a expect tree2
check_checkpoint tree2 img/base.lsmt "$S1" "$S2"

log "merge of lowers 0..s2 while files are written"
"$OVBD" ctl "$DEV" merge --from 0 --to s2 --background > ctl.json || { cat ctl.json; fail "merge --background"; }
changes3 mnt; changes3 expect
"$OVBD" ctl "$DEV" job --wait > ctl.json || { cat ctl.json; fail "the merge failed"; }
[ "$(jget ctl.json "j['dropped_checkpoints'], j['checkpoint']")" = "['s1'] s2" ] || fail "merge result: $(cat ctl.json)"
for f in img/base.lsmt "$S1" "$S2"; do [ ! -e "$f" ] || fail "the merge left $f"; done
[ "$(jget img/config.v1.json "len(j['lowers']), j['lowers'][0]['checkpoint']['name']")" = "1 s2" ] ||
  fail "manifest after the merge: $(cat img/config.v1.json)"
cmp -s mnt/during-merge/m7.bin expect/during-merge/m7.bin || fail "a file written during the merge reads back wrong"

log "resize to 192 MiB through $DEV, then resize2fs"
before=$(fs_kib mnt)
ctl resize 192M
[ "$(jget ctl.json "j['old_size'], j['size']")" = "$((96 * MiB)) $((192 * MiB))" ] || fail "resize reply: $(cat ctl.json)"
[ "$(blockdev --getsize64 "$DEV")" = $((192 * MiB)) ] || fail "$DEV has $(blockdev --getsize64 "$DEV") bytes after the resize"
mountpoint -q mnt || fail "the file system is no longer mounted after the resize"
if grep -q '^CapEff:' /proc/self/status &&
   (( (0x$(awk '/^CapEff:/ {print $2}' /proc/self/status) >> 24) & 1 )); then
  resize2fs "$DEV" > resize2fs.log 2>&1 || { cat resize2fs.log; fail "online resize2fs $DEV"; }
  grep -q "on-line resizing required" resize2fs.log || { cat resize2fs.log; fail "resize2fs did not resize online"; }
  mode=online
elif [ "${OVBD_REQUIRE_ONLINE_RESIZE:-0}" = 1 ]; then
  fail "OVBD_REQUIRE_ONLINE_RESIZE=1, but this process lacks CAP_SYS_RESOURCE, which online resize2fs needs"
else
  echo "note: no CAP_SYS_RESOURCE, so the kernel refuses online ext4 resizing; growing offline"
  umount mnt
  e2fsck -fn "$DEV" > e2fsck.log 2>&1 || { cat e2fsck.log; fail "e2fsck -fn before the offline resize"; }
  e2fsck -fp "$DEV" > /dev/null  # clean (just checked); records the check that resize2fs asks for
  resize2fs "$DEV" > resize2fs.log 2>&1 || { cat resize2fs.log; fail "resize2fs $DEV"; }
  mount "$DEV" mnt
  mode=offline
fi
after=$(fs_kib mnt)
(( after > before * 19 / 10 )) || fail "df: the file system has $after KiB after the resize, $before before"
echo "   $mode resize2fs: $before KiB -> $after KiB"

log "files that need the new space"
changes4 mnt; changes4 expect
sync -f mnt
"$OVBD" ctl "$DEV" status > status.json
[ "$(jget status.json "j['lifecycle']['snapshots'], j['lifecycle']['unfinished'], j['io']['errors']")" = "2 None 0" ] ||
  fail "status: $(cat status.json)"

log "umount, detach"
umount mnt
"$OVBD" detach "$DEV"
losetup "$DEV" >/dev/null 2>&1 && fail "$DEV still bound after detach"
[ -z "$(ls "$OVBD_RUN_DIR")" ] || fail "run directory not cleaned: $(ls "$OVBD_RUN_DIR")"

log "the manifest: no pending snapshot, no leftover, e2fsck -fn clean"
grep -q ovbdPendingSnapshot img/config.v1.json && fail "ovbdPendingSnapshot left: $(cat img/config.v1.json)"
"$PY" - img <<'EOF' || fail "a file of img/ is not named by its manifest"
import json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "config.v1.json")))
named = {os.path.basename(l["file"]) for l in m["lowers"]} | {os.path.basename(m["upper"][k]) for k in ("data", "index")}
extra = [n for n in os.listdir(d) if n.startswith("ovbd-") and n not in named]
assert not extra, extra
EOF
"$OVBD" cat -q --config img/config.v1.json -o final.img
[ "$(stat -c %s final.img)" = $((192 * MiB)) ] || fail "ovbd cat --config: $(stat -c %s final.img) bytes"
e2fsck -fn final.img > e2fsck.log 2>&1 || { cat e2fsck.log; fail "e2fsck -fn of the final image found errors"; }
rm -f final.img

log "attach --config --read-only again, diff -r with the expected tree"
DEV=$("$OVBD" attach --config img/config.v1.json --read-only) || fail "attach --read-only --config"
[ "$(blockdev --getro "$DEV")" = 1 ] || fail "$DEV should be read-only"
[ "$(blockdev --getsize64 "$DEV")" = $((192 * MiB)) ] || fail "the reattached device has $(blockdev --getsize64 "$DEV") bytes"
mount -o ro "$DEV" mnt
diff -r --no-dereference mnt expect -x lost+found || fail "the image differs from the expected tree"
(( $(fs_kib mnt) == after )) || fail "df after the reattach: $(fs_kib mnt) KiB, $after before"
umount mnt
"$OVBD" detach "$DEV"

echo "PASS"
