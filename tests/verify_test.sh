#!/usr/bin/env bash
# Registry bytes are verified before they are cached or returned (docs/remote.md "Verification"),
# end to end: golden layers pushed to a real registry (Debian's docker-registry) with and without
# digest tables, served with `ovbd serve --config` through the fault-injection proxy
# (tests/tools/fault_proxy.py) that flips a byte in blob responses, read with libnbd. Every read
# is compared with `ovbd cat` of the local layer files: a read either fails (EIO) or is right.
#
#   1  digest table, every response of the layer blobs corrupted: from the start, serve refuses
#      to start (headers cannot be verified), naming blob and chunk; after a healthy start,
#      reads fail with EIO, never wrong; the error names the blob and the chunk; nothing wrong
#      is cached (same server and a restart read right once the registry is healthy)
#   2  digest table, every 4th response corrupted: refetched, every read right
#   3  no digest table, plain LSMT: downloaded whole and sha256-checked before the first read;
#      a registry that corrupts it stops the start with an error naming the blob; restart uses
#      the copy without the registry
#   4  no digest table, ZFile without CRCs: downloaded whole as well
#   5  --trust-unverified: read lazily, reported as unverified, cached under a key of its own
#   6  ZFile with CRCs, no table: lazy; corrupted blocks fail with EIO, are dropped from the cache
#      and refetched, so the same server recovers by itself, and so does a restart
#   7  ovbd cache verify: a clean cache verifies; a block rotted on disk is found and dropped
#
# usage: verify_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a tool is missing; the reason is printed).
set -u

OVBD=${1:?usage: verify_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: verify_test.sh OVBD VECTORS_DIR}
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

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-verify.XXXXXX")
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
# j EXPR: a value from `ovbd ctl status` (python expression over the status object `s`).
j() {
  "$OVBD" ctl "$CTL" status | "$PY" -c 'import json,sys
s=json.load(sys.stdin)
v=eval(sys.argv[1])
print(int(v) if isinstance(v, bool) else v)' "$1"
}
faults() { curl -sf -X POST --data "$1" "http://$PROXY_ADDR/__proxy__/faults" >/dev/null; }
same_as_local() { nbdcopy "$URI" "$T/got.img" && cmp "$T/got.img" "$T/ref.img"; }
# never_wrong SOCK: reads the image in 1 MiB pieces; prints "ok=N eio=M wrong=K". Exit 0 iff no
# piece was wrong and every failure was EIO.
never_wrong() {
  { "$PY" - "$1" "$T/ref.img" <<'EOF'
import errno, sys, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
ref = open(sys.argv[2], "rb").read()
ok = eio = wrong = other = 0
for off in range(0, h.get_size(), 1 << 20):
    try:
        got = h.pread(1 << 20, off)
    except nbd.Error as e:
        if e.errno in ("EIO", errno.EIO) or str(e.errno) == str(errno.EIO): eio += 1
        else: other += 1; print(f"offset {off}: {e}")
        continue
    if got == ref[off:off + (1 << 20)]: ok += 1
    else: wrong += 1
print(f"ok={ok} eio={eio} wrong={wrong} other={other}")
sys.exit(0 if wrong == 0 and other == 0 else 1)
EOF
  } > "$T/nw.log" 2>&1
  local rc=$?
  cat "$T/nw.log"
  return $rc
}
# fails_to_start NAME ARGS...: `ovbd serve` exits non-zero without serving; its stderr in NAME.err.
fails_to_start() {
  local name=$1; shift
  timeout 120 "$OVBD" serve --socket "$T/$name.sock" "$@" > "$T/$name.out" 2> "$T/$name.err"
  local rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ! grep -q '^serving ' "$T/$name.out"
}

# ---- setup: registry, proxy, pushed layers ------------------------------------------------------
REG_ADDR=$(bash "$REGISTRY" start "$T/registry") || { echo "FAIL: registry did not start"; exit 1; }
"$PY" "$PROXY" --listen 127.0.0.1:0 --upstream "http://$REG_ADDR" --port-file "$T/proxy.port" --seed 11 \
  > "$T/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do [ -s "$T/proxy.port" ] && break; sleep 0.05; done
PROXY_ADDR=127.0.0.1:$(cat "$T/proxy.port")
digest() { echo "sha256:$(sha256sum "$1" | cut -c1-64)"; }
push() {  # push CONFIG ARGS... LAYERS: pushed directly, the config rewritten to go through the proxy
  local out=$1; shift
  "$OVBD" push -q --to "http://$REG_ADDR/verify/app" --config-out "$T/$out.direct" "$@" || return 1
  sed "s#$REG_ADDR#$PROXY_ADDR#" "$T/$out.direct" > "$T/$out"
}
P0=$VEC/layer0.lsmt P1=$VEC/layer1.lsmt
N0=$VEC/layer0.lz4-4k-nocrc.zfile N1=$VEC/layer1.lz4-4k-nocrc.zfile
C0=$VEC/layer0.lz4-4k-crc.zfile C1=$VEC/layer1.lz4-4k-crc.zfile
push table.json "$P0" "$P1" || { echo "FAIL: push with tables"; exit 1; }
push notable.json --no-digest-table "$P0" "$P1" || { echo "FAIL: push without tables"; exit 1; }
push nocrc.json --no-digest-table "$N0" "$N1" || { echo "FAIL: push nocrc"; exit 1; }
push crc.json --no-digest-table "$C0" "$C1" || { echo "FAIL: push crc"; exit 1; }
"$OVBD" cat -o "$T/ref.img" "$P0" "$P1" || exit 1
DP0=$(digest "$P0") DP1=$(digest "$P1") DN0=$(digest "$N0") DC0=$(digest "$C0") DC1=$(digest "$C1")
layers_only() {  # a path regex matching the blobs of the given digests (not their tables)
  local re="" d
  for d in "$@"; do re="$re${re:+|}/blobs/$d\$"; done
  echo "($re)"
}
check "push: every lower of the config names its digest table" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
sys.exit(0 if all("digestTable" in l for l in c["lowers"]) else 1)' "$T/table.json"
check "push --no-digest-table: no lower names one" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
sys.exit(0 if not any("digestTable" in l for l in c["lowers"]) else 1)' "$T/notable.json"
COMMON=(--cache-block-size 16K --remote-timeout 20)

# ---- 1. digest table, every layer response corrupted: EIO, never wrong, nothing wrong cached ----
CORRUPT_P=$(layers_only "$DP0" "$DP1")
faults "{\"reset\": true, \"corrupt\": {\"p\": 1.0, \"path_regex\": \"$CORRUPT_P\"}}"
check "table, registry corrupting everything from the start: serve refuses to start" \
  fails_to_start t1open --config "$T/table.json" --cache-dir "$T/c1open" "${COMMON[@]}"
check "table, ... naming the blob, the chunk and the hashes" \
  sh -c "grep -q '$DP0\|$DP1' '$T/t1open.err' && grep -q 'chunk' '$T/t1open.err' && grep -qi 'expected' '$T/t1open.err'"
faults '{"reset": true}'
if start t1 --config "$T/table.json" --cache-dir "$T/c1" "${COMMON[@]}"; then
  check "table: status says the layers are checked by their digest tables" \
    test "$(j 'sum(l["verification"] == "digest table" for l in s["remote_layers"])')" -eq 2
  # Opened (headers and indexes read) from a healthy registry; from now on every response of
  # the layer blobs has a flipped byte.
  faults "{\"reset\": true, \"corrupt\": {\"p\": 1.0, \"path_regex\": \"$CORRUPT_P\"}}"
  check "table, registry corrupting everything: no read returns wrong bytes" never_wrong "$T/t1.sock"
  check "table, registry corrupting everything: reads failed (EIO)" grep -q 'eio=[1-9]' "$T/nw.log"
  check "table: mismatches were counted and refetched" \
    test "$(j 's["digest_tables"]["mismatches"]')" -gt 0 -a "$(j 's["digest_tables"]["refetches"]')" -gt 0
  check "table: ctl status counts the failed reads and gives the last reason" \
    test "$(j 'sum(l["read_errors"] > 0 and "chunk" in l["last_error"] for l in s["remote_layers"])')" -ge 1
  check "table: the error names the blob, the chunk and both hashes" \
    sh -c "grep -q '$DP0\|$DP1' '$T/t1.err' && grep -q 'chunk' '$T/t1.err' && grep -qi 'expected' '$T/t1.err'"
  faults '{"reset": true}'
  check "table: registry healthy again, the same server reads everything right" same_as_local
  stop || bad "t1: stop"
fi
faults '{"reset": true, "refuse": {"every": 1}}'
if start t1b --config "$T/table.json" --cache-dir "$T/c1" "${COMMON[@]}"; then
  check "table: restart with the registry unreachable: the cache serves right bytes only" same_as_local
  check "table: restart: nothing fetched (tables kept in the cache directory too)" test "$(j 's["cache"]["fetched_bytes"]')" -eq 0
  stop || bad "t1b: stop"
fi
faults '{"reset": true}'

# ---- 2. digest table, some responses corrupted: refetched, all right ---------------------------
# Every 4th response: a chunk's 3 reads are never all hit (a p-based rule would sometimes be).
faults "{\"reset\": true, \"corrupt\": {\"every\": 4, \"path_regex\": \"$CORRUPT_P\"}}"
if start t2 --config "$T/table.json" --cache-dir "$T/c2" "${COMMON[@]}"; then
  check "table, every 4th response corrupted: every read right" same_as_local
  check "table, every 4th: chunks were refetched" test "$(j 's["digest_tables"]["refetches"]')" -gt 0
  stop || bad "t2: stop"
fi
faults '{"reset": true}'

# ---- 3. no table, plain LSMT: whole download before serving ------------------------------------
if start t3 --config "$T/notable.json" --cache-dir "$T/c3" "${COMMON[@]}"; then
  check "no table, plain LSMT: status says downloaded whole" \
    test "$(j 'sum(l["verification"].startswith("downloaded whole") for l in s["remote_layers"])')" -eq 2
  check "no table: the copies are the blobs" sh -c "cmp '$T/c3/layers/$DP0' '$P0' && cmp '$T/c3/layers/$DP1' '$P1'"
  check "no table: reads right" same_as_local
  stop || bad "t3: stop"
fi
check "no table: the start said why it downloads" grep -q 'downloading it whole' "$T/t3.err"
faults "{\"reset\": true, \"corrupt\": {\"p\": 1.0, \"path_regex\": \"$(layers_only "$DP0")\"}}"
check "no table, registry corrupting the blob: serve refuses to start" \
  fails_to_start t3bad --config "$T/notable.json" --cache-dir "$T/c3bad" "${COMMON[@]}"
check "no table, corrupted: the error names the blob and the digest mismatch" \
  sh -c "grep -q '$DP0' '$T/t3bad.err' && grep -qi 'digest' '$T/t3bad.err'"
check "no table, corrupted: no copy is left under the blob's name" test ! -e "$T/c3bad/layers/$DP0"
faults '{"reset": true, "refuse": {"every": 1}}'
if start t3c --config "$T/notable.json" --cache-dir "$T/c3" "${COMMON[@]}"; then
  check "no table: restart uses the verified copies without the registry" same_as_local
  stop || bad "t3c: stop"
fi
faults '{"reset": true}'

# ---- 4. no table, ZFile without CRCs ------------------------------------------------------------
if start t4 --config "$T/nocrc.json" --cache-dir "$T/c4" "${COMMON[@]}"; then
  check "ZFile without CRCs, no table: downloaded whole" \
    test "$(j 'sum(l["verification"].startswith("downloaded whole") for l in s["remote_layers"])')" -eq 2
  check "ZFile without CRCs: reads right" same_as_local
  stop || bad "t4: stop"
fi
check "ZFile without CRCs: the copy is the blob" cmp "$T/c4/layers/$DN0" "$N0"

# ---- 5. --trust-unverified ----------------------------------------------------------------------
if start t5 --config "$T/notable.json" --cache-dir "$T/c5" "${COMMON[@]}" --trust-unverified; then
  check "--trust-unverified: status says unverified" \
    test "$(j 'sum(l["verification"].startswith("none") for l in s["remote_layers"])')" -eq 2
  check "--trust-unverified: reads right from a healthy registry" same_as_local
  check "--trust-unverified: read lazily (nothing downloaded whole)" test ! -e "$T/c5/layers/$DP0"
  stop || bad "t5: stop"
fi
check "--trust-unverified: its bytes are cached under a key of their own" \
  sh -c "'$OVBD' cache status --cache-dir '$T/c5' | grep -q '$DP0.unverified'"

# ---- 6. ZFile with CRCs, no table: EIO, dropped, refetched, recovered ---------------------------
if start t6 --config "$T/crc.json" --cache-dir "$T/c6" "${COMMON[@]}"; then
  check "ZFile with CRCs: lazy, checked by its CRCs" \
    test "$(j 'sum(l["verification"] == "zfile crc" for l in s["remote_layers"])')" -eq 2
  faults "{\"reset\": true, \"corrupt\": {\"p\": 1.0, \"path_regex\": \"$(layers_only "$DC0" "$DC1")\"}}"
  check "ZFile with CRCs, registry corrupting everything: no read returns wrong bytes" never_wrong "$T/t6.sock"
  check "ZFile with CRCs, registry corrupting everything: reads failed (EIO)" grep -q 'eio=[1-9]' "$T/nw.log"
  check "ZFile with CRCs: the blocks that failed were dropped from the cache (cache.invalidated_blocks)" \
    test "$(j 's["cache"]["invalidated_blocks"]')" -gt 0
  check "ZFile with CRCs: ctl status gives the CRC failure as the reason" \
    test "$(j 'sum("CRC" in l["last_error"] for l in s["remote_layers"])')" -ge 1
  faults '{"reset": true}'
  check "ZFile with CRCs: registry healthy, the same server recovers by itself" same_as_local
  stop || bad "t6: stop"
fi
faults '{"reset": true, "refuse": {"every": 1}}'
if start t6b --config "$T/crc.json" --cache-dir "$T/c6" "${COMMON[@]}"; then
  check "ZFile with CRCs: restart without the registry reads right from the cache" same_as_local
  stop || bad "t6b: stop"
fi
faults '{"reset": true}'

# ---- 7. ovbd cache verify -----------------------------------------------------------------------
check "cache verify: a clean cache verifies" "$OVBD" cache verify --cache-dir "$T/c1"
check "cache verify --json reports checked bytes" sh -c \
  "'$OVBD' cache verify --cache-dir '$T/c1' --json | '$PY' -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"checked_bytes\"] > 0 and d[\"bad_blocks\"] == 0 else 1)'"
printf '\xff\xfe\xfd\xfc' | dd of="$T/c1/$DP0.data" bs=1 seek=40000 conv=notrunc status=none
check "cache verify: a rotted block fails the run" sh -c "! '$OVBD' cache verify --cache-dir '$T/c1' > '$T/v.out' 2>&1"
check "cache verify: ... naming the blob" grep -q "$DP0" "$T/v.out"
check "cache verify: ... and the block is dropped, so the next run is clean" "$OVBD" cache verify --cache-dir "$T/c1"

summary verify_test
