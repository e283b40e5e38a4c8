#!/usr/bin/env bash
# Registry auth and redirects end to end: tests/tools/auth_origin.py plays a registry that wants
# a Bearer token (from its token endpoint, with Basic credentials from a docker config.json)
# and answers blob requests with a 307 to storage on another origin, which counts any
# Authorization header it receives as a leak. `ovbd cat` and `ovbd serve` read golden layers
# from it and must match the local files; the token must be reused until it expires, then
# fetched again; wrong or missing credentials must fail with a clear error.
#
# usage: auth_redirect_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a tool is missing; the reason is printed).
set -u
OVBD=${1:?usage: auth_redirect_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: auth_redirect_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in "$PY" nbdcopy sha256sum cmp; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done
"$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
OVBD=$(readlink -f "$OVBD")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-auth.XXXXXX")
ORIGIN_PID=""
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  [ -n "$ORIGIN_PID" ] && kill "$ORIGIN_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
. "$HERE/harness.sh"

L0=$VEC/layer0.lz4-4k-crc.zfile
L1=$VEC/layer1.lz4-4k-crc.zfile.tar
D0=sha256:$(sha256sum "$L0" | cut -c1-64)
D1=sha256:$(sha256sum "$L1" | cut -c1-64)
mkdir -p "$T/blobs"
cp "$L0" "$T/blobs/$D0"
cp "$L1" "$T/blobs/$D1"
"$OVBD" cat -o "$T/ref.img" "$L0" "$L1" || exit 1

"$PY" "$HERE/tools/auth_origin.py" --blobs "$T/blobs" --repo lib/app --user ovbd --password secret \
  --ttl 2 --port-file "$T/ports" &
ORIGIN_PID=$!
for _ in $(seq 1 100); do [ -s "$T/ports" ] && break; sleep 0.05; done
read -r REG STORAGE < "$T/ports"
stats() { "$PY" -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1]))[sys.argv[2]])' "http://127.0.0.1:$REG/stats" "$1"; }
auth=$(printf 'ovbd:secret' | base64)
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$REG" "$auth" > "$T/config.json"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$REG" "$(printf 'ovbd:wrong' | base64)" > "$T/wrong.json"
R0=oci+http://127.0.0.1:$REG/lib/app@$D0
R1=oci+http://127.0.0.1:$REG/lib/app@$D1

check "cat through Bearer auth and a cross-origin redirect == local layers" sh -c \
  "'$OVBD' cat --credentials '$T/config.json' --cache-dir '$T/c1' '$R0' '$R1' | cmp - '$T/ref.img'"
check "a token was fetched with the Basic credentials" test "$(stats token_requests)" -ge 1
check "blob requests were redirected to storage" test "$(stats redirects)" -ge 1
check "storage served the ranges" test "$(stats storage_requests)" -ge 1
check "no Authorization header reached the storage origin" test "$(stats storage_auth_leaks)" -eq 0

check "wrong password: cat fails naming the registry" sh -c \
  "! '$OVBD' cat --credentials '$T/wrong.json' --cache-dir '$T/c2' '$R0' > /dev/null 2> '$T/wrong.err' && grep -q '127.0.0.1:$REG' '$T/wrong.err'"
check "no credentials: cat fails" sh -c \
  "! '$OVBD' cat --cache-dir '$T/c3' '$R0' > /dev/null 2> '$T/none.err' && test -s '$T/none.err'"

# serve: the token and the signed storage URL are reused while valid (2 s); after that the
# storage answers 403, the reader goes back to the registry, gets a 401 and a new token
start s --credentials "$T/config.json" --cache-dir "$T/c4" --cache-block-size 16K "$R0" "$R1"
before=$(stats token_requests)
"$PY" - "$T/s.sock" "$T/ref.img" > "$T/serve.log" 2>&1 <<'EOF'
import sys, time, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
ref = open(sys.argv[2], "rb").read()
size = h.get_size()
half = size // 2
assert h.pread(half, 0) == ref[:half], "first half differs"
time.sleep(2.5)                      # the token expires
assert h.pread(size - half, half) == ref[half:], "second half differs"
print("both halves equal")
EOF
check "serve: reads across a token expiry are right" test $? -eq 0
check "serve: the expired signed URL was dropped for a fresh redirect" test "$(stats storage_expired)" -ge 1
check "serve: the expired token was replaced" test "$(stats token_requests)" -gt "$before"
check "serve: still no Authorization header at the storage origin" test "$(stats storage_auth_leaks)" -eq 0
stop || bad "serve: stop"

summary auth_redirect_test
