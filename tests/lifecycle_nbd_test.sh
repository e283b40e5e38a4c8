#!/usr/bin/env bash
# The online lifecycle operations of `ovbd serve --config` (docs/lifecycle.md) with real NBD
# clients, in four parts:
#   a. under load: two libnbd clients (tests/tools/lifecycle_client.py) write seeded aligned and
#      unaligned data, with FUA and flushes, into disjoint halves while the script takes three
#      snapshots, merges two of them into a ZFile, and replaces two lowers with their ZFile form;
#      the clients read back as they go. Afterwards nbdcopy of the export equals the clients'
#      flat model, and again after SIGTERM and a restart from the manifest, and `ovbd cat --config`.
#   b. bad requests (unknown layer, reversed/single/past-the-top merge, a merge while a job runs,
#      shrink over data, replace with other content or size or a non-layer, a taken or invalid
#      snapshot name, a read-only image, an image served from LAYER arguments): each exits 1
#      with a clear error and leaves config.v1.json byte-identical, no new file, and the device
#      content unchanged.
#   c. resize: grow online; a new connection (nbdinfo --size) sees the new size, a connection
#      made before keeps the old one; data past the old end; shrinking over it refused, above it
#      allowed; the size survives a restart.
#   d. crash loop: kill -9 of the server at a random instant of a snapshot, merge or replace
#      while a client writes and flushes; after each kill the server restarts from the manifest
#      and must open with every write the client saw made durable (FUA, or acknowledged before an
#      acknowledged flush) present, no ovbdPendingSnapshot in the manifest and no ovbd-* file the
#      manifest does not name. OVBD_CRASH_LOOPS rounds (default 20, the ctest setting, about a
#      minute on 2 cores; run 200 outside CI: OVBD_CRASH_LOOPS=200 ctest -R lifecycle_nbd).
#
# usage: lifecycle_nbd_test.sh OVBD_BINARY
# Exit: 0 all passed, 1 a failure, 77 skipped (a client is not installed; the reason is printed).
set -u

OVBD=${1:?usage: lifecycle_nbd_test.sh OVBD}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT="$HERE/tools/lifecycle_client.py"
LOOPS=${OVBD_CRASH_LOOPS:-20}
export PATH="/usr/bin:$PATH"  # nbdsh and the client need Debian's python3 with python3-libnbd

for tool in nbdinfo nbdcopy nbdsh cmp sha256sum; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"; exit 77; }
done
"$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
OVBD=$(readlink -f "$OVBD")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-lifecycle.XXXXXX")
SERVER_PID=""
HELPERS=()
cleanup() {
  for p in "${HELPERS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

. "$HERE/harness.sh"

MiB=1048576
SIZE=$((64 * MiB))

# ---- helpers -------------------------------------------------------------------------------------
# ctl ARGS...: `ovbd ctl $CTL ARGS`, the reply in $T/ctl.json and stderr in $T/ctl.err.
ctl() { "$OVBD" ctl "$CTL" "$@" > "$T/ctl.json" 2> "$T/ctl.err"; }
# ctl_ok WHAT ARGS...: a PASS if the request succeeds.
ctl_ok() {
  local what=$1; shift
  if ctl "$@"; then ok "$what"; else bad "$what: ovbd ctl $*"; cat "$T/ctl.json" "$T/ctl.err" | sed 's/^/    /'; fi
}
# jget FILE EXPR: prints the Python expression EXPR over the JSON of FILE (as `j`).
jget() { "$PY" -c "import json, sys; j = json.load(open(sys.argv[1])); print($2)" "$1"; }
# device_sum: sha256 of the whole export, through nbdcopy.
device_sum() { nbdcopy "$URI" - | sha256sum | cut -d' ' -f1; }
# named_files DIR: the files DIR/config.v1.json names (lowers, upper, pending upper), one a line.
named_files() {
  "$PY" - "$1" <<'EOF'
import json, os, sys
d = os.path.realpath(sys.argv[1])
m = json.load(open(os.path.join(d, "config.v1.json")))
names = [l["file"] for l in m.get("lowers", [])]
for u in (m.get("upper"), (m.get("ovbdPendingSnapshot") or {}).get("upper")):
    if u:
        names += [u["data"], u["index"]]
for n in names:
    print(os.path.normpath(os.path.join(d, n)))
EOF
}
# leftovers DIR: the ovbd-* files of DIR that its manifest does not name (none is right).
leftovers() {
  local named
  named=$(named_files "$1")
  for f in "$1"/ovbd-*; do
    [ -e "$f" ] || continue
    grep -qxF "$(readlink -f "$f")" <<<"$named" || basename "$f"
  done
}
# no_leftovers DIR: succeeds if leftovers DIR prints nothing, else says which.
no_leftovers() {
  local l
  l=$(leftovers "$1")
  [ -z "$l" ] || { echo "not named by the manifest: $l"; ls -la "$1"; return 1; }
}
# lower_path MANIFEST N: the path of the manifest's lowers[N], absolute.
lower_path() {
  "$PY" -c "import json, os, sys; m = json.load(open(sys.argv[1])); print(os.path.normpath(os.path.join(os.path.dirname(sys.argv[1]), m['lowers'][int(sys.argv[2])]['file'])))" "$1" "$2"
}
# kill9: kill -9 of the server and reap it.
kill9() {
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}
# refused WHAT PATTERN ARGS...: `ovbd ctl ARGS` must exit 1 with PATTERN (grep -E) in its error,
# leave config.v1.json byte-identical to config.before, create or remove no file, and keep the
# device content ($SUM).
refused() {
  local what=$1 pattern=$2; shift 2
  ls "$IMG" > "$T/ls.before"
  local rc=0
  ctl "$@" || rc=$?
  local why=""
  [ "$rc" = 1 ] || why="exit $rc, expected 1"
  [ -z "$why" ] && ! grep -Eq "$pattern" "$T/ctl.err" && why="the error does not say /$pattern/"
  [ -z "$why" ] && ! grep -q '"ok": false' "$T/ctl.json" && why="the reply does not say ok: false"
  [ -z "$why" ] && ! cmp -s "$IMG/config.v1.json" "$T/config.before" && why="config.v1.json changed"
  [ -z "$why" ] && ! ls "$IMG" | cmp -s - "$T/ls.before" && why="files changed: $(ls "$IMG" | diff "$T/ls.before" - | tr '\n' ' ')"
  [ -z "$why" ] && [ "$(device_sum)" != "$SUM" ] && why="the device content changed"
  if [ -z "$why" ]; then ok "$what: refused: $(jget "$T/ctl.json" "j['error']" | cut -c1-120)"
  else bad "$what: $why"; cat "$T/ctl.json" "$T/ctl.err" | sed 's/^/    /'; fi
}
# Deterministic pseudo-random bytes: payload SEED SIZE.
payload() { "$PY" -c "import random, sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(int(sys.argv[2])))" "$1" "$2"; }

# ---- the image: a 32 MiB base layer of data in a 64 MiB image ------------------------------------
IMG="$T/img"
mkdir -p "$IMG"
payload 7 $((32 * MiB)) > "$T/base.raw"
"$OVBD" import -q "$T/base.raw" -o "$IMG/base.lsmt"
"$OVBD" create --size $SIZE "$IMG/up.data" "$IMG/up.index" > /dev/null
echo '{"lowers": [{"file": "base.lsmt"}], "upper": {"data": "up.data", "index": "up.index"}}' > "$IMG/config.v1.json"
"$OVBD" zfile compress -q "$IMG/base.lsmt" "$IMG/base.zfile"
"$OVBD" cat -q --config "$IMG/config.v1.json" -o "$T/model"
check "setup: the model is the 64 MiB image" test "$(stat -c %s "$T/model")" = $SIZE

# ---- a. snapshot, merge and replace under load ---------------------------------------------------
start main --config "$IMG/config.v1.json" || exit 1
rm -f "$T/stop"
"$PY" "$CLIENT" write "$URI" "$T/model" --seed 1 --region 0:$((SIZE / 2)) --stop-file "$T/stop" \
  --ready-file "$T/ready1" --pause-ms 0.3 > "$T/w1.out" 2> "$T/w1.err" &
W1=$!
"$PY" "$CLIENT" write "$URI" "$T/model" --seed 2 --region $((SIZE / 2)):$SIZE --stop-file "$T/stop" \
  --ready-file "$T/ready2" --pause-ms 0.3 > "$T/w2.out" 2> "$T/w2.err" &
W2=$!
HELPERS=("$W1" "$W2")
for _ in $(seq 1 200); do [ -e "$T/ready1" ] && [ -e "$T/ready2" ] && break; sleep 0.05; done
check "load: both clients are writing" test -e "$T/ready1" -a -e "$T/ready2"

ctl_ok "load: snapshot s1" snapshot --name s1
check "load: s1 is lowers[1], the old upper up.data" test "$(jget "$T/ctl.json" "j['layer']['index'], j['checkpoint']['name']")" = "1 s1"
sleep 0.4
ctl_ok "load: snapshot s2" snapshot --name s2
S2_FILE=$(jget "$T/ctl.json" "j['layer']['path']")
sleep 0.4
ctl_ok "load: merge --from s1 --to s2 --zfile --background starts" merge --from s1 --to s2 --zfile --background
ctl_ok "load: ctl job --wait: the merge is done" job --wait
check "load: the merge dropped checkpoint s1, kept s2, removed the merged files" "$PY" - "$T/ctl.json" "$IMG/up.data" "$S2_FILE" <<'EOF'
import json, os, sys
j = json.load(open(sys.argv[1]))  # job --wait prints the job's result
assert j["merged"] == {"from": 1, "to": 2}, j
assert j["checkpoint"] == "s2" and j["dropped_checkpoints"] == ["s1"], j
assert j["layer"]["path"].endswith(".zfile") and "ovbd-merged-" in j["layer"]["path"], j
for f in sys.argv[2:]:
    assert not os.path.exists(f), f"{f} still exists"
EOF
sleep 0.3
ctl_ok "load: snapshot s3" snapshot --name s3
S3_FILE=$(jget "$T/ctl.json" "j['layer']['path']")
"$OVBD" zfile compress -q "$S3_FILE" "$IMG/s3.zfile"
ctl_ok "load: replace lowers[0] (base.lsmt) with its ZFile form" replace 0 "$IMG/base.zfile"
check "load: ... compared all 32 MiB" test "$(jget "$T/ctl.json" "j['bytes_compared']")" = $((32 * MiB))
ctl_ok "load: replace s3 (a sealed upper) with its ZFile form" replace s3 "$IMG/s3.zfile"
sleep 0.3
touch "$T/stop"
check "load: client 1 saw no error and no wrong read" wait "$W1"
check "load: client 2 saw no error and no wrong read" wait "$W2"
HELPERS=()
cat "$T/w1.err" "$T/w2.err"
echo "    clients: $(cat "$T/w1.out") $(cat "$T/w2.out")"
check "load: the manifest names base.zfile, the merged ZFile (s2) and s3.zfile (s3)" "$PY" - "$IMG/config.v1.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
files = [l["file"] for l in m["lowers"]]
names = [(l.get("checkpoint") or {}).get("name") for l in m["lowers"]]
assert len(files) == 3 and files[0].endswith("base.zfile") and "ovbd-merged-" in files[1] and files[2].endswith("s3.zfile"), files
assert names == [None, "s2", "s3"], names
assert "ovbdPendingSnapshot" not in m
EOF
check "load: status: 3 snapshots, nothing unfinished, no I/O error" bash -c "
  '$OVBD' ctl '$CTL' status > '$T/status.json' && '$PY' -c \"
import json; s = json.load(open('$T/status.json'))
assert s['lifecycle']['snapshots'] == 3 and s['lifecycle']['unfinished'] is None, s['lifecycle']
assert s['io']['errors'] == 0 and len(s['layers']) == 3, s\""
# Replace removes the old file when ovbd made it (docs/lifecycle.md): s3's sealed upper is gone.
check "load: replace removed s3's old file (ovbd made it)" test ! -e "$S3_FILE"
check "load: every ovbd-* file is named by the manifest" test -z "$(leftovers "$IMG")"
nbdcopy "$URI" "$T/got"
check "load: nbdcopy of the export equals the clients' model" cmp "$T/got" "$T/model"
check "load: nbdsh reads the last 4 KiB of each half as the model" nbdsh -u "$URI" -c "
m = open('$T/model', 'rb').read()
for off in ($((SIZE / 2 - 4096)), $((SIZE - 4096))):
    assert h.pread(4096, off) == m[off:off + 4096], off"
check "load: SIGTERM exits 0" stop
start main --config "$IMG/config.v1.json" || exit 1
check "load: the restart found nothing to repair and printed nothing" test ! -s "$T/main.err"
check "load: no leftover ovbd-* file after the restart" no_leftovers "$IMG"
nbdcopy "$URI" "$T/got"
check "load: after a restart from the manifest nbdcopy equals the model" cmp "$T/got" "$T/model"
check "load: ovbd cat --config equals the model" bash -c "'$OVBD' cat -q --config '$IMG/config.v1.json' | cmp - '$T/model'"

# ---- b. bad requests change nothing --------------------------------------------------------------
cp "$IMG/config.v1.json" "$T/config.before"
SUM=$(device_sum)
check "bad: the device still equals the model" test "$SUM" = "$(sha256sum < "$T/model" | cut -d' ' -f1)"
refused "bad: merge of an unknown layer name" "no layer 'nosuch'" merge --from 0 --to nosuch
refused "bad: replace of an unknown layer index" "no layer '7'" replace 7 "$IMG/base.zfile"
refused "bad: merge past the top lower (3 = the upper)" "no layer '3'" merge --from 1 --to 3
refused "bad: reversed merge" "must be below" merge --from s3 --to 1
refused "bad: merge of one layer" "must be below" merge --from 1 --to 1
refused "bad: negative layer index" "no layer '-1'" merge --from -1 --to 1
# A second job while one runs: a replace whose file differs only in its last byte (the check reads
# all 32 MiB first), then at once a merge of layers it covers; the merge is refused, the replace fails.
cp "$T/base.raw" "$T/late.raw"
printf 'X' | dd of="$T/late.raw" bs=1 seek=$((32 * MiB - 1)) conv=notrunc status=none
"$OVBD" import -q "$T/late.raw" -o "$T/late.lsmt"
ls "$IMG" > "$T/ls.before"
check "bad: a merge while a replace runs: refused, one job at a time" "$PY" - "$CTL" "$T/late.lsmt" <<'EOF'
import json, socket, sys
def call(path, request):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps(request) + "\n").encode())
    reply = b""
    while b"\n" not in reply:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    return json.loads(reply)
ctl, late = sys.argv[1:3]
first = call(ctl, {"command": "replace", "layer": "0", "file": late, "wait": False})
second = call(ctl, {"command": "merge", "from": "0", "to": "1", "keep": False, "wait": True})
assert first["ok"] and first["state"] == "running", first
assert not second["ok"] and "one job at a time" in second["error"], second
print(second["error"])
EOF
check "bad: ... the replace then fails naming the last byte" bash -c "
  ! '$OVBD' ctl '$CTL' job --wait > '$T/job.json' 2>&1 && grep -q 'differs at byte $((32 * MiB - 1))' '$T/job.json'"
check "bad: ... config.v1.json unchanged, no file added" bash -c "cmp '$IMG/config.v1.json' '$T/config.before' && ls '$IMG' | cmp - '$T/ls.before'"
check "bad: ... device unchanged" test "$(device_sum)" = "$SUM"
cp "$T/base.raw" "$T/other.raw"
printf 'Y' | dd of="$T/other.raw" bs=1 seek=12345678 conv=notrunc status=none
"$OVBD" import -q "$T/other.raw" -o "$T/other.lsmt"
refused "bad: replace with other content names the first differing byte" "content differs at byte 12345678" \
  replace 0 "$T/other.lsmt"
head -c $((16 * MiB)) "$T/base.raw" > "$T/short.raw"
"$OVBD" import -q "$T/short.raw" -o "$T/short.lsmt"
refused "bad: replace with a layer of another virtual size" "virtual size" replace 0 "$T/short.lsmt"
refused "bad: replace with a file that is not a layer" "not an LSMT layer" replace 0 "$T/base.raw"
refused "bad: shrink below data" "cannot shrink to 1048576 bytes: data lies at" resize 1M
refused "bad: snapshot with a taken name" "checkpoint 's2' exists" snapshot --name s2
refused "bad: snapshot with an invalid name" "name" snapshot --name "a/b"
check "bad: the image still serves and writes after the refusals" nbdsh -u "$URI" -c "
h.pwrite(b'after-refusals', 4096 * 100 + 7, nbd.CMD_FLAG_FUA)
assert h.pread(14, 4096 * 100 + 7) == b'after-refusals'"
printf 'after-refusals' | dd of="$T/model" bs=1 seek=$((4096 * 100 + 7)) conv=notrunc status=none
check "bad: stop" stop

# The same manifest served --read-only: no snapshot, no resize.
start ro --config "$IMG/config.v1.json" --read-only || exit 1
SUM=$(device_sum)
cp "$IMG/config.v1.json" "$T/config.before"
refused "bad: snapshot of a read-only image" "read-only" snapshot --name ro1
refused "bad: resize of a read-only image" "read-only" resize 128M
check "bad: stop the read-only server" stop

# An image served from LAYER arguments has no manifest: every stack operation needs --config.
"$OVBD" create --size $SIZE "$IMG/args.data" "$IMG/args.index" > /dev/null
start args "$IMG/base.lsmt" --upper "$IMG/args.data" "$IMG/args.index" || exit 1
cp "$IMG/args.data" "$T/args.data.before"
cp "$IMG/args.index" "$T/args.index.before"
SUM=$(device_sum)
refused "bad: snapshot of an image served from LAYER arguments" "needs a manifest.*--config" snapshot
refused "bad: merge of an image served from LAYER arguments" "needs a manifest.*--config" merge --from 0 --to 0
refused "bad: replace on an image served from LAYER arguments" "needs a manifest.*--config" replace 0 "$IMG/base.zfile"
refused "bad: resize of an image served from LAYER arguments" "needs a manifest.*--config" resize 128M
check "bad: stop the LAYER-arguments server" stop
check "bad: its upper files are unchanged" bash -c "cmp '$IMG/args.data' '$T/args.data.before' && cmp '$IMG/args.index' '$T/args.index.before'"
rm -f "$IMG/args.data" "$IMG/args.index"

# ---- c. resize -----------------------------------------------------------------------------------
start main --config "$IMG/config.v1.json" || exit 1
cat > "$T/resize.py" <<EOF
import json, subprocess, nbd
old = nbd.NBD()
old.connect_uri("$URI")
assert old.get_size() == $SIZE, old.get_size()
r = json.loads(subprocess.run(["$OVBD", "ctl", "$CTL", "resize", "96M"], check=True, capture_output=True).stdout)
assert r["old_size"] == $SIZE and r["size"] == $((96 * MiB)), r
assert old.get_size() == $SIZE, "a connection made before the resize sees the new size"
assert old.pread(4096, $((SIZE - 4096))) == open("$T/model", "rb").read()[$((SIZE - 4096)):]
new = nbd.NBD()
new.connect_uri("$URI")
assert new.get_size() == $((96 * MiB)), new.get_size()
assert new.pread(4096, $((96 * MiB - 4096))) == bytes(4096), "the grown part does not read as zeros"
new.pwrite(b"past the old end" * 256, $((90 * MiB)), nbd.CMD_FLAG_FUA)
assert new.pread(4096, $((90 * MiB))) == b"past the old end" * 256
EOF
check "resize: grow to 96M; the connection made before keeps 64M, a new one sees 96M and writes past 64M" \
  "$PY" "$T/resize.py"
check "resize: nbdinfo --size of a new connection shows 96M" test "$(nbdinfo --size "$URI")" = $((96 * MiB))
check "resize: status device.size is the new size" bash -c "'$OVBD' ctl '$CTL' status | '$PY' -c 'import json, sys; assert json.load(sys.stdin)[\"device\"][\"size\"] == $((96 * MiB))'"
truncate -s $((96 * MiB)) "$T/model"
"$PY" -c "
import os; fd = os.open('$T/model', os.O_RDWR); os.pwrite(fd, b'past the old end' * 256, $((90 * MiB)))"
cp "$IMG/config.v1.json" "$T/config.before"
SUM=$(device_sum)
refused "resize: shrinking to 64M over the data at 90M is refused, naming it" "data lies at $((90 * MiB))" resize 64M
ctl_ok "resize: grow to 128M" resize 128M
ctl_ok "resize: shrink back to 92M (no data past it)" resize 92M
check "resize: nbdinfo --size shows 92M" test "$(nbdinfo --size "$URI")" = $((92 * MiB))
truncate -s $((92 * MiB)) "$T/model"
check "resize: stop" stop
start main --config "$IMG/config.v1.json" || exit 1
check "resize: the size survives a restart" test "$(nbdinfo --size "$URI")" = $((92 * MiB))
nbdcopy "$URI" "$T/got"
check "resize: the content after the restart equals the model" cmp "$T/got" "$T/model"
check "resize: stop" stop

# ---- d. crash loop: kill -9 during snapshot, merge and replace ----------------------------------
# A fresh image with the same base; one client writes (4 KiB and unaligned, FUA, a flush every 8
# writes) while an operation runs and the server is killed after a random delay. The delays
# spread over each operation's usual duration on a 2-core machine, so that kills land before,
# inside and after its steps (the crash table of docs/lifecycle.md).
C="$T/crash"
mkdir -p "$C"
cp "$IMG/base.lsmt" "$C/base.lsmt"
"$OVBD" create --size $SIZE "$C/up.data" "$C/up.index" > /dev/null
echo '{"lowers": [{"file": "base.lsmt"}], "upper": {"data": "up.data", "index": "up.index"}}' > "$C/config.v1.json"
"$OVBD" cat -q --config "$C/config.v1.json" -o "$T/cmodel"
rm -f "$T/cstate"
# What crashes leave, planted: a merge's temporary output (merge step 1), a merged file never named
# (step 2), a snapshot's new upper never named (step 1); and files a writable open must not touch.
planted=(ovbd-merged-20260101T000000Z-0123abcd.lsmt.ovbd-tmp ovbd-merged-20260101T000000Z-4567cdef.zfile.ovbd-tmp
         ovbd-merged-20260101T000000Z-89abcdef.lsmt ovbd-upper-20260101T000000Z-fedcba98.data
         ovbd-upper-20260101T000000Z-fedcba98.index)
kept=(ovbd-notes.txt my-layer.lsmt.ovbd-tmp ovbd-merged-by-hand.lsmt)
for f in "${planted[@]}" "${kept[@]}"; do echo junk > "$C/$f"; done
start crash --config "$C/config.v1.json" || exit 1
for f in "${planted[@]}"; do
  check "crash: a writable open removes the leftover $f, saying so" bash -c "
    test ! -e '$C/$f' && grep -q 'removed $C/$f, left by an interrupted operation' '$T/crash.err'"
done
check "crash: ... and leaves files without ovbd's name pattern alone" bash -c "cd '$C' && ls ${kept[*]} > /dev/null"
rm -f "${kept[@]/#/$C/}" "${planted[@]/#/$C/}"  # what a failed check above left, so that the loop starts clean
declare -A OPS=() INTERRUPTED=() AIMED=() TRIES=()
declare -A DUR_MS=([snapshot]=20 [merge]=200 [replace]=100)  # first guesses, then measured
crash_fail=0
FINISHED=0  # restarts that finished an interrupted snapshot
REMOVED=0   # leftover files removed by the restarts
t0=$SECONDS
RANDOM=$$  # a different schedule each run; the seed is printed for a rerun
echo "crash loop: $LOOPS rounds, RANDOM seed $$"
for round in $(seq 1 "$LOOPS"); do
  nlowers=$(jget "$C/config.v1.json" "len(j['lowers'])")
  case $((round % 4)) in
    0) op=merge ;;
    1|3) op=snapshot ;;
    2) op=replace ;;
  esac
  [ "$op" = merge ] && [ "$nlowers" -lt 2 ] && op=snapshot
  args=()
  case $op in
    snapshot) args=(snapshot --name "r$round") ;;
    merge)
      args=(merge --from 0 --to $((nlowers - 1)))
      (( round % 2 )) && args+=(--zfile) ;;
    replace)
      l0=$(lower_path "$C/config.v1.json" 0)
      case $l0 in
        *.zfile) "$OVBD" zfile decompress -q "$l0" "$C/repl-$round.lsmt"; args=(replace 0 "$C/repl-$round.lsmt") ;;
        *) "$OVBD" zfile compress -q "$l0" "$C/repl-$round.zfile"; args=(replace 0 "$C/repl-$round.zfile") ;;
      esac ;;
  esac
  OPS[$op]=$(( ${OPS[$op]:-0} + 1 ))
  rm -f "$T/cready"
  "$PY" "$CLIENT" write "$URI" "$T/cmodel" --seed $((1000 + round)) --crash --state "$T/cstate" \
    --ready-file "$T/cready" --pause-ms 0.5 > "$T/cw.out" 2> "$T/cw.err" &
  cw=$!
  HELPERS=("$cw")
  for _ in $(seq 1 200); do [ -e "$T/cready" ] && break; sleep 0.02; done
  # Half of the kills are timed: a random instant within 1.5 times the operation's last full
  # duration (about two in three land inside it, the others just after its reply). The other
  # half of the snapshot and merge kills are aimed: a watcher kills a random 0..N ms after the
  # step it waits for shows in the directory (the intent saved; the merge output being written;
  # the merged file renamed but not yet named), windows a timed kill seldom hits.
  aim=""
  if [ "$op" != replace ] && (( RANDOM % 2 )); then
    case $op in
      snapshot) aim=pending; aim_ms=3 ;;
      merge) if (( RANDOM % 2 )); then aim=tmp; aim_ms=$((DUR_MS[merge] / 2 + 1)); else aim=merged; aim_ms=2; fi ;;
    esac
    rm -f "$T/kw.ready"
    "$PY" "$CLIENT" kill-when "$SERVER_PID" "$C" "$aim" --max-delay-ms "$aim_ms" --timeout 3 \
      --ready-file "$T/kw.ready" > "$T/kw.out" &
    kw=$!
    for _ in $(seq 1 200); do [ -e "$T/kw.ready" ] && break; sleep 0.01; done
  fi
  rm -f "$T/cop.end"
  ( t=$(date +%s%N); "$OVBD" ctl "$CTL" "${args[@]}" > "$T/cop.out" 2>&1 &&
    echo $(( ($(date +%s%N) - t) / 1000000 )) > "$T/cop.end" ) &
  cop=$!
  if [ -n "$aim" ]; then
    { wait "$kw"; wait "$SERVER_PID"; } 2>/dev/null
    SERVER_PID=""
    TRIES[$aim]=$(( ${TRIES[$aim]:-0} + 1 ))
    if grep -q '"event": true' "$T/kw.out"; then
      AIMED[$aim]=$(( ${AIMED[$aim]:-0} + 1 ))
      when="$(jget "$T/kw.out" "j['delay_ms']") ms after '$aim' in"
    else
      when="3 s (no '$aim' seen) into"
    fi
  else
    dur=${DUR_MS[$op]}
    delay_ms=$((RANDOM % (dur * 3 / 2 + 2)))
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill9
    when="${delay_ms} ms into"
  fi
  wait "$cop"
  if [ -s "$T/cop.end" ]; then
    DUR_MS[$op]=$(cat "$T/cop.end")  # it finished before the kill: its duration now
  else
    INTERRUPTED[$op]=$(( ${INTERRUPTED[$op]:-0} + 1 ))
  fi
  what="crash $round/$LOOPS: kill -9 $when ${args[*]}"
  if ! wait "$cw"; then
    bad "$what: the client failed while the server ran"; sed 's/^/    /' "$T/cw.err"; crash_fail=1; break
  fi
  HELPERS=()
  grep -q '"crashed": true' "$T/cw.out" || { bad "$what: the client did not see the server go"; cat "$T/cw.out"; crash_fail=1; break; }
  if ! start crash --config "$C/config.v1.json"; then
    bad "$what: the restart from the manifest failed"; cat "$C/config.v1.json"; ls -la "$C"; crash_fail=1; break
  fi
  sed 's/^/    /' "$T/crash.err"
  grep -q "finished the interrupted snapshot" "$T/crash.err" && FINISHED=$((FINISHED + 1))
  REMOVED=$((REMOVED + $(grep -c "left by an interrupted operation" "$T/crash.err")))
  if grep -q ovbdPendingSnapshot "$C/config.v1.json"; then
    bad "$what: ovbdPendingSnapshot is left in config.v1.json"; cat "$C/config.v1.json"; crash_fail=1; break
  fi
  if ! no_leftovers "$C" > "$T/left.txt"; then
    # Counted, then removed so that the next rounds start clean; the loop goes on.
    bad "$what: leftover files after the restart"; sed 's/^/    /' "$T/left.txt"; crash_fail=1
    for f in $(leftovers "$C"); do rm -f "$C/$f"; done
  fi
  if ! "$PY" "$CLIENT" verify "$URI" "$T/cmodel" --state "$T/cstate" --adopt > "$T/cv.out" 2> "$T/cv.err"; then
    bad "$what: a durable write is missing after the restart"; cat "$T/cv.err"; cat "$C/config.v1.json"; ls -la "$C"
    crash_fail=1; break
  fi
  # Replacement files the manifest does not name (a kill before the swap) are the test's own.
  for f in "$C"/repl-*; do
    [ -e "$f" ] && ! named_files "$C" | grep -xF "$(readlink -f "$f")" > /dev/null && rm -f "$f"
  done
done
echo "crash loop: $round rounds in $((SECONDS - t0)) s; kills during snapshot ${OPS[snapshot]:-0}," \
  "merge ${OPS[merge]:-0}, replace ${OPS[replace]:-0}; before the reply: snapshot ${INTERRUPTED[snapshot]:-0}," \
  "merge ${INTERRUPTED[merge]:-0}, replace ${INTERRUPTED[replace]:-0}; restarts finished $FINISHED snapshots" \
  "and removed $REMOVED leftovers; aimed kills that saw their step: intent ${AIMED[pending]:-0}" \
  "of ${TRIES[pending]:-0}, merge output ${AIMED[tmp]:-0} of ${TRIES[tmp]:-0}, unnamed merged file" \
  "${AIMED[merged]:-0} of ${TRIES[merged]:-0}"
[ $crash_fail = 0 ] &&
  ok "crash: $LOOPS kills: every restart opened with all durable writes, no pending snapshot, no leftover"
if [ -n "$SERVER_PID" ]; then
  check "crash: a final snapshot and merge of all lowers still work" bash -c "
    '$OVBD' ctl '$CTL' snapshot > /dev/null &&
    n=\$('$PY' -c \"import json; print(len(json.load(open('$C/config.v1.json'))['lowers']))\") &&
    '$OVBD' ctl '$CTL' merge --from 0 --to \$((n - 1)) > /dev/null"
  check "crash: ... and the content still equals the model" "$PY" "$CLIENT" verify "$URI" "$T/cmodel" --state "$T/cstate"
  check "crash: stop" stop
  check "crash: ovbd cat --config equals the model" bash -c "'$OVBD' cat -q --config '$C/config.v1.json' | cmp - '$T/cmodel'"
fi

summary lifecycle_nbd
