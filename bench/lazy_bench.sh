#!/usr/bin/env bash
# bench/lazy_bench.sh — lazy loading from a registry (issue 4): how long a container's start-up
# reads take when the layers come from an OCI registry over a slow link, lazily (cold cache, and
# with trace replay) vs downloading the layers first; and cache-hit read speed vs local layer
# files. ONE invocation measures every number its ratios use; nothing is hard-coded.
#
#   link      scripts/registry.sh (Debian's docker-registry on 127.0.0.1) behind
#             tests/tools/fault_proxy.py --rate-mbit 100 --latency-ms 10: ONE token bucket of
#             100 Mbit/s shared by all connections (response bodies), 10 ms added once per
#             request. Every blob byte of cases (a)-(c) crosses it. Layers are pushed straight to
#             the registry (`ovbd push`); config.v1.json's repoBlobUrl is rewritten to the proxy.
#   image     1 GiB virtual disk, 4 ZFile layers (lz4, 4 KiB blocks, CRC32C), deterministic:
#             base/l1/l2 = bench_make_chain (as bench/nbd_bench.sh: base ~60% of 1 MiB regions
#             filled with disk-like data, l1 1024 and l2 512 scattered writes of 4 KiB..1 MiB)
#             compressed with `ovbd zfile compress`; l3 = 256 more such writes with other content
#             (bench/lazy_ws.py make-layer: `ovbd create` + `ovbd write` + `ovbd commit --zfile`).
#   working   5% of the device (51.2 MiB) as a fixed, seeded list of extents (bench/lazy_ws.py
#   set       plan): log-uniform 64 KiB..1 MiB, each starting in allocated data and clipped to its
#             "file" (allocated run, gaps < 64 KiB merged), no overlaps, in random order.
#   reader    bench/lazy_ws.py read: 4 threads, one libnbd connection each, one pread per extent
#             from a shared cursor (a container start: a few processes reading files). The same
#             reader for every case; it is started together with the server and polls for
#             serve's ready line, so its own start-up overlaps the server's.
#   cases     (a) cold lazy: empty cache dir; t = start of `ovbd serve --config` (through the
#                 proxy) .. last byte of the working set (includes opening the 4 remote layers).
#             (r) recording run (once): as (a) plus --record-trace T; serve is stopped (SIGTERM)
#                 to write T. Its time is shown for information.
#             (b) trace replay: empty cache dir, --replay-trace T; the reader starts as soon as
#                 serve is ready and competes with the prefetch for the link. Same t as (a).
#             (c) full download: t = start of 4 parallel `curl -o` of the blobs through the proxy
#                 (parallel: the link is one bucket, parallel only hides the per-request latency)
#                 .. `ovbd serve` of the downloaded files .. last byte of the working set. The
#                 digests are checked after the timing (a real pull would also hash: (c) is
#                 slightly favoured).
#             (v) as (a), the config without its digest tables (lowers[].digestTable removed):
#                 the ZFile CRCs alone verify. (a)/(v) is the cost of the per-chunk sha256 check
#                 and of fetching the tables at start.
#             (d) cache hits: a cache dir warmed by reading the whole device once through a serve
#                 pointed straight at the registry (no proxy); then `ovbd serve --config` (proxy
#                 config, registry reachable) on that cache vs `ovbd serve` of the local ZFiles,
#                 page cache warm on both (files cat'ed), same clients: the working-set reader
#                 (best of 3 runs), `nbdcopy --no-extents URI null:` (whole device, best of 3),
#                 fio 4K randread QD32 over the whole device. The cache side must show 0 misses.
#   info      (a) and (b) once more with --cache-block-size 256K (default 16K; 256K blocks were the
#             default before --refill-size existed): read amplification
#             vs number of requests.
#   rounds    (a), (b), (c) run --rounds times (default 2), interleaved; (d) runs --d-rounds times
#             (default 4: on a shared 2-core VM one server's numbers move +-15% between runs),
#             alternating which server goes first. Best (min time / max throughput) per case
#             counts; all runs are listed.
#   goals     (a) <= 1/10 of (c); (b) <= 1/20 of (c); (a) <= 1.05 x (v); (d) cache / local >= 0.9
#             per workload.
#   checks    every working-set read of (a), (b), (c), (d) must hash equal to the read from the
#             local layer files (sha256 over the per-extent sha256s); a mismatch is an error.
#   bytes     "registry bytes" = the proxy's bytes_down (GET /__proxy__/stats, reset per case),
#             "fetched" = serve's cache.fetched_bytes (`ovbd ctl SOCK.ctl status`). The link
#             floor = the compressed bytes the working set needs (sum of the recorded trace's
#             ranges) / link rate: no lazy scheme can beat it on this link.
#
# Usage: bench/lazy_bench.sh [BUILD_DIR] [--dir DIR] [--rounds N] [--d-rounds N] [--quick] [--no-build]
#                            [--make-chain PATH] [--regen] [--rate-mbit R] [--latency-ms L]
#                            [--md FILE]
#   BUILD_DIR        build tree holding src/cli/ovbd (default build/release; `cmake --build -j2
#                    --target ovbd [bench_make_chain]` is run in it unless --no-build)
#   --dir DIR        data directory on disk (default /var/tmp/ovbd-bench/lazy; tmpfs refused;
#                    ~2.7 GB incl. registry, download and caches; reused while its RECIPE/DERIVED
#                    stamps match; --regen rebuilds)
#   --make-chain P   bench_make_chain binary (default BUILD_DIR/bench/bench_make_chain; it needs
#                    a tree configured with OVBD_BUILD_BENCH=ON, e.g. the release preset)
#   --rounds N       rounds of (a)/(b)/(c) (default 2); --d-rounds N: rounds of (d) (default 4)
#   --quick          1 round of each, fio 3 s
#   --rate-mbit R / --latency-ms L   link shaping (default 100 / 10)
#   --md FILE        also write the markdown report to FILE
# Output: a markdown report on stdout (logs on stderr; also DIR/results/lazy_bench.md). Exit 0
# when everything ran (goals may FAIL: the table says so), 1 on an error (a tool failed, a read
# returned wrong bytes, the cache side of (d) missed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/release
DIR=/var/tmp/ovbd-bench/lazy
MAKE_CHAIN=""
ROUNDS=2
D_ROUNDS=4          # rounds of (d): its ratios move +-15% run to run on this 2-core VM
FIO_S=5
REGEN=0
NO_BUILD=0
MD_OUT=""
RATE=100
LATENCY=10
THREADS=4           # reader connections
OTHER_BLOCK=256K    # info rows: cold cases with this --cache-block-size (default 16K)
WS_FRACTION=0.05
WS_SEED=4004
L3_WRITES=256
L3_SEED=$((0x0bd5eed + 3))
PY=/usr/bin/python3
HELPER=$ROOT/bench/lazy_ws.py

die() { echo "bench/lazy_bench.sh: $*" >&2; exit 1; }
log() { echo "[lazy-bench] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --d-rounds) D_ROUNDS=$2; shift 2 ;;
    --quick) ROUNDS=1; D_ROUNDS=1; FIO_S=3; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --make-chain) MAKE_CHAIN=$2; shift 2 ;;
    --regen) REGEN=1; shift ;;
    --rate-mbit) RATE=$2; shift 2 ;;
    --latency-ms) LATENCY=$2; shift 2 ;;
    --md) MD_OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown argument $1 (see --help)" ;;
    *) BUILD=$1; shift ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case "$DIR" in /*) ;; *) DIR=$PWD/$DIR ;; esac
OVBD=$BUILD/src/cli/ovbd
[[ -n $MAKE_CHAIN ]] || MAKE_CHAIN=$BUILD/bench/bench_make_chain
case "$MAKE_CHAIN" in /*) ;; *) MAKE_CHAIN=$PWD/$MAKE_CHAIN ;; esac

for tool in curl jq nbdinfo nbdcopy fio docker-registry sha256sum timeout; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
$PY -c 'import nbd' 2>/dev/null || die "python3-libnbd is required ($PY)"

# ---- build ------------------------------------------------------------------------------------
if [[ $NO_BUILD == 0 ]]; then
  [[ -f $BUILD/CMakeCache.txt ]] || die "$BUILD is not configured (cmake --preset release)"
  targets=(ovbd)
  if [[ $MAKE_CHAIN == "$BUILD/bench/bench_make_chain" ]] && grep -q '^OVBD_BUILD_BENCH:BOOL=ON' "$BUILD/CMakeCache.txt"; then
    targets+=(bench_make_chain)
  fi
  log "building ${targets[*]} in $BUILD (-j 2)"
  cmake --build "$BUILD" -j 2 --target "${targets[@]}" >&2 || die "build failed"
fi
[[ -x $OVBD ]] || die "$OVBD missing (build it, or give another BUILD_DIR)"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "WARNING: $BUILD is a '$build_type' build, not Release"
newer=$(find "$ROOT/src" "$ROOT/include" -newer "$OVBD" -type f | head -3)
[[ -z $newer ]] || log "WARNING: sources newer than $OVBD: ${newer//$'\n'/ }"
serve_help=$("$OVBD" serve --help) || die "$OVBD serve --help failed"
[[ $serve_help == *--replay-trace* ]] || die "$OVBD has no lazy loading (serve --replay-trace)"

mkdir -p "$DIR"
[[ $(stat -f -c %T "$DIR") != tmpfs ]] || die "$DIR is on tmpfs; use --dir on a disk"
OUT=$DIR/results
mkdir -p "$OUT"
# Run a snapshot of the binary: a rebuild of BUILD_DIR during the run must not mix two binaries.
OVBD_BUILT=$(date -u -r "$OVBD" "+%Y-%m-%d %H:%M UTC")
OVBD_SRC=$OVBD
{ cp "$OVBD" "$OUT/ovbd.tmp" && mv "$OUT/ovbd.tmp" "$OUT/ovbd"; } || die "cannot copy $OVBD"
OVBD=$OUT/ovbd
SOCK=$DIR/bench.sock
URI="nbd+unix:///?socket=$SOCK"
LAYERS=(base l1 l2 l3)
LAYER_FILES=("$DIR/base.zfile" "$DIR/l1.zfile" "$DIR/l2.zfile" "$DIR/l3.zfile")
WS=$DIR/ws.txt
SIZE=$((1024 << 20))

# ---- processes: one server at a time, the proxy and the registry; all stopped on exit --------
SERVER_PID=""
PROXY_PID=""
REG_DIR=$DIR/registry
REG_STARTED=0
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() {
  stop_server
  if [[ -n $PROXY_PID ]]; then kill -TERM "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
  if [[ $REG_STARTED == 1 ]]; then "$ROOT/scripts/registry.sh" stop "$REG_DIR" || true; fi
}
trap cleanup EXIT

# start_server NAME ARGS...: `ovbd serve --socket SOCK ARGS` in the background; T0 = its start
# (ns). The ready line goes to $OUT/serve.out (the reader polls it); stderr to serve-NAME.err.
start_server() {
  local name=$1; shift
  rm -f "$SOCK" "$SOCK.ctl"
  : >"$OUT/serve.out"
  SRV_CMD=("$OVBD" serve --socket "$SOCK" "$@")
  T0=$(date +%s%N)
  "${SRV_CMD[@]}" >"$OUT/serve.out" 2>"$OUT/serve-$name.err" &
  SERVER_PID=$!
}
wait_ready() {
  for _ in $(seq 1 600); do
    grep -q '^serving ' "$OUT/serve.out" 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "ERROR: server did not start: $(tail -3 "$OUT/serve-${1:-x}.err" 2>/dev/null)"; return 1
}
# reader NAME [--ready] [--repeat N]: the working-set reader; its JSON goes to read-NAME.json.
reader() {
  local name=$1; shift
  local extra=()
  [[ ${1:-} != --ready ]] || { extra+=(--ready "$OUT/serve.out"); shift; }
  if ! timeout 600 "$PY" "$HELPER" read --uri "$URI" --ws "$WS" --threads "$THREADS" "${extra[@]}" "$@" \
      >"$OUT/read-$name.json" 2>"$OUT/read-$name.err"; then
    log "ERROR: reader failed on $name: $(tail -2 "$OUT/read-$name.err") / server: $(tail -2 "$OUT/serve-$name.err" 2>/dev/null)"
    return 1
  fi
  local h
  h=$(jq -r .sha256 "$OUT/read-$name.json")
  if [[ -n ${REF_SHA:-} && $h != "$REF_SHA" ]]; then
    log "ERROR: $name read different working-set bytes ($h, local layers: $REF_SHA)"; return 1
  fi
}
proxy() { curl -sSf "${@:2}" "http://$PROXY_HP/__proxy__/$1"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# ---- data -------------------------------------------------------------------------------------
RECIPE_WANT="v1 size=$SIZE writes1=1024 writes2=512 seed=$((0x0bd5eed))"
DERIVED_WANT="$RECIPE_WANT | zfile lz4 4K crc | l3 writes=$L3_WRITES seed=$L3_SEED | ws fraction=$WS_FRACTION seed=$WS_SEED min=64K max=1M gap=64K | $(sha256sum "$HELPER" | cut -c1-16)"

serve_local_check() {  # serves the 4 local ZFiles (for the map and the reference read)
  start_server local "${LAYER_FILES[@]}"
  wait_ready local || return 1
}

prepare_data() {
  local have=""
  [[ -f $DIR/RECIPE ]] && have=$(cat "$DIR/RECIPE")
  if [[ $REGEN == 1 || $have != "$RECIPE_WANT" ]]; then
    [[ -x $MAKE_CHAIN ]] || die "$MAKE_CHAIN missing (--make-chain PATH, or a BUILD_DIR with OVBD_BUILD_BENCH=ON)"
    log "generating base/l1/l2 in $DIR ($MAKE_CHAIN)"
    rm -f "$DIR/DERIVED"
    "$MAKE_CHAIN" --size 1024 --writes1 1024 --writes2 512 "$DIR" || die "bench_make_chain failed"
    rm -f "$DIR"/raw[012].img   # not needed here (the reference is the local ZFile chain)
  fi
  have=""
  [[ -f $DIR/DERIVED ]] && have=$(cat "$DIR/DERIVED")
  [[ $REGEN == 0 && $have == "$DERIVED_WANT" ]] && return 0
  rm -f "$DIR/DERIVED"
  log "deriving the ZFiles, layer l3 and the working set"
  local l
  for l in base l1 l2; do "$OVBD" zfile compress -q -f "$DIR/$l.lsmt" "$DIR/$l.zfile" || die "zfile compress $l"; done
  "$PY" "$HELPER" make-layer --ovbd "$OVBD" --size "$SIZE" --writes "$L3_WRITES" --seed "$L3_SEED" \
    --uuid 00000004-0000-4000-8000-00000000C4A1 --parent-uuid 00000003-0000-4000-8000-00000000C4A1 "$DIR" l3 \
    || die "make-layer l3 failed"
  "$OVBD" commit -q -f --zfile -m 'lazy bench layer 3' --uuid 00000004-0000-4000-8000-00000000C4A1 \
    "$DIR/l3.data" "$DIR/l3.index" "$DIR/l3.zfile" || die "commit l3 failed"
  rm -f "$DIR/l3.data" "$DIR/l3.index"
  serve_local_check || die "cannot serve the local chain"
  nbdinfo --map --json "$URI" >"$DIR/map.json" || die "nbdinfo --map failed"
  stop_server
  "$PY" "$HELPER" plan --map "$DIR/map.json" --fraction "$WS_FRACTION" --seed "$WS_SEED" \
    --writes "$DIR/l1.writes" "$DIR/l2.writes" "$DIR/l3.writes" >"$WS" 2>"$DIR/ws.json" || die "plan failed"
  echo "$DERIVED_WANT" >"$DIR/DERIVED"
}

prepare_data
WS_BYTES=$(awk '{ s += $2 } END { print s }' "$WS")
WS_EXTENTS=$(wc -l <"$WS")
log "data ready in $DIR ($(du -sh "$DIR" --exclude=registry | cut -f1)); working set $WS_EXTENTS extents, $WS_BYTES bytes"

# Reference: the working set read from the local layer files.
cat "${LAYER_FILES[@]}" >/dev/null
serve_local_check || die "cannot serve the local chain"
reader reference || die "reference read failed"
REF_SHA=$(jq -r .sha256 "$OUT/read-reference.json")
stop_server

# ---- registry + proxy -------------------------------------------------------------------------
REG_HP=$("$ROOT/scripts/registry.sh" start "$REG_DIR") || die "registry did not start"
REG_STARTED=1
log "registry on $REG_HP; pushing the layers (skipped when present)"
"$OVBD" push -q --to "http://$REG_HP/bench/lazy" --config-out "$OUT/config.direct.json" "${LAYER_FILES[@]}" \
  >"$OUT/push.log" 2>&1 || die "push failed: $(tail -3 "$OUT/push.log")"
rm -f "$OUT/proxy.port"
PROXY_CMD=("$PY" "$ROOT/tests/tools/fault_proxy.py" --listen 127.0.0.1:0 --upstream "http://$REG_HP"
           --port-file "$OUT/proxy.port" --rate-mbit "$RATE" --latency-ms "$LATENCY" --seed 1)
"${PROXY_CMD[@]}" >"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do [[ -s $OUT/proxy.port ]] && break; sleep 0.05; done
[[ -s $OUT/proxy.port ]] || die "proxy did not start: $(tail -3 "$OUT/proxy.log")"
PROXY_HP=127.0.0.1:$(cat "$OUT/proxy.port")
jq --arg hp "$PROXY_HP" '.repoBlobUrl |= sub("//[^/]+/"; "//" + $hp + "/")' "$OUT/config.direct.json" \
  >"$OUT/config.proxy.json"
jq 'del(.lowers[].digestTable)' "$OUT/config.proxy.json" >"$OUT/config.proxy.notable.json"
mapfile -t DIGESTS < <(jq -r '.lowers[].digest' "$OUT/config.direct.json")
mapfile -t BLOB_SIZES < <(jq -r '.lowers[].size' "$OUT/config.direct.json")
BLOB_TOTAL=$(printf '%s\n' "${BLOB_SIZES[@]}" | awk '{ s += $1 } END { print s }')
BLOB_URL=$(jq -r .repoBlobUrl "$OUT/config.proxy.json")
# the registry's files in the page cache: the origin is not what is measured
find "$REG_DIR/storage" -type f -name data -exec cat {} + >/dev/null
log "proxy on $PROXY_HP: $RATE Mbit/s, $LATENCY ms per request; blobs: $BLOB_TOTAL bytes"

# ---- (a), (r), (b), (c) ---------------------------------------------------------------------
declare -A RES   # RES[case:round:field]
LAZY_OPTS=(--cache-size 4G)
TRACE=$OUT/ws.trace

# lazy_case CASE ROUND EXTRA_SERVE_ARGS...: fresh cache dir, serve via the proxy, read, stats.
lazy_case() {
  local c=$1 r=$2; shift 2
  local cache=$DIR/cache-$c
  rm -rf "$cache"
  proxy stats/reset -X POST >/dev/null
  start_server "$c" --config "${LAZY_CONFIG:-$OUT/config.proxy.json}" --cache-dir "$cache" "${LAZY_OPTS[@]}" "$@"
  local t0=$T0
  CASE_CMD[$c]=$(printf '%q ' "${SRV_CMD[@]}")
  reader "$c" --ready || return 1
  "$OVBD" ctl "$SOCK.ctl" status >"$OUT/status-$c-$r.json" || { log "ERROR: ctl status failed ($c)"; return 1; }
  proxy stats >"$OUT/proxy-$c-$r.json"
  stop_server
  RES[$c:$r:t]=$(secs "$t0" "$(jq .end_ns "$OUT/read-$c.json")")
  RES[$c:$r:ready]=$(secs "$t0" "$(jq .ready_ns "$OUT/read-$c.json")")
  RES[$c:$r:down]=$(jq .bytes_down "$OUT/proxy-$c-$r.json")
  RES[$c:$r:req]=$(jq .requests "$OUT/proxy-$c-$r.json")
  RES[$c:$r:fetched]=$(jq '.. | objects | select(has("fetched_bytes")) | .fetched_bytes' "$OUT/status-$c-$r.json" | head -1)
  RES[$c:$r:prefetch]=$(jq -c '.. | objects | select(has("bytes_done")) | {bytes_done, finished}' "$OUT/status-$c-$r.json" | head -1)
  log "$c round $r: ${RES[$c:$r:t]} s (ready ${RES[$c:$r:ready]} s), ${RES[$c:$r:down]} bytes in ${RES[$c:$r:req]} requests"
}

full_case() {
  local r=$1 dl=$DIR/download i pids=()
  rm -rf "$dl"; mkdir -p "$dl"
  proxy stats/reset -X POST >/dev/null
  local t0
  t0=$(date +%s%N)
  for i in "${!DIGESTS[@]}"; do
    curl -sSf -o "$dl/${LAYERS[$i]}.zfile" "$BLOB_URL/${DIGESTS[$i]}" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { log "ERROR: download failed"; return 1; }; done
  local t1
  t1=$(date +%s%N)
  start_server c "$dl/base.zfile" "$dl/l1.zfile" "$dl/l2.zfile" "$dl/l3.zfile"
  CASE_CMD[c]="curl -sSf -o DL/LAYER.zfile $BLOB_URL/DIGEST  # x4 in parallel, then: $(printf '%q ' "${SRV_CMD[@]}")"
  reader c --ready || return 1
  proxy stats >"$OUT/proxy-c-$r.json"
  stop_server
  RES[c:$r:t]=$(secs "$t0" "$(jq .end_ns "$OUT/read-c.json")")
  RES[c:$r:dl]=$(secs "$t0" "$t1")
  RES[c:$r:ready]=$(secs "$t0" "$(jq .ready_ns "$OUT/read-c.json")")
  RES[c:$r:down]=$(jq .bytes_down "$OUT/proxy-c-$r.json")
  RES[c:$r:req]=$(jq .requests "$OUT/proxy-c-$r.json")
  RES[c:$r:fetched]=${RES[c:$r:down]}
  for i in "${!DIGESTS[@]}"; do   # after the timing
    [[ sha256:$(sha256sum <"$dl/${LAYERS[$i]}.zfile" | cut -d' ' -f1) == "${DIGESTS[$i]}" ]] \
      || { log "ERROR: downloaded ${LAYERS[$i]} does not match its digest"; return 1; }
  done
  log "c round $r: ${RES[c:$r:t]} s (download ${RES[c:$r:dl]} s), ${RES[c:$r:down]} bytes"
}

declare -A CASE_CMD
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "(r) recording run"
lazy_case r 1 --record-trace "$TRACE" || die "recording run failed"
[[ -s $TRACE ]] || die "no trace written"
TRACE_RANGES=$(awk '$1 == "r"' "$TRACE" | wc -l)
TRACE_BYTES=$(awk '$1 == "r" { s += $4 } END { print s + 0 }' "$TRACE")
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  lazy_case a "$r" || die "case (a) failed"
  lazy_case b "$r" --replay-trace "$TRACE" || die "case (b) failed"
  LAZY_CONFIG=$OUT/config.proxy.notable.json lazy_case v "$r" || die "case (v) failed"
  full_case "$r" || die "case (c) failed"
done
log "(info) the cold cases with --cache-block-size $OTHER_BLOCK (more read amplification, fewer requests)"
lazy_case aX 1 --cache-block-size "$OTHER_BLOCK" || die "case (a) with $OTHER_BLOCK blocks failed"
lazy_case bX 1 --cache-block-size "$OTHER_BLOCK" --replay-trace "$TRACE" || die "case (b) with $OTHER_BLOCK blocks failed"

# ---- (d) cache hits vs local files ------------------------------------------------------------
CW=$DIR/cache-warm
rm -rf "$CW"
log "(d) warming $CW through the registry directly (whole device)"
start_server warm --config "$OUT/config.direct.json" --cache-dir "$CW" "${LAZY_OPTS[@]}"
wait_ready warm || die "warm-up server did not start"
nbdcopy --no-extents "$URI" null: || die "warm-up read failed"
stop_server
declare -A D   # D[side:metric] = best
declare -A D_ALL   # D_ALL[side:metric] = every round's value, in order
dbest() {  # KEY VALUE max|min
  local old=${D[$1]:-}
  D_ALL[$1]+="${D_ALL[$1]:+, }$2"
  if [[ -z $old ]] || awk -v a="$2" -v b="$old" -v h="$3" 'BEGIN { exit !(h == "max" ? a > b : a < b) }'; then D[$1]=$2; fi
}
FIO=(fio --name=randread --ioengine=nbd "--uri=$URI" --rw=randread --bs=4k --iodepth=32
     --time_based "--runtime=$FIO_S" --randseed=1 --output-format=json)
measure_d() {  # SIDE ROUND
  local side=$1 r=$2 i t0 t1 mbs
  if [[ $side == cache ]]; then
    find "$CW" -type f -exec cat {} + >/dev/null
    start_server d-cache --config "$OUT/config.proxy.json" --cache-dir "$CW" "${LAZY_OPTS[@]}"
  else
    cat "${LAYER_FILES[@]}" >/dev/null
    start_server d-local "${LAYER_FILES[@]}"
  fi
  CASE_CMD[d-$side]=$(printf '%q ' "${SRV_CMD[@]}")
  wait_ready "d-$side" || return 1
  reader "d-$side" --repeat 3 || return 1
  mbs=$(jq -r --argjson b "$WS_BYTES" '[.runs_s[]] | min | $b / . / 1e6' "$OUT/read-d-$side.json")
  dbest "$side:ws" "$(printf '%.1f' "$mbs")" max
  for i in 1 2 3; do
    t0=$(date +%s%N)
    nbdcopy --no-extents "$URI" null: || { log "ERROR: nbdcopy failed ($side)"; return 1; }
    t1=$(date +%s%N)
    dbest "$side:seq" "$(awk -v a="$t0" -v b="$t1" -v s="$SIZE" 'BEGIN { printf "%.1f", s / ((b - a) / 1e9) / 1e6 }')" max
  done
  "${FIO[@]}" >"$OUT/fio-$side.raw" 2>"$OUT/fio-$side.err" || { log "ERROR: fio failed ($side)"; return 1; }
  sed -n '/^{/,$p' "$OUT/fio-$side.raw" >"$OUT/fio-$side.json"
  dbest "$side:qd32" "$(jq '.jobs[0].read.iops | floor' "$OUT/fio-$side.json")" max
  if [[ $side == cache ]]; then
    "$OVBD" ctl "$SOCK.ctl" status >"$OUT/status-d-$r.json"
    local misses
    misses=$(jq '.. | objects | select(has("misses")) | .misses' "$OUT/status-d-$r.json" | head -1)
    D[cache:misses]=$(( ${D[cache:misses]:-0} + misses ))
    D[cache:hits]=$(jq '.. | objects | select(has("hits")) | .hits' "$OUT/status-d-$r.json" | head -1)
  fi
  stop_server
}
for r in $(seq 1 "$D_ROUNDS"); do  # alternating which side goes first
  if (( r % 2 )); then order=(cache local); else order=(local cache); fi
  log "(d) round $r/$D_ROUNDS: working set x3, nbdcopy --no-extents x3, fio QD32 ${FIO_S}s, ${order[0]} then ${order[1]}"
  for side in "${order[@]}"; do measure_d "$side" "$r" || die "(d) $side side failed"; done
done
[[ ${D[cache:misses]} == 0 ]] || die "(d): the warm cache still missed ${D[cache:misses]} blocks"
ELAPSED=$(( $(date +%s) - START ))

# ---- report -----------------------------------------------------------------------------------
best_t() {  # CASE -> minimum t over rounds, and the round that gave it
  local c=$1 r b="" br=""
  for r in $(seq 1 "$ROUNDS"); do
    [[ -n ${RES[$c:$r:t]:-} ]] || continue
    if [[ -z $b ]] || awk -v a="${RES[$c:$r:t]}" -v b="$b" 'BEGIN { exit !(a < b) }'; then b=${RES[$c:$r:t]}; br=$r; fi
  done
  echo "$b $br"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
GOALS_FAILED=0
read -r _ RA <<<"$(best_t a)"
read -r _ RB <<<"$(best_t b)"
read -r TC RC <<<"$(best_t c)"
read -r TV RV <<<"$(best_t v)"
read -r TA _ <<<"$(best_t a)"
all_t() { local c=$1 r out=""; for r in $(seq 1 "$ROUNDS"); do [[ -z ${RES[$c:$r:t]:-} ]] || out+="${RES[$c:$r:t]}, "; done; echo "${out%, }"; }
verdict() {  # VALUE OP TARGET -> VERDICT (not in a subshell: sets GOALS_FAILED)
  if awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { exit !(op == "<=" ? v <= t : v >= t) }'; then VERDICT=PASS
  else GOALS_FAILED=1; VERDICT=FAIL; fi
}
LINK_MBIT=$(awk -v b="${RES[c:$RC:down]}" -v t="${RES[c:$RC:dl]}" 'BEGIN { printf "%.1f", b * 8 / t / 1e6 }')
FLOOR=$(awk -v b="$TRACE_BYTES" -v r="$RATE" 'BEGIN { printf "%.2f", b * 8 / (r * 1e6) }')
row() {  # CASE LABEL ROUND GOAL_OP GOAL
  local c=$1 label=$2 r=$3 ratio res goal
  ratio=$(awk -v a="${RES[$c:$r:t]}" -v c="$TC" 'BEGIN { printf "%.3f", a / c }')
  if [[ -n ${5:-} ]]; then goal="<= $5"; verdict "$ratio" "$4" "$5"; res=$VERDICT; else goal="—"; res=info; fi
  local amp; amp=$(awk -v a="${RES[$c:$r:down]}" -v b="$TRACE_BYTES" 'BEGIN { printf "%.1f", a / b }')
  echo "| $label | **${RES[$c:$r:t]}** ($(all_t "$c")) | ${RES[$c:$r:ready]} | $(mb "${RES[$c:$r:down]}") (${amp}x) | ${RES[$c:$r:req]} | $(mb "${RES[$c:$r:fetched]}") | ${ratio}x | $goal | $res |"
}
drow() {  # LABEL METRIC UNIT
  local ratio res
  ratio=$(awk -v a="${D[cache:$2]}" -v b="${D[local:$2]}" 'BEGIN { printf "%.2f", a / b }')
  verdict "$ratio" ">=" 0.9; res=$VERDICT
  echo "| $1 | ${D[cache:$2]} $3 | ${D[local:$2]} $3 | ${ratio}x | >= 0.9x | $res |"
}
report() {
  local wsj; wsj=$(cat "$DIR/ws.json")
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); load average before/after: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg); total ${ELAPSED} s"
  echo "- ovbd: $OVBD_SRC (built $OVBD_BUILT; run from a copy); $(docker-registry --version 2>/dev/null | head -1); $(nbdcopy --version | head -1); $(fio --version)"
  echo "- link: fault_proxy.py --rate-mbit $RATE --latency-ms $LATENCY (one bucket for all connections); measured by (c)'s download: $LINK_MBIT Mbit/s"
  echo "- image: 4 ZFile layers (lz4 4K, CRC), blobs $(for i in "${!LAYERS[@]}"; do printf '%s %s, ' "${LAYERS[$i]}" "$(mb "${BLOB_SIZES[$i]}")"; done | sed 's/, $//') MB = $(mb "$BLOB_TOTAL") MB; 1 GiB virtual"
  echo "- working set: $WS_EXTENTS extents, $WS_BYTES bytes ($(jq -r '.by_top_layer | "top layer base \(.[0]), l1 \(.[1]), l2 \(.[2]), l3 \(.[3]) bytes"' <<<"$wsj")); reader: $THREADS libnbd connections, one pread per extent"
  echo "- recorded trace: $TRACE_RANGES ranges, $TRACE_BYTES bytes of blobs (compressed) = link floor $FLOOR s at $RATE Mbit/s"
  echo "- $ROUNDS round(s) of (a), (b), (c), interleaved; the best of each case counts (bold), every round in brackets; each working-set read hashed equal to the local layer files"
  echo
  echo "| case | seconds to the last byte | serving after (s) | registry MB, proxy (x trace bytes) | requests | fetched MB (ovbd) | vs (c) | goal | result |"
  echo "|---|---|---|---|---|---|---|---|---|"
  row a "(a) lazy, cold cache" "$RA" "<=" 0.1
  row b "(b) lazy, cold cache + --replay-trace" "$RB" "<=" 0.05
  row c "(c) download the 4 blobs (curl x4 parallel: ${RES[c:$RC:dl]} s) + serve locally" "$RC"
  row v "(v) as (a) without digest tables (ZFile CRCs only)" "$RV"
  row r "(info) lazy, cold cache + --record-trace (the recording run)" 1
  row aX "(info) (a) with --cache-block-size $OTHER_BLOCK" 1
  row bX "(info) (b) with --cache-block-size $OTHER_BLOCK" 1
  echo
  local tratio; tratio=$(awk -v a="$TA" -v v="$TV" 'BEGIN { printf "%.3f", a / v }')
  verdict "$tratio" "<=" 1.05
  echo "Digest tables: (a) / (v) = **${tratio}x** (goal <= 1.05x): $VERDICT."
  echo
  echo "Prefetch status when the reader finished: (b) ${RES[b:$RB:prefetch]:-n/a}; with $OTHER_BLOCK blocks ${RES[bX:1:prefetch]:-n/a}."
  echo
  echo "#### Cache hits vs local layer files"
  echo
  echo "Warm cache: $(jq -r '.. | objects | select(has("used")) | .used' "$OUT/status-d-1.json" | head -1) bytes cached; ${D[cache:misses]} misses in all measured reads (last round: ${D[cache:hits]} block hits); page cache warm on both sides; best of $D_ROUNDS round(s), alternating which side goes first."
  echo
  echo "| workload | ovbd serve --config (cache) | ovbd serve local ZFiles | ratio | goal | result |"
  echo "|---|---|---|---|---|---|"
  drow "working set, $THREADS connections (MB/s, best of 3 x $D_ROUNDS)" ws "MB/s"
  drow "whole device, nbdcopy --no-extents (MB/s)" seq "MB/s"
  drow "4K randread QD32, fio ${FIO_S} s (IOPS)" qd32 "IOPS"
  echo
  echo "Every round (cache / local): working set ${D_ALL[cache:ws]} / ${D_ALL[local:ws]} MB/s (best of 3 each);" \
       "nbdcopy ${D_ALL[cache:seq]} / ${D_ALL[local:seq]} MB/s (3 each); fio ${D_ALL[cache:qd32]} / ${D_ALL[local:qd32]} IOPS."
  echo
  echo "#### Commands"
  echo
  echo '```'
  echo "$(printf '%q ' "$ROOT/scripts/registry.sh" start "$REG_DIR")   # -> $REG_HP"
  echo "$(printf '%q ' "$OVBD" push -q --to "http://$REG_HP/bench/lazy" --config-out "$OUT/config.direct.json" "${LAYER_FILES[@]}")"
  echo "$(printf '%q ' "${PROXY_CMD[@]}")"
  echo "# config.proxy.json = config.direct.json with repoBlobUrl -> $BLOB_URL"
  echo "# (a) $(printf '%q ' "$PY" "$HELPER" read --uri "$URI" --ws "$WS" --threads "$THREADS" --ready SERVE_STDOUT) started with:"
  echo "${CASE_CMD[a]}"
  echo "# (r) ${CASE_CMD[r]}"
  echo "# (b) ${CASE_CMD[b]}"
  echo "# (c) ${CASE_CMD[c]}"
  echo "# (d) warm-up: serve --config config.direct.json --cache-dir $CW; nbdcopy --no-extents URI null:"
  echo "# (d) ${CASE_CMD[d-cache]}"
  echo "# (d) ${CASE_CMD[d-local]}"
  echo "#     reader --repeat 3; nbdcopy --no-extents '$URI' null: (x3); $(printf '%q ' "${FIO[@]}")"
  echo '```'
}
report >"$OUT/lazy_bench.md"
cat "$OUT/lazy_bench.md"
[[ -z $MD_OUT ]] || cp "$OUT/lazy_bench.md" "$MD_OUT"
log "report also in $OUT/lazy_bench.md; goals: $([[ $GOALS_FAILED == 0 ]] && echo 'all PASS' || echo 'some FAIL')"
