#!/usr/bin/env bash
# Issue 11, "no lock-out": `ovbd serve` keeps serving good clients while 1,000 sockets that never
# say a word and a slow-loris client (one byte per 100 ms) sit in the handshake. The idle sockets
# are evicted or timed out, `ovbd ctl status` counts them, no thread is left behind; over TCP as
# well, where a full --max-connections refuses newcomers until a client leaves.
#
# usage: nbd_lockout_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a tool is missing; the reason is printed).
set -u

OVBD=${1:?usage: nbd_lockout_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: nbd_lockout_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENTS="$HERE/nbd_lockout_clients.py"
TIMEOUT=2     # --handshake-timeout, seconds
IDLE=1000     # idle sockets per flood

command -v nbdinfo >/dev/null || { echo "SKIP: nbdinfo not found (scripts/install-deps.sh installs it)"; exit 77; }
[ -x "$PY" ] && "$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge $((IDLE + 200)) ] ||
  { echo "SKIP: hard RLIMIT_NOFILE $(ulimit -Hn) is below $((IDLE + 200))"; exit 77; }
ulimit -Sn "$(ulimit -Hn)"  # the flood helper and the server both need more than 1024
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-lockout.XXXXXX")
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

# wait_file FILE: up to 30 s for FILE to exist.
wait_file() {
  for _ in $(seq 1 600); do [ -e "$1" ] && return 0; sleep 0.05; done
  return 1
}
# status_ok CTL PYTHON_EXPR: polls `ovbd ctl CTL status` (up to 10 s) until PYTHON_EXPR, over the
# status JSON `s` and its connections object `c`, holds; prints the last status if it never does.
status_ok() {
  local ctl=$1 expr=$2
  for _ in $(seq 1 100); do
    "$OVBD" ctl "$ctl" status > "$T/status.json" 2>&1 &&
      "$PY" -c "import json, sys; s = json.load(open('$T/status.json')); c = s['connections']; sys.exit(0 if ($expr) else 1)" &&
      return 0
    sleep 0.1
  done
  echo "never: $expr"; cat "$T/status.json"; return 1
}
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
# threads_back PID N: up to 5 s for the server to be back at N threads.
threads_back() {
  for _ in $(seq 1 100); do [ "$(threads "$1")" -le "$2" ] && return 0; sleep 0.05; done
  echo "threads: $(threads "$1"), expected $2"; return 1
}
# json_ok FILE PYTHON_EXPR: the helper's JSON report `r` satisfies PYTHON_EXPR.
json_ok() { cat "$1"; "$PY" -c "import json, sys; r = json.loads(open('$1').read().splitlines()[-1]); sys.exit(0 if ($2) else 1)"; }

# background NAME ARGS...: a helper run in the background, its report in $T/NAME.json.
background() {
  local name=$1; shift
  "$PY" "$CLIENTS" "$@" > "$T/$name.json" 2> "$T/$name.err" &
  HELPERS+=($!)
  LAST=$!
}

"$OVBD" cat -q -o "$T/want" "$VEC/layer0.lsmt" || { echo "FAIL: ovbd cat"; exit 1; }

# attack ADDR URI ROUNDS NAME: a flood of $IDLE idle sockets and a slow loris while a good client
# is checked every 0.5 s for ROUNDS rounds; counts PASS/FAIL.
attack() {
  local addr=$1 uri=$2 rounds=$3 name=$4
  rm -f "$T/$name.ready"
  background "$name-flood" flood "$addr" "$IDLE" "$T/$name.ready"
  local flood=$LAST
  wait_file "$T/$name.ready" || { bad "$name: the flood did not open its sockets"; cat "$T/$name-flood.err"; return; }
  background "$name-loris" loris "$addr"
  local loris=$LAST
  check "$name: a good client is served every 0.5 s, each time within ${TIMEOUT} s" \
    bash -c "'$PY' '$CLIENTS' good '$uri' '$T/want' $rounds 0.5 $TIMEOUT > '$T/$name-good.json'"
  sed 's/^/    good: /' "$T/$name-good.json"
  wait "$flood"; local flood_rc=$?
  wait "$loris"; local loris_rc=$?
  check "$name: the server closed all $IDLE idle sockets, none later than ${TIMEOUT} s + 2 s" \
    json_ok "$T/$name-flood.json" "$flood_rc == 0 and r['closed'] == $IDLE and r['max_s'] < $TIMEOUT + 2"
  check "$name: the slow loris was cut off at the deadline, after trickling bytes" \
    json_ok "$T/$name-loris.json" "$loris_rc == 0 and r['closed'] and r['sent'] >= 10 and $TIMEOUT - 0.2 < r['lifetime_s'] < $TIMEOUT + 2"
  echo "    flood: $(tail -1 "$T/$name-flood.json")"
  echo "    loris: $(tail -1 "$T/$name-loris.json")"
}
# connections CTL: prints the status's connections object (for the log).
connections() { "$OVBD" ctl "$1" status | "$PY" -c "import json, sys; print('    connections:', json.load(sys.stdin)['connections'])"; }

# ---- 1. Unix socket: flood, loris, good client; counters; no thread left -------------------------
if start unix "$VEC/layer0.lsmt" --handshake-timeout "$TIMEOUT"; then
  "$PY" "$CLIENTS" good "$URI" "$T/want" 1 0 "$TIMEOUT" > /dev/null  # 2 connections; the pool is up
  sleep 0.3
  base_threads=$(threads "$SERVER_PID")
  attack "unix:$SOCK" "$URI" 12 unix
  # Every idle socket and the loris ended by eviction or timeout; good clients by neither. The
  # total: the attackers, plus 2 connections (libnbd, nbdinfo) in each of 1 + 12 good rounds.
  check "unix: status counts evictions and handshake timeouts of all $((IDLE + 1)) attackers; nothing refused" \
    status_ok "$CTL" "c['negotiating'] == 0 and c['open'] == 0 and c['evicted'] >= $IDLE - 128 and
      c['handshake_timeouts'] >= 2 and c['evicted'] + c['handshake_timeouts'] == $IDLE + 1 and
      c['refused'] == 0 and c['go_refused'] == 0 and s['clients'] == 0 and c['total'] == s['connections_total'] == $IDLE + 1 + 26"
  connections "$CTL"
  check "unix: the server is back to its $base_threads threads" threads_back "$SERVER_PID" "$base_threads"
  check "unix: stop exits 0" stop
fi

# ---- 2. TCP: the same attack on a TCP listener; a full --max-connections refuses, then recovers --
"$OVBD" serve --listen 127.0.0.1:0 --control "$T/tcp.ctl" --handshake-timeout "$TIMEOUT" --max-connections 3 \
  "$VEC/layer0.lsmt" > "$T/tcp.out" 2> "$T/tcp.err" &
SERVER_PID=$!
port=""
for _ in $(seq 1 400); do
  port=$(sed -n 's|^serving nbd://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$T/tcp.out" 2>/dev/null)
  [ -n "$port" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ]; then
  bad "tcp: server did not start"; cat "$T/tcp.err"; SERVER_PID=""
else
  TURI="nbd://127.0.0.1:$port/"
  attack "tcp:127.0.0.1:$port" "$TURI" 8 tcp
  check "tcp: status counts the attackers; negotiating back to 0" \
    status_ok "$T/tcp.ctl" "c['negotiating'] == 0 and c['evicted'] + c['handshake_timeouts'] == $IDLE + 1 and c['refused'] == 0"
  connections "$T/tcp.ctl"
  rm -f "$T/hold.ready"
  background hold hold "$TURI" 3 "$T/hold.ready"
  holder=$LAST
  if wait_file "$T/hold.ready"; then
    check "tcp: with --max-connections 3 clients in transmission, a 4th is refused" bash -c "! nbdinfo --size '$TURI'"
    check "tcp: status counts it as refused" status_ok "$T/tcp.ctl" "c['refused'] == 1 and c['transmitting'] == 3"
    kill "$holder"; wait "$holder" 2>/dev/null
    check "tcp: once they left, transmission is free again" status_ok "$T/tcp.ctl" "c['transmitting'] == 0 and c['open'] == 0"
    check "tcp: and a client is served again" nbdinfo --size "$TURI"
  else
    bad "tcp: the holding clients did not connect"; cat "$T/hold.err"
  fi
  check "tcp: stop exits 0" stop
fi

summary nbd_lockout
