#!/usr/bin/env bash
# bench/lifecycle_bench.sh — online lifecycle benchmark (issue 12 §5): what a snapshot and a
# merge of a served image cost its clients. Every ratio compares numbers of ONE invocation.
#
#   (a) snapshot write pause. `ovbd serve --config` of a 2 GiB image whose writable layer holds
#       1 GiB (fio --rw=write --bs=1M over [0, 1 GiB), then `ovbd ctl flush`). Two windows of
#       WINDOW seconds of fio --ioengine=nbd 4 KiB random writes at iodepth 8 over [0, 1 GiB):
#         base  no snapshot
#         snap  the same, with `ovbd ctl S.ctl snapshot` started at WINDOW/2
#       base runs first, so both windows run on an upper with >= 1 GiB in it; each window starts
#       after an `ovbd ctl flush` (no dirty data left from before). Shown per window:
#       IOPS, completion latency (fio clat) p99 / p99.9 / max of the whole window, the max clat
#       of the writes that completed while the snapshot call ran ([call start, call end + 50 ms],
#       from fio's per-I/O latency log; for base the same interval relative to fio's start),
#       writes over 10 ms, the snapshot step in which that slowest write completed (from the
#       reply's timeline; "after" = in the 50 ms after the reply), and the snapshot reply's
#       write_pause_ms and the call's wall time.
#       ROUNDS rounds, each on a fresh image (serve restarted).
#   (b) merge. A 1 GiB image: three times { fio 64 KiB random writes, io_size 256 MiB, seed per
#       layer; ctl flush; ctl snapshot } gives lowers 0..2 of 256 MiB each (partly overlapping:
#       the merged layer holds ~590 MiB). Per round (order alternating):
#         offline   ovbd merge -q --sync -o off.lsmt L0 L1 L2   (the baseline: --sync because the
#                   online merge makes its output durable before the swap; without --sync: info)
#         online    ovbd ctl S.ctl merge --from 0 --to 2 --keep  (wall time of the call, which
#                   waits for the swap), no client I/O
#         reader    fio --ioengine=nbd 64 KiB random reads, iodepth 8, time based, over the whole
#                   device: READER_IDLE s idle, then the same online merge, then stopped (SIGINT).
#                   Throughput = bytes completed during the merge call / its duration, against
#                   the bytes completed in the 3 s before it (from fio's per-I/O latency log).
#       After each online merge serve is stopped, the saved manifest (3 lowers) put back and serve
#       restarted: --keep leaves the layer files. Round 1 also checks the content: the offline
#       output, the online merged layer and the served device are compared (ovbd cat / nbdcopy).
#   goals     (a) max clat during the snapshot call < 10 ms, in every round (the window max is
#                 shown beside it for both windows);
#             (b) online / offline merge time <= 1.25x and reader throughput during the merge /
#                 idle >= 0.5x, median of the rounds (every round listed).
#   cache     everything stays in the page cache (24 GiB RAM); data on disk in DIR, not tmpfs.
#
# Usage: bench/lifecycle_bench.sh [--build DIR] [--dir DIR] [--rounds N] [--window S]
#                                 [--no-build] [--md FILE]
#   --build DIR   build tree (default build/release; configured like bench/run.sh if missing)
#   --dir DIR     data directory on disk (default /var/tmp/ovbd-bench/lifecycle; refused on tmpfs)
#   --rounds N    rounds of (a) and of (b) (default 3)
#   --window S    seconds of each (a) window (default 10)
#   --quick       1 round, 6 s windows
#   --no-build    use the existing binary (it is copied to DIR first: a rebuild during the run
#                 cannot mix two binaries)
#   --md FILE     also write the markdown report to FILE
# Output: a markdown report on stdout (logs on stderr), also DIR/results/lifecycle_bench.md.
# Exit 0 when everything ran (goals may FAIL: the report says so), 1 when something could not
# run or the merged content differs. About 2.5 minutes with the defaults on 2 cores.
set -euo pipefail
export PATH=/usr/bin:$PATH

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/release
DIR=/var/tmp/ovbd-bench/lifecycle
ROUNDS=3
WINDOW=10
READER_IDLE=4
NO_BUILD=0
MD_OUT=""

die() { echo "bench/lifecycle_bench.sh: $*" >&2; exit 1; }
log() { echo "[lifecycle-bench] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --quick) ROUNDS=1; WINDOW=6; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --md) MD_OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case "$DIR" in /*) ;; *) DIR=$PWD/$DIR ;; esac
[[ $WINDOW -ge 4 ]] || die "--window must be at least 4 seconds"
for tool in fio nbdcopy jq awk cmp; do command -v "$tool" >/dev/null || die "$tool is required"; done
[[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 is required"

# ---- build and binary -------------------------------------------------------------------------
if [[ $NO_BUILD == 0 ]]; then
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    log "configuring $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOVBD_BUILD_TESTS=OFF >&2 \
      || die "configure failed"
  fi
  log "building ovbd in $BUILD"
  cmake --build "$BUILD" -j 2 --target ovbd >&2 || die "build failed"
fi
[[ -x $BUILD/src/cli/ovbd ]] || die "$BUILD/src/cli/ovbd missing (drop --no-build?)"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "WARNING: $BUILD is a '$build_type' build, not Release"

mkdir -p "$DIR"
[[ $(stat -f -c %T "$DIR") != tmpfs ]] || die "$DIR is on tmpfs; use --dir on a disk"
OUT=$DIR/results
mkdir -p "$OUT" "$DIR/bin"
{ cp "$BUILD/src/cli/ovbd" "$DIR/bin/ovbd.tmp" && mv "$DIR/bin/ovbd.tmp" "$DIR/bin/ovbd"; } \
  || die "cannot copy the ovbd binary"
OVBD=$DIR/bin/ovbd
BIN_INFO="$BUILD/src/cli/ovbd built $(date -u -r "$BUILD/src/cli/ovbd" '+%Y-%m-%d %H:%M UTC'); tree $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"

SOCK=$DIR/s.sock
CTL=$SOCK.ctl
PIDF=$DIR/serve.pid
URI="nbd+unix:///?socket=$SOCK"
FAILED_TO_RUN=0

# ---- server and client processes (stopped on exit) ----------------------------------------------
SERVER_PID=""
FIO_PID=""
cleanup() {
  local p
  for p in $FIO_PID $SERVER_PID; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  rm -f "$SOCK" "$CTL"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {  # IMAGE_DIR LOG_NAME: serve IMAGE_DIR/config.v1.json until its pid file appears
  rm -f "$SOCK" "$CTL" "$PIDF"
  "$OVBD" serve -q --config "$1/config.v1.json" --socket "$SOCK" --pid-file "$PIDF" \
    >"$OUT/serve-$2.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    [[ -s $PIDF ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { log "serve exited: $(tail -3 "$OUT/serve-$2.log")"; return 1; }
    sleep 0.05
  done
  log "serve not ready after 10 s: $(tail -3 "$OUT/serve-$2.log")"; return 1
}
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -f "$SOCK" "$CTL"
}
ctl() { "$OVBD" ctl "$CTL" "$@"; }
now_ms() { date +%s%3N; }
# fio_ok JSON: fio's JSON (after any banner line) has no job error
fio_ok() { [[ $(sed -n '/^{/,$p' "$1" | jq '[.jobs[].error] | max') == 0 ]]; }

# lat_stats LOG FROM_MS TO_MS: from a fio per-I/O latency log (epoch ms, nsec, dir, bytes):
# "count bytes max_ms over10ms stalls" of the I/Os completed in [FROM_MS, TO_MS]; stalls =
# episodes of I/Os over 50 ms (completions less than 100 ms apart count as one episode)
lat_stats() {
  /usr/bin/python3 - "$@" <<'EOF'
import sys
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = nbytes = over = stalls = 0
mx = 0
last_stall = None
with open(path) as f:
    for line in f:
        p = line.split(",")
        t = int(p[0])
        if lo <= t <= hi:
            ns = int(p[1])
            n += 1
            nbytes += int(p[3])
            mx = max(mx, ns)
            if ns > 10_000_000:
                over += 1
            if ns > 50_000_000:
                if last_stall is None or t - last_stall > 100:
                    stalls += 1
                last_stall = t
print(n, nbytes, f"{mx / 1e6:.3f}", over, stalls)
EOF
}

# worst_step SNAPSHOT_REPLY LOG FROM_MS TO_MS: the snapshot step (the reply's timeline) in which
# the slowest I/O completed in [FROM_MS, TO_MS] ended ("after" once the call had returned)
worst_step() {
  /usr/bin/python3 - "$@" <<'EOF'
import json, sys
reply, path, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    timeline = json.load(open(reply))["timeline"]
except (OSError, ValueError, KeyError):
    print("n/a"); sys.exit(0)
start, steps = timeline["start_unix_ms"], timeline["steps"]
worst_t, worst = None, -1
with open(path) as f:
    for line in f:
        p = line.split(",")
        t, ns = int(p[0]), int(p[1])
        if lo <= t <= hi and ns > worst:
            worst_t, worst = t, ns
if worst_t is None:
    print("n/a"); sys.exit(0)
name = "after"
for s in steps:
    if worst_t - start <= s["end_ms"]:
        name = s["step"]; break
print(name)
EOF
}

# ---- (a) snapshot write pause -------------------------------------------------------------------
declare -A R   # results: KEY -> value
A=$DIR/a
FILL_CMD=(fio --name=fill --ioengine=nbd "--uri=$URI" --rw=write --bs=1M --iodepth=8 --size=1g
          --output-format=json)
win_cmd() {  # NAME -> WIN array
  WIN=(fio --name=w --ioengine=nbd "--uri=$URI" --rw=randwrite --bs=4k --iodepth=8 --size=1g
       --time_based "--runtime=$WINDOW" --randrepeat=0 --randseed=1212
       --percentile_list=50:99:99.9:99.99 "--write_lat_log=$OUT/$1" --log_avg_msec=0
       --log_unix_epoch=1 --output-format=json "--output=$OUT/$1.json")
}
HALF=$(awk -v w="$WINDOW" 'BEGIN { print w / 2 }')

run_window() {  # ROUND KIND(base|snap)
  local r=$1 kind=$2 name="a$1-$2" launch t0 t1
  win_cmd "$name"
  ctl flush >/dev/null || { log "ERROR: ctl flush failed"; FAILED_TO_RUN=1; }  # both windows start clean
  launch=$(now_ms)
  "${WIN[@]}" >/dev/null 2>"$OUT/$name.err" &
  FIO_PID=$!
  sleep "$HALF"
  t0=$(now_ms)
  if [[ $kind == snap ]]; then
    if ! ctl snapshot --name "r$r" >"$OUT/$name.snapshot.json" 2>"$OUT/$name.snapshot.err"; then
      log "ERROR: snapshot failed: $(cat "$OUT/$name.snapshot.json" "$OUT/$name.snapshot.err" | tail -3)"
      FAILED_TO_RUN=1
    fi
  fi
  t1=$(now_ms)
  wait "$FIO_PID" || { log "ERROR: fio $name failed: $(tail -2 "$OUT/$name.err")"; FAILED_TO_RUN=1; }
  FIO_PID=""
  fio_ok "$OUT/$name.json" || { log "ERROR: fio $name reported an error"; FAILED_TO_RUN=1; return 1; }
  R[$name:launch]=$launch; R[$name:t0]=$t0; R[$name:t1]=$t1
  local w
  w=$(sed -n '/^{/,$p' "$OUT/$name.json" | jq -r '.jobs[0].write |
      "\(.iops) \(.clat_ns.percentile["99.000000"]) \(.clat_ns.percentile["99.900000"]) \(.clat_ns.max)"')
  read -r "R[$name:iops]" "R[$name:p99]" "R[$name:p999]" "R[$name:max]" <<<"$w"
  read -r _ _ _ "R[$name:over10]" "R[$name:stalls]" <<<"$(lat_stats "$OUT/${name}_clat.1.log" 0 99999999999999)"
  if [[ $kind == snap ]]; then
    R[$name:pause]=$(jq -r '.write_pause_ms' "$OUT/$name.snapshot.json" 2>/dev/null || echo "")
    R[$name:call]=$((t1 - t0))
  fi
}

part_a() {
  local r
  for r in $(seq 1 "$ROUNDS"); do
    log "(a) round $r/$ROUNDS: fresh 2 GiB image, 1 GiB written to the upper, 2 windows of ${WINDOW}s"
    rm -rf "$A"; mkdir -p "$A"
    "$OVBD" create --size 2G "$A/up.data" "$A/up.index" >/dev/null
    echo '{"upper": {"data": "up.data", "index": "up.index"}}' >"$A/config.v1.json"
    start_server "$A" "a$r" || { FAILED_TO_RUN=1; return; }
    "${FILL_CMD[@]}" >"$OUT/a$r-fill.json" 2>"$OUT/a$r-fill.err" && fio_ok "$OUT/a$r-fill.json" \
      || { log "ERROR: fill failed: $(tail -2 "$OUT/a$r-fill.err")"; FAILED_TO_RUN=1; stop_server; return; }
    run_window "$r" base || { stop_server; return; }
    run_window "$r" snap || { stop_server; return; }
    # the snapshot call's interval, and the same interval (relative to fio's start) in base
    local b="a$r-base" s="a$r-snap" off0 off1 st
    off0=$(( ${R[$s:t0]} - ${R[$s:launch]} )); off1=$(( ${R[$s:t1]} - ${R[$s:launch]} + 50 ))
    st=$(lat_stats "$OUT/${s}_clat.1.log" "${R[$s:t0]}" $(( ${R[$s:t1]} + 50 )))
    read -r "R[$s:in_n]" _ "R[$s:in_max]" "R[$s:in_over]" _ <<<"$st"
    R[$s:in_step]=$(worst_step "$OUT/$s.snapshot.json" "$OUT/${s}_clat.1.log" "${R[$s:t0]}" $(( ${R[$s:t1]} + 50 )))
    st=$(lat_stats "$OUT/${b}_clat.1.log" $(( ${R[$b:launch]} + off0 )) $(( ${R[$b:launch]} + off1 )))
    read -r "R[$b:in_n]" _ "R[$b:in_max]" "R[$b:in_over]" _ <<<"$st"
    stop_server
    rm -f "$OUT"/a"$r"-*_lat.1.log "$OUT"/a"$r"-*_slat.1.log
    gzip -f "$OUT"/a"$r"-*_clat.1.log
    rm -rf "$A"
  done
}

# ---- (b) merge -----------------------------------------------------------------------------------
B=$DIR/b
LOWERS=()
layer_cmd() {  # K -> LAYER array
  LAYER=(fio "--name=l$1" --ioengine=nbd "--uri=$URI" --rw=randwrite --bs=64k --iodepth=8 --size=1g
         --io_size=256m --randrepeat=0 "--randseed=$((1200 + $1))" --output-format=json)
}
READER=(fio --name=reader --ioengine=nbd "--uri=$URI" --rw=randread --bs=64k --iodepth=8 --size=1g
        --time_based --runtime=600 --randrepeat=0 --randseed=1299 --log_avg_msec=0 --log_unix_epoch=1
        --output-format=json)
MERGE_ARGS=(merge --from 0 --to 2 --keep)

restore_stack() {  # back to the saved manifest with lowers 0..2
  stop_server
  rm -f "$B"/ovbd-merged-*
  cp "$B/config.saved.json" "$B/config.v1.json"
  start_server "$B" "b-$1" || return 1
  [[ $(ctl status | jq '.layers | length') == 3 ]] || { log "ERROR: restored stack does not have 3 layers"; return 1; }
}

timed_s() {  # CMD...: wall seconds of CMD (stdout to $OUT/last.out); fails if CMD fails
  local t0 t1
  t0=$(date +%s%N)
  "$@" >"$OUT/last.out" 2>"$OUT/last.err" || { log "ERROR: $* failed: $(tail -3 "$OUT/last.out" "$OUT/last.err")"; return 1; }
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}

build_layers() {
  log "(b) building lowers 0..2 (3 x 256 MiB of 64 KiB random writes, each then snapshotted)"
  rm -rf "$B"; mkdir -p "$B"
  "$OVBD" create --size 1G "$B/up.data" "$B/up.index" >/dev/null
  echo '{"upper": {"data": "up.data", "index": "up.index"}}' >"$B/config.v1.json"
  start_server "$B" b-build || return 1
  local k
  for k in 0 1 2; do
    layer_cmd "$k"
    "${LAYER[@]}" >"$OUT/b-layer$k.json" 2>"$OUT/b-layer$k.err" && fio_ok "$OUT/b-layer$k.json" \
      || { log "ERROR: writing layer $k failed"; return 1; }
    ctl flush >/dev/null && ctl snapshot --name "l$k" >"$OUT/b-snapshot$k.json" \
      || { log "ERROR: snapshot l$k failed"; return 1; }
  done
  cp "$B/config.v1.json" "$B/config.saved.json"
  mapfile -t LOWERS < <(jq -r --arg d "$B" '.lowers[].file | if startswith("/") then . else $d + "/" + . end' "$B/config.saved.json")
  [[ ${#LOWERS[@]} == 3 ]] || { log "ERROR: expected 3 lowers, have ${#LOWERS[@]}"; return 1; }
  R[b:layer_bytes]=$(stat -c %s "${LOWERS[@]}" | tr '\n' ' ')
  cat "${LOWERS[@]}" >/dev/null
}

offline_merge() {  # ROUND
  local r=$1 t
  rm -f "$B/off.lsmt"
  t=$(timed_s "$OVBD" merge -q --sync -o "$B/off.lsmt" "${LOWERS[@]}") || return 1
  R[b$r:off_sync]=$t
  R[b:merged_bytes]=$(stat -c %s "$B/off.lsmt")
  if [[ $r == 1 ]]; then cp "$B/off.lsmt" "$B/check.lsmt"; fi
  rm -f "$B/off.lsmt"
  t=$(timed_s "$OVBD" merge -q -o "$B/off.lsmt" "${LOWERS[@]}") || return 1
  R[b$r:off_nosync]=$t
  rm -f "$B/off.lsmt"
  sync
}

online_merge() {  # ROUND
  local r=$1 t merged
  t=$(timed_s ctl "${MERGE_ARGS[@]}") || return 1
  [[ $(jq -r .ok "$OUT/last.out") == true ]] || { log "ERROR: merge reply: $(cat "$OUT/last.out")"; return 1; }
  R[b$r:online]=$t
  if [[ $r == 1 ]]; then
    log "(b) checking content: offline merge = online merged layer = served device"
    merged=$(jq -r .layer.path "$OUT/last.out")
    cmp <("$OVBD" cat "$B/check.lsmt") <("$OVBD" cat "$merged") \
      || { log "ERROR: offline and online merge differ"; FAILED_TO_RUN=1; }
    cmp <("$OVBD" cat "$B/check.lsmt") <(nbdcopy "$URI" -) \
      || { log "ERROR: served device differs from the offline merge"; FAILED_TO_RUN=1; }
    rm -f "$B/check.lsmt"
  fi
  restore_stack "$r-online"
}

reader_merge() {  # ROUND
  local r=$1 name="b$1-reader" t0 t1 st idle_b merge_b
  "${READER[@]}" "--write_lat_log=$OUT/$name" "--output=$OUT/$name.json" >/dev/null 2>"$OUT/$name.err" &
  FIO_PID=$!
  sleep "$READER_IDLE"
  t0=$(now_ms)
  if ! ctl "${MERGE_ARGS[@]}" >"$OUT/$name.merge.json" 2>&1; then
    log "ERROR: merge under load failed: $(tail -3 "$OUT/$name.merge.json")"; FAILED_TO_RUN=1
  fi
  t1=$(now_ms)
  sleep 0.5
  kill -INT "$FIO_PID" 2>/dev/null || true
  wait "$FIO_PID" || true
  FIO_PID=""
  fio_ok "$OUT/$name.json" || { log "ERROR: reader fio reported an error"; return 1; }
  R[b$r:loaded]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 }')
  st=$(lat_stats "$OUT/${name}_clat.1.log" $((t0 - 3000)) $((t0 - 1)))
  read -r _ idle_b _ _ _ <<<"$st"
  st=$(lat_stats "$OUT/${name}_clat.1.log" "$t0" "$t1")
  read -r _ merge_b _ _ _ <<<"$st"
  R[b$r:rd_idle]=$(awk -v b="$idle_b" 'BEGIN { printf "%.0f", b / 3 / 1e6 }')
  R[b$r:rd_merge]=$(awk -v b="$merge_b" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", b / (ms / 1000) / 1e6 }')
  rm -f "$OUT/${name}"_lat.1.log "$OUT/${name}"_slat.1.log "$OUT/${name}"_clat.1.log
  restore_stack "$r-reader"
}

part_b() {
  build_layers || { FAILED_TO_RUN=1; stop_server; return; }
  local r
  for r in $(seq 1 "$ROUNDS"); do
    log "(b) round $r/$ROUNDS: offline merge (--sync, then without), online merge idle, online merge under a reader"
    if (( r % 2 )); then
      offline_merge "$r" && online_merge "$r" || { FAILED_TO_RUN=1; break; }
    else
      online_merge "$r" && offline_merge "$r" || { FAILED_TO_RUN=1; break; }
    fi
    reader_merge "$r" || { FAILED_TO_RUN=1; break; }
  done
  stop_server
}

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
part_a
part_b
ELAPSED=$(( $(date +%s) - START ))

# ---- report --------------------------------------------------------------------------------------
GOALS_FAILED=0
v() { local x=${R[$1]:-}; echo "${x:-n/a}"; }
ms() { if [[ -n ${R[$1]:-} ]]; then awk -v n="${R[$1]}" 'BEGIN { printf "%.2f", n / 1e6 }'; else echo n/a; fi; }
ratio() { if [[ -n $1 && -n $2 && $1 != n/a && $2 != n/a ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; fi; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

report() {
  local r
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'), \`bash bench/lifecycle_bench.sh\`)"
  echo
  echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); load average before/after: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- ovbd: $BIN_INFO; $(fio --version); nbdcopy $(nbdcopy --version | head -1 | awk '{ print $2 }')"
  echo "- data: $DIR ($(findmnt -no FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR") on disk, page cache warm); $ROUNDS round(s); (a) windows of ${WINDOW} s; total ${ELAPSED} s"
  echo
  echo "#### (a) 4 KiB random writes, QD8, upper holding 1 GiB: a window with one snapshot at its middle vs the same window without"
  echo
  echo "| round | window | IOPS | clat p99 (ms) | p99.9 (ms) | max (ms) | writes > 10 ms | stalls > 50 ms | max clat during the snapshot call (ms) | its step | write_pause_ms (reply) | snapshot call (ms) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  local worst_in="" worst_max_s="" worst_max_b=""
  for r in $(seq 1 "$ROUNDS"); do
    local b="a$r-base" s="a$r-snap"
    [[ -n ${R[$s:iops]:-} ]] || continue
    printf '| %s | no snapshot | %.0f | %s | %s | %s | %s | %s | %s (same interval) | — | — | — |\n' "$r" "${R[$b:iops]}" \
      "$(ms "$b:p99")" "$(ms "$b:p999")" "$(ms "$b:max")" "$(v "$b:over10")" "$(v "$b:stalls")" "$(v "$b:in_max")"
    printf '| %s | snapshot | %.0f | %s | %s | %s | %s | %s | **%s** (%s writes) | %s | %s | %s |\n' "$r" "${R[$s:iops]}" \
      "$(ms "$s:p99")" "$(ms "$s:p999")" "$(ms "$s:max")" "$(v "$s:over10")" "$(v "$s:stalls")" "$(v "$s:in_max")" \
      "$(v "$s:in_n")" "$(v "$s:in_step")" "$(v "$s:pause")" "$(v "$s:call")"
    worst_in=$(awk -v a="$worst_in" -v b="${R[$s:in_max]}" 'BEGIN { print (a == "" || b > a) ? b : a }')
    worst_max_s=$(awk -v a="$worst_max_s" -v b="$(ms "$s:max")" 'BEGIN { print (a == "" || b > a) ? b : a }')
    worst_max_b=$(awk -v a="$worst_max_b" -v b="$(ms "$b:max")" 'BEGIN { print (a == "" || b > a) ? b : a }')
  done
  echo
  echo "#### (b) merge of lowers 0..2 (3 x 256 MiB; layer files $(v b:layer_bytes)bytes; merged $(v b:merged_bytes) bytes)"
  echo
  echo "| round | offline \`merge --sync\` (s) | offline, no --sync (s) | online \`ctl merge\`, idle (s) | online / offline --sync | online / offline no-sync | online under the reader (s) | reader idle (MB/s) | reader during merge (MB/s) | during / idle |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  local mr=() mn=() rr=()
  for r in $(seq 1 "$ROUNDS"); do
    [[ -n ${R[b$r:online]:-} ]] || continue
    local a1 a2 a3
    a1=$(ratio "${R[b$r:online]}" "${R[b$r:off_sync]:-}"); a2=$(ratio "${R[b$r:online]}" "${R[b$r:off_nosync]:-}")
    a3=$(ratio "${R[b$r:rd_merge]:-}" "${R[b$r:rd_idle]:-}")
    [[ -z $a1 ]] || mr+=("$a1"); [[ -z $a2 ]] || mn+=("$a2"); [[ -z $a3 ]] || rr+=("$a3")
    echo "| $r | $(v b$r:off_sync) | $(v b$r:off_nosync) | $(v b$r:online) | ${a1:-n/a}x | ${a2:-n/a}x | $(v b$r:loaded) | $(v b$r:rd_idle) | $(v b$r:rd_merge) | ${a3:-n/a}x |"
  done
  local med_m med_n med_r
  med_m=$(printf '%s\n' "${mr[@]}" | grep . | median || true)
  med_n=$(printf '%s\n' "${mn[@]}" | grep . | median || true)
  med_r=$(printf '%s\n' "${rr[@]}" | grep . | median || true)
  echo
  echo "#### Goals"
  echo
  echo "| goal | measured | target | result |"
  echo "|---|---|---|---|"
  local res
  if [[ -z $worst_in ]]; then res="NOT RUN"
  elif awk -v x="$worst_in" 'BEGIN { exit !(x < 10) }'; then res=PASS; else res=FAIL; GOALS_FAILED=1; fi
  echo "| (a) snapshot write pause: max clat of the writes completed during the snapshot call, worst round | ${worst_in:-n/a} ms | < 10 ms | $res |"
  echo "| (a) info: window max clat, worst round, with snapshot / without | ${worst_max_s:-n/a} ms / ${worst_max_b:-n/a} ms | — | info |"
  if [[ -z $med_m ]]; then res="NOT RUN"
  elif awk -v x="$med_m" 'BEGIN { exit !(x <= 1.25) }'; then res=PASS; else res=FAIL; GOALS_FAILED=1; fi
  echo "| (b) online merge time / offline \`ovbd merge --sync\`, median of rounds ($(printf '%sx ' "${mr[@]}")) | ${med_m:-n/a}x | <= 1.25x | $res |"
  echo "| (b) info: online / offline without --sync, median ($(printf '%sx ' "${mn[@]}")) | ${med_n:-n/a}x | — | info |"
  if [[ -z $med_r ]]; then res="NOT RUN"
  elif awk -v x="$med_r" 'BEGIN { exit !(x >= 0.5) }'; then res=PASS; else res=FAIL; GOALS_FAILED=1; fi
  echo "| (b) reader throughput during the online merge / idle, median of rounds ($(printf '%sx ' "${rr[@]}")) | ${med_r:-n/a}x | >= 0.5x | $res |"
  echo
  echo "#### Commands"
  echo
  echo '```'
  echo "# (a) per round: ovbd create --size 2G up.data up.index; config {upper}; ovbd serve -q --config C --socket $SOCK --pid-file P"
  echo "${FILL_CMD[*]}; ovbd ctl $CTL flush   # and a flush before each window"
  win_cmd 'a$R-{base,snap}'; echo "${WIN[*]}"
  echo "#   snap: ovbd ctl $CTL snapshot --name r\$R at ${HALF} s"
  echo "# (b) ovbd create --size 1G; config {upper}; serve; for K in 0 1 2:"
  layer_cmd 0
  echo "${LAYER[*]}; ovbd ctl $CTL flush; ovbd ctl $CTL snapshot --name lK" \
    | sed 's/--name=l0/--name=lK/; s/--randseed=1200/--randseed=$((1200 + K))/'
  echo "ovbd merge -q --sync -o off.lsmt L0 L1 L2      # and without --sync"
  echo "ovbd ctl $CTL ${MERGE_ARGS[*]}   # with serve restarted on the saved manifest after each"
  echo "${READER[*]} --write_lat_log=... &   # merge after ${READER_IDLE} s, SIGINT 0.5 s after it"
  echo '```'
}

report >"$OUT/lifecycle_bench.md"   # not in a subshell: report sets GOALS_FAILED
cat "$OUT/lifecycle_bench.md"
if [[ -n $MD_OUT ]]; then cp "$OUT/lifecycle_bench.md" "$MD_OUT"; fi
log "report also in $OUT/lifecycle_bench.md; goals: $([[ $GOALS_FAILED == 0 ]] && echo 'all PASS' || echo 'some FAIL')"
exit "$FAILED_TO_RUN"
