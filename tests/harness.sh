# Shared by the shell integration tests (nbd_clients_test.sh, lazy_test.sh,
# auth_redirect_test.sh): PASS/FAIL counting and `ovbd serve` start/stop.
# Source it after setting OVBD (the binary) and T (the test's scratch directory).

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() {  # check DESCRIPTION COMMAND...: PASS if COMMAND succeeds, else FAIL with its output
  local what=$1; shift
  if "$@" > "$T/check.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/    /' "$T/check.log" | tail -20; fi
}

# start NAME ARGS...: `ovbd serve` on $T/NAME.sock, waiting for its ready line. Sets SOCK, URI,
# CTL (the control socket) and SERVER_PID; on failure counts a FAIL and returns 1.
start() {
  local name=$1; shift
  SOCK="$T/$name.sock"
  URI="nbd+unix:///?socket=$SOCK"
  CTL="$SOCK.ctl"
  "$OVBD" serve --socket "$SOCK" "$@" > "$T/$name.out" 2> "$T/$name.err" &
  SERVER_PID=$!
  for _ in $(seq 1 400); do
    grep -q '^serving ' "$T/$name.out" 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  bad "$name: server did not start"; cat "$T/$name.err"; SERVER_PID=""; return 1
}
# stop: SIGTERM; returns the server's exit code (0 = in-flight requests finished, upper flushed).
stop() {
  [ -n "$SERVER_PID" ] || return 1
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  return $rc
}
# status_field KEY: a top-level field of `ovbd ctl $CTL status` (the server last started).
status_field() {
  "$OVBD" ctl "$CTL" status | "${PY:-/usr/bin/python3}" -c "import json, sys; print(json.load(sys.stdin)['$1'])"
}
# status_is KEY VALUE: succeeds when that field equals VALUE, else says what it is.
status_is() {
  local got
  got=$(status_field "$1") || return 1
  [ "$got" = "$2" ] || { echo "$1 is $got, expected $2"; return 1; }
}
# summary NAME: prints the counts; the exit status is 0 only if nothing failed.
summary() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
