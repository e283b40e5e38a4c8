#!/usr/bin/env bash
# Lazy loading end to end: golden layers pushed to a real registry (Debian's docker-registry via
# scripts/registry.sh) with `ovbd push`, then served with `ovbd serve --config` through the
# fault-injection proxy (tests/tools/fault_proxy.py) and read with real NBD clients. Every read is
# compared with `ovbd cat` of the local layer files.
#
#   1  plain: config.v1.json and oci+http:// references read to the local bytes
#   2  a flaky registry (500, 503, dropped connections, truncated bodies): reads retry, stay right
#   3  a registry that flips bytes: reads fail or are right, never wrong bytes
#   4  an unreachable registry: a read fails with EIO after --remote-timeout, then works again
#   5  restart with the registry refusing every connection: the cache serves everything
#   6  a cache cap smaller than the data: the cap holds, the data is right
#   7  a corrupted cache file: detected, refetched, never served
#   8  trace: --record-trace, then --replay-trace fills the cache before the client asks;
#      recordTracePath records on the first start and replays on the next
#   9  a stalled registry does not block reads served from the cache
#  10  ovbd cache status / prune
#  11  --download: whole layers downloaded in the background, verified, reads switch to them
#  12  ovbd attach --fuse-only of the registry-backed image
#  13  bytes corrupted in transit: EIO while the registry corrupts, then right again by itself
#      (same server, and a restart on the same cache directory): nothing bad stays cached
#
# usage: lazy_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a tool is missing; the reason is printed).
set -u

OVBD=${1:?usage: lazy_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: lazy_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
REGISTRY=$HERE/../scripts/registry.sh
PROXY=$HERE/tools/fault_proxy.py

for tool in docker-registry curl nbdcopy cmp sha256sum; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"; exit 77; }
done
"$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-lazy.XXXXXX")
SERVER_PID=""
PROXY_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  [ -n "$PROXY_PID" ] && kill -TERM "$PROXY_PID" 2>/dev/null
  bash "$REGISTRY" stop "$T/registry" >/dev/null 2>&1
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

. "$HERE/harness.sh"
# st KEY.PATH: a number from `ovbd ctl status` (e.g. cache.fetched_bytes).
st() {
  "$OVBD" ctl "$CTL" status | "$PY" -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(int(v) if not isinstance(v, bool) else int(v))' "$1"
}
faults() { curl -sf -X POST --data "$1" "http://$PROXY_ADDR/__proxy__/faults" >/dev/null; }
proxy_stat() {
  curl -sf "http://$PROXY_ADDR/__proxy__/stats" | "$PY" -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$1"
}
same_as_local() { nbdcopy "$URI" "$T/got.img" && cmp "$T/got.img" "$T/ref.img"; }

# ---- setup: registry, proxy, pushed layers ------------------------------------------------------
REG_ADDR=$(bash "$REGISTRY" start "$T/registry") || { echo "FAIL: registry did not start"; exit 1; }
"$PY" "$PROXY" --listen 127.0.0.1:0 --upstream "http://$REG_ADDR" --port-file "$T/proxy.port" --seed 7 \
  > "$T/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do [ -s "$T/proxy.port" ] && break; sleep 0.05; done
PROXY_ADDR=127.0.0.1:$(cat "$T/proxy.port")
L0=$VEC/layer0.lz4-4k-crc.zfile
L1=$VEC/layer1.lz4-4k-crc.zfile.tar
"$OVBD" push -q --to "http://$REG_ADDR/lazy/app" --config-out "$T/direct.json" "$L0" "$L1" || { echo "FAIL: push"; exit 1; }
sed "s#$REG_ADDR#$PROXY_ADDR#" "$T/direct.json" > "$T/config.v1.json"
"$OVBD" cat -o "$T/ref.img" "$L0" "$L1" || exit 1
D0=sha256:$(sha256sum "$L0" | cut -c1-64)
D1=sha256:$(sha256sum "$L1" | cut -c1-64)
COMMON=(--config "$T/config.v1.json" --cache-block-size 64K --remote-timeout 30)


# ---- 1. plain -----------------------------------------------------------------------------------
if start plain "${COMMON[@]}" --cache-dir "$T/c1"; then
  check "config.v1.json served from the registry == local layers" same_as_local
  check "blobs were fetched through the cache" test "$(st cache.fetched_bytes)" -gt 0
  check "status lists the remote layers" sh -c "'$OVBD' ctl '$CTL' status | grep -q '$D1'"
  verified() { "$OVBD" ctl "$CTL" status | "$PY" -c 'import json,sys
print(sum(l["digest_check"] == "verified" for l in json.load(sys.stdin)["remote_layers"]))'; }
  for _ in $(seq 1 100); do [ "$(verified)" -ge 1 ] && break; sleep 0.05; done
  check "a blob read completely (in any order) had its sha256 verified" test "$(verified)" -ge 1
  stop || bad "plain: stop"
fi
check "ovbd cat oci+http:// references == local layers" sh -c \
  "'$OVBD' cat --cache-dir '$T/c-oci' oci+http://$PROXY_ADDR/lazy/app@$D0 oci+http://$PROXY_ADDR/lazy/app@$D1 | cmp - '$T/ref.img'"
check "result file absent is fine; a missing blob is an error naming it" sh -c \
  "! '$OVBD' cat --cache-dir '$T/c-missing' oci+http://$PROXY_ADDR/lazy/app@sha256:$(printf '0%.0s' $(seq 64)) 2> '$T/missing.err' >/dev/null && grep -qi 'not found\|404\|unknown' '$T/missing.err'"

# ---- 2. flaky registry --------------------------------------------------------------------------
faults '{"reset": true, "seed": 3, "path_regex": "/blobs/", "status500": {"p": 0.15}, "status503": {"p": 0.15, "retry_after": 0},
         "drop_before": {"p": 0.1}, "truncate": {"p": 0.15}}'
if start flaky "${COMMON[@]}" --cache-dir "$T/c2"; then
  check "flaky registry: reads retry and stay right" same_as_local
  stop || bad "flaky: stop"
fi
check "flaky registry: faults were injected" test "$(( $(proxy_stat faults.status500) + $(proxy_stat faults.truncate) ))" -gt 0
faults '{"reset": true}'

# ---- 3. a registry that flips bytes -------------------------------------------------------------
faults '{"reset": true, "path_regex": "/blobs/", "corrupt": {"every": 3}}'
if start corrupt "${COMMON[@]}" --cache-dir "$T/c3"; then
  if nbdcopy "$URI" "$T/got3.img" 2> "$T/corrupt.err"; then
    check "flipped bytes: a read that succeeds is right" cmp "$T/got3.img" "$T/ref.img"
  else
    ok "flipped bytes: the read failed (I/O error), no wrong bytes"
  fi
  stop
  SERVER_PID=""
fi
faults '{"reset": true}'

# ---- 4. unreachable registry: EIO after the timeout, then recovery -----------------------------
if start down --config "$T/config.v1.json" --cache-block-size 64K --cache-dir "$T/c4" --remote-timeout 3; then
  faults '{"reset": true, "path_regex": "/blobs/", "status503": {"every": 1, "retry_after": 0}}'
  "$PY" - "$T/down.sock" > "$T/down.log" 2>&1 <<'EOF'
import errno, sys, time, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
for off in range(0, h.get_size(), 1 << 20):  # some of it is not cached yet
    t = time.monotonic()
    try:
        h.pread(1 << 20, off)
    except nbd.Error as e:
        took = time.monotonic() - t
        print(f"offset {off}: errno={e.errno} after {took:.1f}s: {e.string}")
        sys.exit(0 if str(e.errno) in ("EIO", str(errno.EIO)) and 2.5 <= took <= 30 else 1)
print("every read succeeded while the registry was down"); sys.exit(1)
EOF
  check "registry down: the read fails with EIO after --remote-timeout" test $? -eq 0 -a -s "$T/down.log"
  cat "$T/down.log"
  faults '{"reset": true}'
  check "registry back: the same server reads everything right" same_as_local
  stop || bad "down: stop"
fi

# ---- 5. restart with the registry refusing everything: served from the cache -------------------
faults '{"reset": true, "refuse": {"every": 1}}'
if start restart "${COMMON[@]}" --cache-dir "$T/c1"; then
  check "restart: a complete cache serves the image with the registry unreachable" same_as_local
  check "restart: nothing was fetched" test "$(st cache.fetched_bytes)" -eq 0
  stop || bad "restart: stop"
fi
faults '{"reset": true}'

# ---- 6. cache cap -------------------------------------------------------------------------------
if start cap --config "$T/config.v1.json" --cache-dir "$T/c6" --cache-size 256K --cache-block-size 16K; then
  check "cap 256K: the data is right" same_as_local
  check "cap 256K: used <= capacity" test "$(st cache.used)" -le 262144
  check "cap 256K: blocks were evicted" test "$(st cache.evicted_bytes)" -gt 0
  stop || bad "cap: stop"
fi
check "cap 256K: the cache directory holds at most the cap" sh -c \
  "'$OVBD' cache status --cache-dir '$T/c6' --json | '$PY' -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"used\"] <= 262144 else 1)'"

# ---- 7. corrupted cache file --------------------------------------------------------------------
cp -a "$T/c1" "$T/c7"
data=$T/c7/$D0.data

for off in 4096 200000 600000; do
  printf '\xff\xfe\xfd\xfc' | dd of="$data" bs=1 seek=$off conv=notrunc status=none
done
if start corrupted "${COMMON[@]}" --cache-dir "$T/c7"; then
  check "corrupted cache file: the data is right" same_as_local
  check "corrupted cache file: corrupt blocks were detected" test "$(st cache.corrupt_blocks)" -gt 0
  check "corrupted cache file: they were refetched" test "$(st cache.fetched_bytes)" -gt 0
  stop || bad "corrupted: stop"
fi

# ---- 8. trace record / replay -------------------------------------------------------------------
read_ranges() {  # read_ranges SOCK OUT: a start-up-like set of reads, their bytes to OUT
  "$PY" - "$1" "$2" <<'EOF'
import sys, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
with open(sys.argv[2], "wb") as out:
    for off, n in ((0, 65536), (1 << 20, 131072), (5 << 20, 65536), (20 << 20, 262144), (40 << 20, 65536)):
        out.write(h.pread(n, off))
EOF
}
"$PY" - "$T/ref.img" "$T/ref.ranges" <<'EOF'
import sys
src = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as out:
    for off, n in ((0, 65536), (1 << 20, 131072), (5 << 20, 65536), (20 << 20, 262144), (40 << 20, 65536)):
        out.write(src[off:off + n])
EOF
if start record "${COMMON[@]}" --cache-dir "$T/c8a" --record-trace "$T/startup.trace"; then
  read_ranges "$T/record.sock" "$T/rec.ranges"
  check "record: the ranges read are right" cmp "$T/rec.ranges" "$T/ref.ranges"
  stop || bad "record: stop"
fi
check "record: the trace file was written and names both layers" sh -c \
  "head -1 '$T/startup.trace' | grep -qx 'ovbd-trace 1' && grep -q '$D0' '$T/startup.trace'"
if start replay "${COMMON[@]}" --cache-dir "$T/c8b" --replay-trace "$T/startup.trace"; then
  for _ in $(seq 1 200); do [ "$(st prefetch.finished)" = 1 ] && break; sleep 0.05; done
  check "replay: the prefetch finished without failures" test "$(st prefetch.finished)" = 1 -a "$(st prefetch.bytes_failed)" = 0
  fetched=$(st cache.fetched_bytes)
  faults '{"reset": true, "path_regex": "/blobs/", "status500": {"every": 1}}'
  read_ranges "$T/replay.sock" "$T/rep.ranges"
  check "replay: the start-up reads are right with the registry failing" cmp "$T/rep.ranges" "$T/ref.ranges"
  check "replay: the start-up reads fetched nothing more" test "$(st cache.fetched_bytes)" -eq "$fetched"
  faults '{"reset": true}'
  stop || bad "replay: stop"
fi
check "a corrupt trace is refused with a clear error" sh -c \
  "sed 's/^r 0 0 /r 0 1 /' '$T/startup.trace' > '$T/bad.trace'; ! '$OVBD' serve --socket '$T/bad.sock' --replay-trace '$T/bad.trace' '$L0' 2> '$T/bad.err' && grep -q 'bad.trace' '$T/bad.err'"
sed 's#"lowers"#"recordTracePath": "auto.trace", "lowers"#' "$T/config.v1.json" > "$T/auto.json"
if start auto1 --config "$T/auto.json" --cache-dir "$T/c8c"; then
  read_ranges "$T/auto1.sock" /dev/null
  stop || bad "auto1: stop"
fi
check "recordTracePath: the first start records" test -s "$T/auto.trace"
if start auto2 --config "$T/auto.json" --cache-dir "$T/c8d"; then
  for _ in $(seq 1 200); do [ "$(st prefetch.finished)" = 1 ] && break; sleep 0.05; done
  check "recordTracePath: the next start replays" test "$(st prefetch.bytes_done)" -gt 0
  stop || bad "auto2: stop"
fi

# ---- 9. a stalled registry does not block reads served from the cache ---------------------------
rm -rf "$T/c9"
if start stall "${COMMON[@]}" --cache-dir "$T/c9"; then
  read_ranges "$T/stall.sock" /dev/null   # these blocks are now cached
  faults '{"reset": true, "path_regex": "/blobs/", "delay": {"every": 1, "ms": 6000}}'
  "$PY" - "$T/stall.sock" > "$T/stall.log" 2>&1 <<'EOF'
import sys, threading, time, nbd
sock = sys.argv[1]
slow_done = []
def slow():
    h = nbd.NBD(); h.connect_unix(sock)
    for off in range(0, h.get_size(), 1 << 20):
        h.pread(1 << 20, off)         # partly not cached: waits for the stalled registry
    slow_done.append(time.monotonic())
t = threading.Thread(target=slow); t.start()
time.sleep(0.5)
h = nbd.NBD(); h.connect_unix(sock)
for off, n in ((0, 65536), (1 << 20, 131072), (20 << 20, 262144)):
    h.pread(n, off)                   # cached
fast_done = time.monotonic()
t.join()
print("cached reads finished first" if not slow_done or fast_done < slow_done[0] else "cached reads waited")
sys.exit(0 if slow_done and fast_done < slow_done[0] else 1)
EOF
  check "stalled registry: cached reads finish before the stalled one" test $? -eq 0
  faults '{"reset": true}'
  stop || bad "stall: stop"
fi

# ---- 11. background download: whole layers copied, verified, then served from local copies ---
if start dl --config "$T/config.v1.json" --cache-dir "$T/c11" --cache-size 64K --cache-block-size 16K --download; then
  for _ in $(seq 1 400); do [ "$(st download.finished)" = 1 ] && break; sleep 0.05; done
  check "download: both layers downloaded and verified" test "$(st download.done)" -eq 2
  faults '{"reset": true, "refuse": {"every": 1}}'
  check "download: with the registry refusing connections the image reads right (local copies)" same_as_local
  faults '{"reset": true}'
  stop || bad "dl: stop"
fi
check "download: the local copies are the blobs" sh -c "cmp '$T/c11/layers/$D0' '$L0' && cmp '$T/c11/layers/$D1' '$L1'"
faults '{"reset": true, "refuse": {"every": 1}}'
if start dl2 --config "$T/config.v1.json" --cache-dir "$T/c11" --cache-size 64K --cache-block-size 16K; then
  check "download: the next start uses the verified copies" test "$(st downloaded_layers_used)" -eq 2
  check "download: ... and reads right with the registry refusing" same_as_local
  stop || bad "dl2: stop"
fi
faults '{"reset": true}'

# sigterm_waited_by_one PID: at most one thread of PID accepts SIGTERM (15: bit 14 of SigBlk
# clear): the one waiting for it in sigwait (which unblocks it for the wait).
sigterm_waited_by_one() {
  local status mask n=0 open=0
  [ -n "$1" ] && [ -d "/proc/$1/task" ] || { echo "no process '$1'"; return 1; }
  for status in /proc/"$1"/task/*/status; do
    mask=$(awk '/^SigBlk:/ { print $2 }' "$status")
    (( (16#$mask >> 14) & 1 )) || open=$((open + 1))
    n=$((n + 1))
  done
  echo "$n threads, $open accept SIGTERM"
  [ "$open" -le 1 ]
}

# ---- 12. ovbd attach of a registry-backed image (FUSE file; needs root and /dev/fuse) ----------
if [ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ]; then
  mkdir -p "$T/fuse"
  if "$OVBD" attach --config "$T/config.v1.json" --cache-dir "$T/c12" --fuse-only "$T/fuse" \
       --record-trace "$T/attach.trace" > "$T/attach.out" 2>&1; then
    check "attach: the FUSE file of a registry-backed image == local layers" cmp "$T/fuse/image" "$T/ref.img"
    # The attach process waits for SIGTERM in one thread; any other thread that does not block
    # it (e.g. a background worker of the cache) could take it and end the process unflushed.
    attach_pid=$(pgrep -f -- "--fuse-only $T/fuse" | head -1)
    check "attach: only the signal-waiting thread of the attach process accepts SIGTERM" \
      sigterm_waited_by_one "$attach_pid"
    check "attach: detach" "$OVBD" detach "$T/fuse"
    check "attach: the trace was recorded by the attach process" test -s "$T/attach.trace"
  else
    bad "attach: $(cat "$T/attach.out")"
  fi
else
  echo "SKIP (part): attach needs root and /dev/fuse"
fi

# ---- 13. bytes corrupted in transit are refetched once the registry heals --------------------
# The image's metadata is loaded with a healthy registry; then every blob response gets a byte
# flipped. A ZFile run that fails its CRCs is dropped from the cache and read again (3 reads),
# then the read fails (EIO). Healthy again, the same reads are right: in the same server, and
# after a restart on the same cache directory (no block that failed a check stays cached).
corrupt_all() { faults '{"reset": true, "path_regex": "/blobs/", "corrupt": {"p": 1.0}}'; }
if start heal "${COMMON[@]}" --cache-dir "$T/c13"; then
  corrupt_all
  check "corrupt in transit: the read fails (EIO), no wrong bytes" sh -c "! nbdcopy '$URI' '$T/got13.img'"
  check "corrupt in transit: bytes were flipped" test "$(proxy_stat faults.corrupt)" -gt 0
  faults '{"reset": true}'
  stop || bad "heal: stop"
fi
if start heal-restart "${COMMON[@]}" --cache-dir "$T/c13"; then
  check "healed registry: a restart on the same cache reads everything right" same_as_local
  stop || bad "heal-restart: stop"
fi
if start heal-same "${COMMON[@]}" --cache-dir "$T/c13b"; then
  corrupt_all
  check "corrupt in transit (2): the read fails (EIO)" sh -c "! nbdcopy '$URI' '$T/got13.img'"
  faults '{"reset": true}'
  check "healed registry: the same server reads everything right" same_as_local
  verified13() { "$OVBD" ctl "$CTL" status | "$PY" -c 'import json,sys
print(sum(l["digest_check"] == "verified" for l in json.load(sys.stdin)["remote_layers"]))'; }
  for _ in $(seq 1 100); do [ "$(verified13)" -ge 1 ] && break; sleep 0.05; done
  check "healed registry: a blob's sha256 verifies (a mismatch is not final)" test "$(verified13)" -ge 1
  stop || bad "heal-same: stop"
fi
# The same with one-shot processes sharing a cache directory; the error names blob and cause.
OCI13="oci+http://$PROXY_ADDR/lazy/app@$D0 oci+http://$PROXY_ADDR/lazy/app@$D1"
corrupt_all
check "corrupt in transit: ovbd cat fails naming the blob and the retries" sh -c \
  "! '$OVBD' cat --cache-dir '$T/c13c' $OCI13 > /dev/null 2> '$T/cat13.err' && grep -q 'after 3 reads' '$T/cat13.err' && grep -q 'lazy/app' '$T/cat13.err'"
faults '{"reset": true}'
check "healed registry: ovbd cat on the same cache directory is right" sh -c \
  "'$OVBD' cat --cache-dir '$T/c13c' $OCI13 | cmp - '$T/ref.img'"

# ---- 10. ovbd cache status / prune --------------------------------------------------------------
check "cache status lists both blobs" sh -c "'$OVBD' cache status --cache-dir '$T/c1' | grep -q '$D0' && '$OVBD' cache status --cache-dir '$T/c1' | grep -q '$D1'"
if start busy "${COMMON[@]}" --cache-dir "$T/c1"; then
  check "cache prune refuses a cache in use" sh -c "! '$OVBD' cache prune --cache-dir '$T/c1' 2> '$T/busy.err' && grep -q 'in use' '$T/busy.err'"
  stop || bad "busy: stop"
fi
check "cache prune --to 0 empties the cache" sh -c \
  "'$OVBD' cache prune --cache-dir '$T/c1' --to 0 >/dev/null && '$OVBD' cache status --cache-dir '$T/c1' --json | '$PY' -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"used\"] == 0 else 1)'"

summary lazy_test
