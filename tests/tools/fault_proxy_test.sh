#!/usr/bin/env bash
# Self-test of tests/tools/fault_proxy.py, driven with curl on loopback.
#
# Layout: an origin (fault_proxy.py --serve-dir, Range-capable; plus a tiny chunked-response
# origin written inline below) and the proxy under test (fault_proxy.py --upstream ORIGIN).
# Checks: byte-exact pass-through (sha256), Range/206/416, concurrent range requests, keep-alive,
# uploads (Content-Length and chunked), chunked responses, every fault kind, faults switched at
# run time through the control endpoint, path filter, every-Nth / limit / seeded probabilities,
# added latency and delay (lower bounds only), the bandwidth cap (>= 70% of the ideal time),
# stats, start-time flags, and clean shutdown on SIGTERM/SIGINT.
#
# usage: bash tests/tools/fault_proxy_test.sh
# Exit: 0 all passed, 1 a failure, 77 skipped (/usr/bin/python3 or curl missing).
set -u

PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: $PY not found"; exit 77; }
for tool in curl sha256sum cmp head tail dd awk mktemp dirname; do
  command -v $tool >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
PROXY=$HERE/fault_proxy.py

T=$(mktemp -d "${TMPDIR:-/tmp}/fault-proxy-test.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
START=$(date +%s.%N)

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect_eq() {  # expect_eq DESCRIPTION GOT WANT
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}
now() { date +%s.%N; }
# at_least DESCRIPTION START_TIME MIN_SECONDS: elapsed since START_TIME >= MIN_SECONDS
at_least() {
  local el
  el=$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
  if awk -v e="$el" -v m="$3" 'BEGIN { exit !(e >= m) }'; then ok "$1 (${el}s >= $3s)"
  else bad "$1: took ${el}s, expected >= $3s"; fi
}

# start NAME ARGS...: runs fault_proxy.py ARGS, waits for its port file; sets PORT and LASTPID.
start() {
  local name=$1; shift
  "$PY" "$PROXY" --port-file "$T/$name.port" "$@" > "$T/$name.out" 2> "$T/$name.err" &
  LASTPID=$!
  PIDS+=("$LASTPID")
  for _ in $(seq 100); do
    [ -s "$T/$name.port" ] && grep -q "^listening on " "$T/$name.out" && break
    sleep 0.1
  done
  PORT=$(cat "$T/$name.port" 2>/dev/null)
  [ -n "$PORT" ] || { echo "FAIL: $name did not start"; cat "$T/$name.err"; exit 1; }
}

# ---- data and processes -------------------------------------------------------------------
mkdir -p "$T/www/v2/repo/blobs"
BLOB=$T/www/v2/repo/blobs/sha256:blob
head -c 4194304 /dev/urandom > "$BLOB"
echo "hello, small file" > "$T/www/small.txt"
SIZE=4194304
SUM=$(sha256sum < "$BLOB" | cut -d' ' -f1)

start origin --serve-dir "$T/www"
OPORT=$PORT
start proxy --upstream "http://127.0.0.1:$OPORT"
PPID_=$LASTPID
P=http://127.0.0.1:$PORT
BURL=$P/v2/repo/blobs/sha256:blob
SURL=$P/small.txt
expect_eq "stdout announces the port" "$(cat "$T/proxy.out")" "listening on 127.0.0.1:$PORT"

# A minimal origin that answers every GET with a chunked body (the serve-dir origin never does).
cat > "$T/chunked_origin.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(100):
            piece = (b"%05d:" % i) * 200
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
__import__("os").replace(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
EOF
"$PY" "$T/chunked_origin.py" "$T/chunked.port" 2> /dev/null & PIDS+=("$!")
for _ in $(seq 100); do [ -s "$T/chunked.port" ] && break; sleep 0.1; done
"$PY" -c '
import sys
sys.stdout.buffer.write(b"".join((b"%05d:" % i) * 200 for i in range(100)))' > "$T/chunked.want"

ctl() {  # ctl JSON [BASE_URL]: POST to the control endpoint (default: the proxy under test)
  curl -s -o "$T/ctl.out" -w '%{http_code}' -X POST --data "$1" "${2:-$P}/__proxy__/faults"
}
counter() {  # counter KEY[.KEY]: a counter from /__proxy__/stats of the proxy under test
  curl -s "$P/__proxy__/stats" | "$PY" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$1"
}
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
codes() {  # codes N URL: the status codes of N sequential requests, space-separated
  local out="" i
  for i in $(seq "$1"); do out="$out $(code "$2")"; done
  echo $out
}

# ---- help ---------------------------------------------------------------------------------
if "$PY" "$PROXY" --help > "$T/help" 2>&1 && grep -q "/__proxy__/faults" "$T/help"; then
  ok "--help works under $PY"; else bad "--help"; fi

# ---- pass-through -------------------------------------------------------------------------
expect_eq "GET passes the blob through unchanged" "$(curl -sf "$BURL" | sha256sum | cut -d' ' -f1)" "$SUM"
expect_eq "HEAD gives the Content-Length" \
  "$(curl -sfI "$BURL" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-length" { print $2 }')" "$SIZE"
expect_eq "404 passes through" "$(code "$P/nope")" "404"

curl -s -r 1000-1999 -D "$T/h" -o "$T/r" "$BURL"
expect_eq "Range: 206" "$(head -1 "$T/h" | awk '{ print $2 }')" "206"
expect_eq "Range: Content-Range" \
  "$(tr -d '\r' < "$T/h" | awk -F': ' 'tolower($1) == "content-range" { print $2 }')" "bytes 1000-1999/$SIZE"
dd if="$BLOB" of="$T/want" bs=1000 skip=1 count=1 status=none
if cmp -s "$T/r" "$T/want"; then ok "Range: bytes"; else bad "Range: bytes differ"; fi
curl -s -r -100 -o "$T/r" "$BURL"
tail -c 100 "$BLOB" > "$T/want"
if cmp -s "$T/r" "$T/want"; then ok "suffix Range: bytes"; else bad "suffix Range"; fi
expect_eq "unsatisfiable Range: 416" "$(code -r "$((SIZE + 10))-" "$BURL")" "416"

# 16 concurrent range requests of 256 KiB each
for i in $(seq 0 15); do
  curl -s -r "$((i * 262144))-$((i * 262144 + 262143))" -o "$T/part.$i" "$BURL" &
done
wait_all_curls() { local j; for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j";; esac; done; }
wait_all_curls
for i in $(seq 0 15); do cat "$T/part.$i"; done > "$T/joined"
if cmp -s "$T/joined" "$BLOB"; then ok "16 concurrent range requests reassemble the blob"
else bad "concurrent range requests"; fi

c0=$(counter connections); r0=$(counter requests)
curl -s -o /dev/null -o /dev/null "$SURL" "$SURL"
# (each counter query is a connection of its own: 2 more besides curl's)
expect_eq "keep-alive: 2 requests on 1 connection" \
  "$(( $(counter connections) - c0 - 2 )) $(( $(counter requests) - r0 ))" "1 2"

# uploads: the serve-dir origin answers the received body's length and sha256
up() { curl -s "$@" "$P/v2/repo/blobs/uploads/x" | "$PY" -c '
import json, sys; d = json.load(sys.stdin); print(d["method"], d["length"], d["sha256"])'; }
expect_eq "PUT with Content-Length" "$(up -X PUT --data-binary @"$BLOB")" "PUT $SIZE $SUM"
expect_eq "POST with a chunked body" \
  "$(up -H 'Transfer-Encoding: chunked' --data-binary @"$BLOB")" "POST $SIZE $SUM"
expect_eq "PATCH with Expect: 100-continue" \
  "$(up -X PATCH -H 'Expect: 100-continue' --data-binary @"$BLOB")" "PATCH $SIZE $SUM"

start proxy_chunked --upstream "http://127.0.0.1:$(cat "$T/chunked.port")"
CP=http://127.0.0.1:$PORT
curl -s -o "$T/got" "$CP/x"
if cmp -s "$T/got" "$T/chunked.want"; then ok "chunked response relayed"; else bad "chunked response"; fi

# ---- faults through the control endpoint ----------------------------------------------------
expect_eq "control: status500 on" "$(ctl '{"status500": {"every": 1}}')" "200"
expect_eq "status500 injected" "$(code "$BURL")" "500"
expect_eq "stats count status500" "$(counter faults.status500)" "1"
ctl '{"reset": true, "status503": "every=1,retry_after=2"}' > /dev/null
curl -s -D "$T/h" -o /dev/null "$BURL"
expect_eq "status503 with Retry-After" \
  "$(tr -d '\r' < "$T/h" | awk 'NR == 1 { print $2 } tolower($1) == "retry-after:" { print $2 }' | xargs)" "503 2"

ctl '{"reset": true, "status503": {"every": 3}}' > /dev/null
expect_eq "every=3" "$(codes 6 "$SURL")" "200 200 503 200 200 503"
ctl '{"reset": true, "status500": {"every": 1, "limit": 2}}' > /dev/null
expect_eq "limit=2" "$(codes 4 "$SURL")" "500 500 200 200"
ctl '{"reset": true}' > /dev/null
expect_eq "reset: faults off" "$(codes 3 "$BURL")" "200 200 200"

ctl '{"reset": true, "path_regex": "/blobs/", "status500": {"every": 1}}' > /dev/null
expect_eq "path_regex: only matching requests fail" "$(code "$SURL") $(code "$BURL")" "200 500"
ctl '{"reset": true, "status500": {"every": 1, "path_regex": "small"}}' > /dev/null
expect_eq "per-rule path regex" "$(code "$SURL") $(code "$BURL")" "500 200"

ctl '{"reset": true, "drop_before": {"every": 1}}' > /dev/null
rm -f "$T/got"; curl -s -o "$T/got" "$BURL"; rc=$?
expect_eq "drop_before: curl fails, nothing received" "$rc $(stat -c %s "$T/got" 2>/dev/null || echo 0)" "52 0"

ctl '{"reset": true, "truncate": {"every": 1, "after_bytes": 100000}}' > /dev/null
curl -s -o "$T/got" "$BURL"; rc=$?
head -c 100000 "$BLOB" > "$T/want"
expect_eq "truncate: curl reports a partial transfer (18)" "$rc" "18"
if cmp -s "$T/got" "$T/want"; then ok "truncate: the 100000 bytes received are correct"
else bad "truncate: received $(stat -c %s "$T/got") bytes or wrong bytes"; fi
ctl '{"reset": true, "truncate": {"every": 1}}' > /dev/null
curl -s -r 1000-1999 -o "$T/got" "$BURL"; rc=$?
expect_eq "truncate a range (default: half the body)" "$rc $(stat -c %s "$T/got")" "18 500"
ctl '{"truncate": {"every": 1, "after_bytes": 5000}}' "$CP" > /dev/null
rm -f "$T/got"; curl -s -o "$T/got" "$CP/x"; rc=$?
head -c 5000 "$T/chunked.want" > "$T/want"
expect_eq "truncate a chunked response: curl reports 18" "$rc" "18"
if cmp -s "$T/got" "$T/want"; then ok "truncate a chunked response: the 5000 bytes received are correct"
else bad "truncate a chunked response: got $(stat -c %s "$T/got") bytes"; fi
t0=$(counter faults.truncate)
curl -sI -o /dev/null "$BURL"
expect_eq "truncate is not applied (nor counted) on HEAD" "$(counter faults.truncate)" "$t0"

ctl '{"reset": true, "corrupt": {"every": 1}}' > /dev/null
curl -s -o "$T/got" "$BURL"; rc=$?
expect_eq "corrupt: same length, exactly one byte flipped" \
  "$rc $(stat -c %s "$T/got") $(cmp -l "$T/got" "$BLOB" | wc -l)" "0 $SIZE 1"
expect_eq "stats count corrupt" "$(counter faults.corrupt)" "1"

ctl '{"reset": true, "blackhole": {"every": 1}}' > /dev/null
curl -s -o /dev/null --max-time 1 "$BURL"; rc=$?
expect_eq "blackhole: curl times out (28)" "$rc" "28"
ctl '{"reset": true, "refuse": {"every": 1}}' > /dev/null
curl -s -o /dev/null "$BURL"; rc=$?
if [ "$rc" = 52 ] || [ "$rc" = 56 ]; then ok "refuse: curl fails ($rc)"; else bad "refuse: curl rc $rc"; fi
expect_eq "stats count blackhole and refuse" "$(counter faults.blackhole) $(counter faults.refuse)" "1 1"
ctl '{"reset": true}' > /dev/null
expect_eq "proxy healthy after the faults" "$(curl -sf "$BURL" | sha256sum | cut -d' ' -f1)" "$SUM"

# seeded probabilities are reproducible
ctl '{"reset": true, "seed": 7, "status503": {"p": 0.5}}' > /dev/null
a=$(codes 16 "$SURL")
ctl '{"reset": true, "seed": 7, "status503": {"p": 0.5}}' > /dev/null
b=$(codes 16 "$SURL")
expect_eq "same seed, same fault sequence" "$a" "$b"
case "$a" in *200*503*|*503*200*) ok "p=0.5 gives a mix ($a)";; *) bad "p=0.5 gave '$a'";; esac

# bad control requests change nothing
ctl '{"reset": true, "status500": {"every": 1}}' > /dev/null
expect_eq "invalid JSON: 400" "$(ctl '{"status503": ')" "400"
expect_eq "unknown key: 400" "$(ctl '{"status599": 1}')" "400"
expect_eq "bad value: 400" "$(ctl '{"truncate": {"p": 2}}')" "400"
expect_eq "configuration unchanged after 400s" "$(code "$SURL")" "500"
ctl '{"reset": true}' > /dev/null

# ---- timing: delay, latency, bandwidth ------------------------------------------------------
ctl '{"delay": {"every": 1, "ms": 700}}' > /dev/null
t=$(now); code "$SURL" > /dev/null
at_least "delay ms=700" "$t" 0.6
ctl '{"delay": null, "latency_ms": 400}' > /dev/null
t=$(now); code "$SURL" > /dev/null
at_least "latency_ms=400" "$t" 0.35
ctl '{"latency_ms": 0, "rate_mbit": 40}' > /dev/null
t=$(now); got=$(curl -sf "$BURL" | sha256sum | cut -d' ' -f1)
ideal=$(awk -v n="$SIZE" 'BEGIN { printf "%.3f", n * 8 / 40e6 }')
at_least "40 Mbit/s cap on 4 MiB (ideal ${ideal}s)" "$t" "$(awk -v i="$ideal" 'BEGIN { print 0.7 * i }')"
expect_eq "rate-limited bytes are intact" "$got" "$SUM"
t=$(now)
curl -sf -o "$T/c1" "$BURL" & c1=$!
curl -sf -o "$T/c2" "$BURL" & c2=$!
wait $c1 $c2
at_least "the cap is shared: 2 x 4 MiB at 40 Mbit/s" "$t" "$(awk -v i="$ideal" 'BEGIN { print 1.4 * i }')"
if cmp -s "$T/c1" "$BLOB" && cmp -s "$T/c2" "$BLOB"; then ok "concurrent throttled bytes intact"
else bad "concurrent throttled transfers"; fi
ctl '{"rate_mbit": 0}' > /dev/null

# ---- stats ------------------------------------------------------------------------------------
curl -s "$P/__proxy__/stats" > "$T/stats"
"$PY" - "$T/stats" "$SIZE" <<'EOF' && ok "stats: requests, bytes, status and fault counters" || bad "stats: $(cat "$T/stats")"
import json, sys
s = json.load(open(sys.argv[1]))
size = int(sys.argv[2])
assert s["requests"] > 50, s["requests"]
assert s["bytes_down"] > 5 * size, s["bytes_down"]
assert s["bytes_up"] >= 3 * size, s["bytes_up"]
assert s["status"]["500"] >= 5 and s["status"]["503"] >= 3 and s["status"]["206"] >= 16
for kind in ("status500", "status503", "drop_before", "truncate", "corrupt", "delay",
             "blackhole", "refuse"):
    assert s["faults"][kind] >= 1, kind
assert s["faults_total"] == sum(s["faults"].values())
EOF
curl -s -X POST -o /dev/null "$P/__proxy__/stats/reset"
expect_eq "stats/reset zeroes the counters" "$(counter requests) $(counter faults_total)" "0 0"

# ---- faults and shaping from the command line; SIGINT -----------------------------------------
start flags --upstream "http://127.0.0.1:$OPORT" --status503 every=2 --retry-after 3 --seed 1 \
  --latency-ms 200 --path-regex /blobs/
F=http://127.0.0.1:$PORT
FPID=$LASTPID
t=$(now)
expect_eq "flags: every=2 limited to /blobs/" \
  "$(code "$F/small.txt") $(code "$F/small.txt") $(code "$F/v2/repo/blobs/sha256:blob") $(code "$F/v2/repo/blobs/sha256:blob")" \
  "200 200 200 503"
at_least "flags: --latency-ms 200 on 4 requests" "$t" 0.7
curl -s -D "$T/h" -o /dev/null "$F/v2/repo/blobs/sha256:blob"
curl -s -D "$T/h" -o /dev/null "$F/v2/repo/blobs/sha256:blob"
expect_eq "flags: --retry-after" \
  "$(tr -d '\r' < "$T/h" | awk 'tolower($1) == "retry-after:" { print $2 }')" "3"
if "$PY" "$PROXY" --upstream http://x --truncate every=x > /dev/null 2>&1; then
  bad "a bad SPEC is rejected"; else ok "a bad SPEC is rejected"; fi
kill -INT "$FPID"
for _ in $(seq 50); do kill -0 "$FPID" 2>/dev/null || break; sleep 0.1; done
wait "$FPID"; rc=$?
expect_eq "SIGINT: exits with 0" "$rc" "0"

# ---- SIGTERM with a blackholed request in flight ----------------------------------------------
ctl '{"reset": true, "blackhole": {"every": 1}}' > /dev/null
curl -s -o /dev/null --max-time 30 "$BURL" & hung=$!
sleep 0.5
t=$(now)
kill -TERM "$PPID_"
for _ in $(seq 50); do kill -0 "$PPID_" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PPID_" 2>/dev/null; then bad "SIGTERM: still running after 5 s"; fi
wait "$PPID_"; rc=$?
expect_eq "SIGTERM: exits with 0" "$rc" "0"
wait "$hung"; rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 28 ]; then ok "SIGTERM: the hung client is released (curl $rc)"
else bad "SIGTERM: hung client rc $rc"; fi

for f in "$T"/*.err; do
  if grep -q Traceback "$f"; then bad "$(basename "$f" .err) logged an exception:"; cat "$f"; fi
done
echo "== $pass passed, $fail failed in $(awk -v a="$START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
[ "$fail" = 0 ]
