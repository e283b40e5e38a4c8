#!/usr/bin/env bash
# bench/nbd_bench.sh — NBD serving benchmark (issue 3): `ovbd serve` vs `qemu-nbd` on the same
# 3-layer content, through the same clients, in ONE invocation (every ratio compares numbers
# measured by this run; nothing is hard-coded).
#
#   content   bench_make_chain: 1 GiB virtual; base = ~60% of 1 MiB regions filled with disk-like
#             data (lz4 ~2-3x), the rest holes; overlay 1 = 1024 scattered writes, overlay 2 =
#             512 more (4 KiB..1 MiB, log-uniform, 4 KiB aligned). raw0/raw1/raw2 = the raw disk
#             after 1/2/3 layers.
#   chains    ovbd plain   base.lsmt l1.lsmt l2.lsmt            (library: ImportRaw / RwLayer+Commit)
#             ovbd lz4     base.zfile l1.zfile l2.zfile         (ovbd zfile compress, lz4 4K + CRC)
#             qcow2 plain  base.qcow2 <- l1.qcow2 <- l2.qcow2   (64K clusters; overlays = the same
#                          writes replayed through a writable qemu-nbd, so each holds only its writes)
#             qcow2 zlib   base-c <- l1-c <- l2-c.qcow2         (qemu-img convert -c -B: same
#                          allocation as the plain chain, clusters compressed with zlib, the default)
#             raw          raw2.img via qemu-nbd -f raw         (CPU baseline: a raw file)
#             ovbd flat    flat.lsmt = ovbd import raw2.img     (info: one plain layer)
#   servers   ovbd serve --socket S LAYER...            (default --threads: max(2, cores))
#             qemu-nbd --socket S -f FMT --read-only --persistent --shared=16 --cache=writeback
#                      --aio=threads FILE               (page cache on both sides)
#   clients   seq   nbdcopy URI null:                   (whole device; nbdcopy's defaults: extents
#                                                        on, multi-conn if offered — both servers
#                                                        offer it read-only)
#             full  nbdcopy --no-extents URI null:      (every byte of the device crosses the
#                                                        wire: the "same bytes" for the CPU goal)
#             qd1   fio --ioengine=nbd --rw=randread --bs=4k --iodepth=1  (time based)
#             qd32  the same with --iodepth=32
#   cache     WARM: every file of a configuration is read into the page cache (cat) and the
#             export read once (the correctness check) before anything is timed; no drop_caches.
#   goals     ovbd/qemu-nbd throughput >= 1.5x on the compressed chain, >= 1.0x on the plain
#             chain (each workload); CPU overhead of the ovbd plain chain vs the raw file raw2.img
#             served by qemu-nbd -f raw, same clients: total (server + client) CPU per GiB < +20%
#             for full, qd1, qd32 ("the same bytes through the same client path").
#   CPU       server: utime+stime of the server process (all threads) from /proc/PID/stat around
#             each client run; client: /usr/bin/time (nbdcopy) or fio's usr_cpu+sys_cpu. Reported
#             as CPU seconds per GiB delivered to the client.
#
# Usage: bench/nbd_bench.sh [--build DIR] [--dir DIR] [--quick] [--runtime S] [--rounds N]
#                           [--regen] [--no-build] [--dry-run] [--md FILE]
#   --build DIR   build tree (default build/release; configured like bench/run.sh if missing)
#   --dir DIR     data directory on disk (default /var/tmp/ovbd-bench/nbd; refused if tmpfs)
#   --quick       1 round, fio 4 s, nbdcopy best of 2 (default: 2 rounds, fio 10 s, best of 5)
#   --rounds N    rounds over all configurations (interleaved); best round counts per metric
#   --regen       rebuild the data set even if its RECIPE/DERIVED stamps match
#   --dry-run     print the exact commands (data preparation, servers, clients) and exit
#   --md FILE     also write the markdown report to FILE
# Output: a markdown report on stdout (logs on stderr). Exit 0 when everything ran (goals may
# FAIL: the table says so), 1 when something could not run or an export served wrong bytes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/release
DIR=/var/tmp/ovbd-bench/nbd
RUNTIME=10
ROUNDS=2
SEQ_REPS=5
REGEN=0
NO_BUILD=0
DRY=0
MD_OUT=""

die() { echo "bench/nbd_bench.sh: $*" >&2; exit 1; }
log() { echo "[nbd-bench] $*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --quick) ROUNDS=1; RUNTIME=4; SEQ_REPS=2; shift ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --regen) REGEN=1; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --md) MD_OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case "$DIR" in /*) ;; *) DIR=$PWD/$DIR ;; esac
OVBD=$BUILD/src/cli/ovbd
MAKE_CHAIN=$BUILD/bench/bench_make_chain
# The content recipe bench_make_chain writes into DIR/RECIPE (its defaults).
GEN_ARGS=(--size 1024 --writes1 1024 --writes2 512)
QEMU_OPTS=(--read-only --persistent --shared=16 --cache=writeback --aio=threads)
SOCK=$DIR/bench.sock
URI="nbd+unix:///?socket=$SOCK"
CONFIGS=(raw-qemu raw-ovbd plain-qemu plain-ovbd comp-qemu comp-ovbd)
declare -A LABEL=(
  [raw-qemu]="qemu-nbd raw2.img (-f raw)"  [raw-ovbd]="ovbd serve flat.lsmt"
  [plain-qemu]="qemu-nbd qcow2 chain"      [plain-ovbd]="ovbd serve lsmt chain"
  [comp-qemu]="qemu-nbd qcow2 zlib chain"  [comp-ovbd]="ovbd serve zfile lz4 chain")

for tool in qemu-nbd qemu-img nbdcopy fio jq awk; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is required (apt-get install time)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || die "python3-libnbd is required (/usr/bin/python3)"

# ---- command log: everything that prepares data or serves is run through x ---------------------
CMDS=()
q() {  # shell-quotes for display: plain words as they are, anything else in single quotes
  local out="" a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  echo "${out% }"
}
x() { CMDS+=("$(q "$@")"); if [[ $DRY == 0 ]]; then "$@"; fi; }

server_cmd() {  # CONFIG -> SRV array
  case $1 in
    raw-qemu)   SRV=(qemu-nbd --socket "$SOCK" -f raw "${QEMU_OPTS[@]}" "$DIR/raw2.img") ;;
    raw-ovbd)   SRV=("$OVBD" serve --socket "$SOCK" "$DIR/flat.lsmt") ;;
    plain-qemu) SRV=(qemu-nbd --socket "$SOCK" -f qcow2 "${QEMU_OPTS[@]}" "$DIR/l2.qcow2") ;;
    plain-ovbd) SRV=("$OVBD" serve --socket "$SOCK" "$DIR/base.lsmt" "$DIR/l1.lsmt" "$DIR/l2.lsmt") ;;
    comp-qemu)  SRV=(qemu-nbd --socket "$SOCK" -f qcow2 "${QEMU_OPTS[@]}" "$DIR/l2-c.qcow2") ;;
    comp-ovbd)  SRV=("$OVBD" serve --socket "$SOCK" "$DIR/base.zfile" "$DIR/l1.zfile" "$DIR/l2.zfile") ;;
  esac
}
config_files() {  # CONFIG -> the files the server reads
  case $1 in
    raw-qemu) echo "$DIR/raw2.img" ;;
    raw-ovbd) echo "$DIR/flat.lsmt" ;;
    plain-qemu) echo "$DIR/base.qcow2 $DIR/l1.qcow2 $DIR/l2.qcow2" ;;
    plain-ovbd) echo "$DIR/base.lsmt $DIR/l1.lsmt $DIR/l2.lsmt" ;;
    comp-qemu) echo "$DIR/base-c.qcow2 $DIR/l1-c.qcow2 $DIR/l2-c.qcow2" ;;
    comp-ovbd) echo "$DIR/base.zfile $DIR/l1.zfile $DIR/l2.zfile" ;;
  esac
}
SEQ_CMD=(nbdcopy "$URI" null:)
FULL_CMD=(nbdcopy --no-extents "$URI" null:)
fio_cmd() {  # IODEPTH -> FIO array
  FIO=(fio --name=randread --ioengine=nbd "--uri=$URI" --rw=randread --bs=4k "--iodepth=$1"
       --time_based "--runtime=$RUNTIME" --randseed=1 --output-format=json)
}
CHECK_RAW_CMD="nbdcopy --no-extents '$URI' - | cmp - $DIR/raw2.img"
CHECK_EXT_CMD="nbdcopy '$URI' - | cmp - $DIR/raw2.img"

# ---- build ------------------------------------------------------------------------------------
if [[ $NO_BUILD == 0 && $DRY == 0 ]]; then
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    log "configuring $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOVBD_BUILD_TESTS=OFF >&2 \
      || die "configure failed"
  fi
  log "building ovbd bench_make_chain in $BUILD"
  cmake --build "$BUILD" -j 2 --target ovbd bench_make_chain >&2 || die "build failed"
fi
if [[ $DRY == 0 ]]; then
  [[ -x $OVBD && -x $MAKE_CHAIN ]] || die "$OVBD or $MAKE_CHAIN missing (drop --no-build?)"
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
  [[ $build_type == Release ]] || log "WARNING: $BUILD is a '$build_type' build, not Release"
fi

# ---- servers (cleanup on exit) ----------------------------------------------------------------
SERVER_PID=""
QEMU_W_PID=""
cleanup() {
  local p
  for p in $SERVER_PID $QEMU_W_PID; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  rm -f "$SOCK" "$SOCK.ctl"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() {  # PID LOGFILE: until the export answers (or the server died)
  local pid=$1 logf=$2
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || { log "server exited: $(tail -3 "$logf")"; return 1; }
    if [[ -S $SOCK ]] && nbdinfo --size "$URI" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  log "server not ready after 10 s: $(tail -3 "$logf")"; return 1
}
start_server() {  # CONFIG
  server_cmd "$1"
  rm -f "$SOCK" "$SOCK.ctl"
  "${SRV[@]}" >"$OUT/server-$1.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$SERVER_PID" "$OUT/server-$1.log"
}
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -f "$SOCK" "$SOCK.ctl"
}

# ---- data -------------------------------------------------------------------------------------
mkdir -p "$DIR"
[[ $(stat -f -c %T "$DIR") != tmpfs ]] || die "$DIR is on tmpfs; use --dir on a disk"
OUT=$DIR/results
mkdir -p "$OUT"
RECIPE_WANT="v1 size=$((1024 << 20)) writes1=1024 writes2=512 seed=$((0x0bd5eed))"
REPLAY=$DIR/replay_writes.py

write_replay_script() {
  cat >"$REPLAY" <<'EOF'
# replay_writes.py URI RAW WRITES: for each "OFFSET LENGTH" line of WRITES, copies those bytes of
# RAW to the NBD export URI (pwrite), then flushes. Builds a qcow2 overlay holding only the writes.
import sys
import nbd
uri, raw, writes = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(uri)
with open(raw, "rb") as f, open(writes) as w:
    for line in w:
        off, length = map(int, line.split())
        f.seek(off)
        h.pwrite(f.read(length), off)
h.flush()
h.shutdown()
EOF
}

# qcow2 overlay DST (backing BACKING) = exactly the writes in WRITES, bytes taken from RAW.
make_qcow2_overlay() {
  local backing=$1 dst=$2 raw=$3 writes=$4 wsock=$DIR/build.sock
  x rm -f "$dst" "$wsock"
  x qemu-img create -q -f qcow2 -b "$backing" -F qcow2 "$dst"
  CMDS+=("$(q qemu-nbd --socket "$wsock" -f qcow2 --cache=writeback "$dst") &   # exits after the client")
  if [[ $DRY == 0 ]]; then
    qemu-nbd --socket "$wsock" -f qcow2 --cache=writeback "$dst" &
    QEMU_W_PID=$!
    for _ in $(seq 1 100); do [[ -S $wsock ]] && break; sleep 0.05; done
  fi
  x /usr/bin/python3 "$REPLAY" "nbd+unix:///?socket=$wsock" "$raw" "$writes"
  if [[ $DRY == 0 ]]; then wait "$QEMU_W_PID" || die "qemu-nbd building $dst failed"; QEMU_W_PID=""; fi
}

prepare_data() {
  local have_recipe=""
  [[ -f $DIR/RECIPE ]] && have_recipe=$(cat "$DIR/RECIPE")
  if [[ $DRY == 1 || $REGEN == 1 || $have_recipe != "$RECIPE_WANT" ]]; then
    [[ $DRY == 1 ]] || log "generating the 3-layer content in $DIR (bench_make_chain)"
    rm -f "$DIR/DERIVED"
    x "$MAKE_CHAIN" "${GEN_ARGS[@]}" "$DIR"
  fi
  local derived_want
  derived_want="$RECIPE_WANT | $(qemu-img --version | head -1)"
  local have_derived=""
  [[ -f $DIR/DERIVED ]] && have_derived=$(cat "$DIR/DERIVED")
  if [[ $DRY == 1 || $REGEN == 1 || $have_derived != "$derived_want" ]]; then
    [[ $DRY == 1 ]] || log "deriving ZFiles, flat layer and qcow2 chains"
    rm -f "$DIR/DERIVED"
    local l
    for l in base l1 l2; do x "$OVBD" zfile compress -q -f "$DIR/$l.lsmt" "$DIR/$l.zfile"; done
    x "$OVBD" import -q -f "$DIR/raw2.img" -o "$DIR/flat.lsmt"
    [[ $DRY == 1 ]] || write_replay_script
    x rm -f "$DIR/base.qcow2"
    x qemu-img convert -O qcow2 "$DIR/raw0.img" "$DIR/base.qcow2"
    make_qcow2_overlay "$DIR/base.qcow2" "$DIR/l1.qcow2" "$DIR/raw1.img" "$DIR/l1.writes"
    make_qcow2_overlay "$DIR/l1.qcow2" "$DIR/l2.qcow2" "$DIR/raw2.img" "$DIR/l2.writes"
    x qemu-img convert -c -O qcow2 "$DIR/raw0.img" "$DIR/base-c.qcow2"
    x qemu-img convert -c -O qcow2 -B "$DIR/base-c.qcow2" -F qcow2 "$DIR/l1.qcow2" "$DIR/l1-c.qcow2"
    x qemu-img convert -c -O qcow2 -B "$DIR/l1-c.qcow2" -F qcow2 "$DIR/l2.qcow2" "$DIR/l2-c.qcow2"
    [[ $DRY == 1 ]] || echo "$derived_want" >"$DIR/DERIVED"
  fi
}

if [[ $DRY == 1 ]]; then
  prepare_data
  echo "## Commands (bench/nbd_bench.sh --dry-run)"
  echo
  echo "Data preparation:"
  echo '```'
  printf '%s\n' "${CMDS[@]}"
  echo '```'
  echo "Servers (one at a time on $SOCK; stopped with SIGTERM):"
  echo '```'
  for c in "${CONFIGS[@]}"; do server_cmd "$c"; printf '%-11s %s\n' "$c:" "$(q "${SRV[@]}")"; done
  echo '```'
  echo "Per server: correctness check, then $ROUNDS round(s) of the timed clients:"
  echo '```'
  echo "$CHECK_RAW_CMD"
  echo "$CHECK_EXT_CMD"
  echo "$(q "${SEQ_CMD[@]}")    # best of $SEQ_REPS"
  echo "$(q "${FULL_CMD[@]}")    # best of $SEQ_REPS"
  fio_cmd 1; q "${FIO[@]}"
  fio_cmd 32; q "${FIO[@]}"
  echo '```'
  exit 0
fi

prepare_data
log "data ready in $DIR ($(du -sh --apparent-size "$DIR" | cut -f1) apparent, $(du -sh "$DIR" | cut -f1) on disk)"

# ---- measurements -----------------------------------------------------------------------------
TCK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TCK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$SERVER_PID/stat"; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a - b }'; }
GIB=1073741824
declare -A R   # R[config:metric] = best value over rounds
best() {  # KEY VALUE max|min
  local key=$1 v=$2 how=$3 old=${R[$1]:-}
  if [[ -z $old ]] || awk -v a="$v" -v b="$old" -v h="$how" 'BEGIN { exit !(h == "max" ? a > b : a < b) }'; then
    R[$key]=$v
  fi
}
FAILED_TO_RUN=0
declare -A BAD

check_export() {  # CONFIG: the served bytes equal raw2.img, with and without extents
  if ! nbdcopy --no-extents "$URI" - 2>>"$OUT/check.err" | cmp -s - "$DIR/raw2.img"; then
    log "ERROR: $1 serves bytes that differ from raw2.img (nbdcopy --no-extents)"; return 1
  fi
  if ! nbdcopy "$URI" - 2>>"$OUT/check.err" | cmp -s - "$DIR/raw2.img"; then
    log "ERROR: $1: reading with extents (holes as zeros) differs from raw2.img"; return 1
  fi
}

run_seq() {  # CONFIG KEY COMMAND...: best wall of SEQ_REPS runs, mean CPU per GiB
  local c=$1 key=$2 s0 s1 t0 t1 wall uc sc srv_total=0 cli_total=0 bestwall=""
  for _ in $(seq 1 "$SEQ_REPS"); do
    s0=$(server_cpu)
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$OUT/time.txt" "${@:3}" 2>>"$OUT/client.err" \
      || { log "ERROR: nbdcopy failed on $c"; return 1; }
    t1=$(date +%s%N)
    s1=$(server_cpu)
    read -r uc sc <"$OUT/time.txt"   # /usr/bin/time's %e has 10 ms steps: wall from date
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }')
    srv_total=$(awk -v a="$srv_total" -v d="$(fsub "$s1" "$s0")" 'BEGIN { print a + d }')
    cli_total=$(awk -v a="$cli_total" -v u="$uc" -v s="$sc" 'BEGIN { print a + u + s }')
    if [[ -z $bestwall ]] || awk -v a="$wall" -v b="$bestwall" 'BEGIN { exit !(a < b) }'; then bestwall=$wall; fi
  done
  best "$c:${key}_mbs" "$(awk -v t="$bestwall" -v g=$GIB 'BEGIN { printf "%.1f", g / (t > 0 ? t : 0.005) / 1e6 }')" max
  best "$c:${key}_srv" "$(awk -v s="$srv_total" -v n="$SEQ_REPS" 'BEGIN { printf "%.3f", s / n }')" min
  best "$c:${key}_cli" "$(awk -v s="$cli_total" -v n="$SEQ_REPS" 'BEGIN { printf "%.3f", s / n }')" min
  best "$c:${key}_tot" "$(awk -v a="$srv_total" -v b="$cli_total" -v n="$SEQ_REPS" 'BEGIN { printf "%.3f", (a + b) / n }')" min
}

run_fio() {  # CONFIG IODEPTH
  local c=$1 qd=$2 s0 s1 json=$OUT/fio-$1-qd$2.json
  fio_cmd "$qd"
  s0=$(server_cpu)
  if ! "${FIO[@]}" >"$json.raw" 2>>"$OUT/client.err"; then log "ERROR: fio qd$qd failed on $c"; return 1; fi
  s1=$(server_cpu)
  sed -n '/^{/,$p' "$json.raw" >"$json"   # the nbd engine prints a line before the JSON
  local vals iops bytes ccpu srv gib
  vals=$(jq -r '.jobs[0] | "\(.read.iops) \(.read.io_bytes) \((.usr_cpu + .sys_cpu) / 100 * .job_runtime / 1000) \(.error)"' "$json") \
    || { log "ERROR: cannot parse $json"; return 1; }
  read -r iops bytes ccpu err <<<"$vals"
  [[ $err == 0 && $bytes -gt 0 ]] || { log "ERROR: fio qd$qd on $c: error $err, $bytes bytes"; return 1; }
  srv=$(fsub "$s1" "$s0")
  gib=$(awk -v b="$bytes" -v g=$GIB 'BEGIN { print b / g }')
  best "$c:qd${qd}_iops" "$(awk -v v="$iops" 'BEGIN { printf "%.0f", v }')" max
  best "$c:qd${qd}_srv" "$(awk -v s="$srv" -v g="$gib" 'BEGIN { printf "%.3f", s / g }')" min
  best "$c:qd${qd}_cli" "$(awk -v s="$ccpu" -v g="$gib" 'BEGIN { printf "%.3f", s / g }')" min
  best "$c:qd${qd}_tot" "$(awk -v a="$srv" -v b="$ccpu" -v g="$gib" 'BEGIN { printf "%.3f", (a + b) / g }')" min
}

measure() {  # CONFIG ROUND
  local c=$1 round=$2
  # shellcheck disable=SC2046
  cat $(config_files "$c") >/dev/null   # warm: every file the server reads is in the page cache
  start_server "$c" || { log "ERROR: cannot start $c"; FAILED_TO_RUN=1; BAD[$c]="server did not start"; return; }
  if [[ $round == 1 ]]; then
    log "$c: checking the served bytes against raw2.img"
    if ! check_export "$c"; then BAD[$c]="WRONG BYTES"; FAILED_TO_RUN=1; stop_server; return; fi
  else
    nbdcopy "$URI" null: 2>/dev/null || true   # warm pass
  fi
  log "$c (round $round/$ROUNDS): nbdcopy x$SEQ_REPS, nbdcopy --no-extents x$SEQ_REPS, fio qd1 ${RUNTIME}s, fio qd32 ${RUNTIME}s"
  run_seq "$c" seq "${SEQ_CMD[@]}" || { FAILED_TO_RUN=1; BAD[$c]="client failed"; }
  run_seq "$c" full "${FULL_CMD[@]}" || { FAILED_TO_RUN=1; BAD[$c]="client failed"; }
  run_fio "$c" 1 || { FAILED_TO_RUN=1; BAD[$c]="client failed"; }
  run_fio "$c" 32 || { FAILED_TO_RUN=1; BAD[$c]="client failed"; }
  stop_server
}

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONFIGS[@]}"; do
    [[ -z ${BAD[$c]:-} ]] || continue
    measure "$c" "$round"
  done
done
ELAPSED=$(( $(date +%s) - START ))

# ---- report -----------------------------------------------------------------------------------
GOALS_FAILED=0
v() { echo "${R[$1]:-}"; }
ratio() { if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; fi; }
cell() { if [[ -n $1 ]]; then echo "$1"; else echo "n/a"; fi; }
# goal_row LABEL OVBD BASE TARGET(ratio >=)
goal_row() {
  local r res
  r=$(ratio "$2" "$3")
  if [[ -z $r ]]; then res="NOT RUN"
  elif awk -v r="$r" -v t="$4" 'BEGIN { exit !(r >= t) }'; then res="PASS"
  else res="FAIL"; GOALS_FAILED=1; fi
  echo "| $1 | $(cell "$2") | $(cell "$3") | $(cell "${r:+${r}x}") | >= $4x | $res |"
}
# cpu_row LABEL OVBD_CPU BASE_CPU [info]: overhead = ovbd/base - 1, goal < 20%
cpu_row() {
  local r pct res
  r=$(ratio "$2" "$3")
  pct=""; [[ -z $r ]] || pct=$(awk -v r="$r" 'BEGIN { printf "%+.0f%%", (r - 1) * 100 }')
  if [[ ${4:-} == info ]]; then res="info"; [[ -n $r ]] || res="NOT RUN"
  elif [[ -z $r ]]; then res="NOT RUN"
  elif awk -v r="$r" 'BEGIN { exit !(r < 1.2) }'; then res="PASS"
  else res="FAIL"; GOALS_FAILED=1; fi
  local tgt="< +20%"; [[ ${4:-} != info ]] || tgt="—"
  echo "| $1 | $(cell "$2") | $(cell "$3") | $(cell "$pct") | $tgt | $res |"
}

report() {
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); load average before/after: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- $(qemu-nbd --version | head -1); $(nbdcopy --version | head -1); $(fio --version); ovbd build: $BUILD"
  echo "- data: $DIR ($(du -sh "$DIR" | cut -f1) on disk, ext4/xfs, not tmpfs); WARM page cache (files cat'ed, export read once before timing; no drop_caches)"
  echo "- $ROUNDS round(s) over all servers, interleaved; per metric the best round counts (throughput: max, CPU: min). nbdcopy: best of $SEQ_REPS per round; fio: ${RUNTIME} s time based. Total ${ELAPSED} s."
  echo "- MB/s = 10^6 bytes/s of the 1 GiB device; IOPS of 4 KiB random reads over the whole device. CPU = server (all threads) + client CPU seconds per GiB delivered."
  echo
  echo "#### Throughput"
  echo
  echo "| workload | ${LABEL[raw-qemu]} | ${LABEL[raw-ovbd]} | ${LABEL[plain-qemu]} | ${LABEL[plain-ovbd]} | ${LABEL[comp-qemu]} | ${LABEL[comp-ovbd]} |"
  echo "|---|---|---|---|---|---|---|"
  local w c line
  for w in seq_mbs:"sequential read, nbdcopy (MB/s)" full_mbs:"sequential read of every byte, nbdcopy --no-extents (MB/s)" qd1_iops:"4K randread QD1, fio (IOPS)" qd32_iops:"4K randread QD32, fio (IOPS)"; do
    line="| ${w#*:} |"
    for c in "${CONFIGS[@]}"; do
      if [[ -n ${BAD[$c]:-} && -z $(v "$c:${w%%:*}") ]]; then line+=" ${BAD[$c]} |"; else line+=" $(cell "$(v "$c:${w%%:*}")") |"; fi
    done
    echo "$line"
  done
  echo
  echo "#### CPU seconds per GiB delivered (server + client = total)"
  echo
  echo "| workload | ${LABEL[raw-qemu]} | ${LABEL[raw-ovbd]} | ${LABEL[plain-qemu]} | ${LABEL[plain-ovbd]} | ${LABEL[comp-qemu]} | ${LABEL[comp-ovbd]} |"
  echo "|---|---|---|---|---|---|---|"
  for w in seq:"sequential read" full:"sequential read, --no-extents" qd1:"4K randread QD1" qd32:"4K randread QD32"; do
    line="| ${w#*:} |"
    for c in "${CONFIGS[@]}"; do
      local k=${w%%:*}
      if [[ -n $(v "$c:${k}_tot") ]]; then line+=" $(v "$c:${k}_srv") + $(v "$c:${k}_cli") = **$(v "$c:${k}_tot")** |"
      else line+=" n/a |"; fi
    done
    echo "$line"
  done
  echo
  echo "#### Goals"
  echo
  echo "| goal | ovbd | baseline | ratio / overhead | target | result |"
  echo "|---|---|---|---|---|---|"
  goal_row "plain chain, sequential read (MB/s): ovbd lsmt vs qemu-nbd qcow2" "$(v plain-ovbd:seq_mbs)" "$(v plain-qemu:seq_mbs)" 1.0
  goal_row "plain chain, 4K randread QD1 (IOPS)" "$(v plain-ovbd:qd1_iops)" "$(v plain-qemu:qd1_iops)" 1.0
  goal_row "plain chain, 4K randread QD32 (IOPS)" "$(v plain-ovbd:qd32_iops)" "$(v plain-qemu:qd32_iops)" 1.0
  goal_row "compressed chain, sequential read (MB/s): ovbd zfile lz4 vs qemu-nbd qcow2 zlib" "$(v comp-ovbd:seq_mbs)" "$(v comp-qemu:seq_mbs)" 1.5
  goal_row "compressed chain, 4K randread QD1 (IOPS)" "$(v comp-ovbd:qd1_iops)" "$(v comp-qemu:qd1_iops)" 1.5
  goal_row "compressed chain, 4K randread QD32 (IOPS)" "$(v comp-ovbd:qd32_iops)" "$(v comp-qemu:qd32_iops)" 1.5
  cpu_row "CPU overhead, sequential read of every byte (nbdcopy --no-extents, CPU s/GiB): ovbd plain chain vs raw2.img via qemu-nbd -f raw" "$(v plain-ovbd:full_tot)" "$(v raw-qemu:full_tot)"
  cpu_row "CPU overhead, 4K randread QD1 (CPU s/GiB)" "$(v plain-ovbd:qd1_tot)" "$(v raw-qemu:qd1_tot)"
  cpu_row "CPU overhead, 4K randread QD32 (CPU s/GiB)" "$(v plain-ovbd:qd32_tot)" "$(v raw-qemu:qd32_tot)"
  cpu_row "(info) layer-format cost: ovbd plain chain vs ovbd flat.lsmt, QD32" "$(v plain-ovbd:qd32_tot)" "$(v raw-ovbd:qd32_tot)" info
  cpu_row "(info) ovbd flat.lsmt vs qemu-nbd raw, QD32 (NBD server cost)" "$(v raw-ovbd:qd32_tot)" "$(v raw-qemu:qd32_tot)" info
  cpu_row "(info) ovbd plain chain vs raw via qemu-nbd, sequential with extents (raw2.img: 4K-granular holes)" "$(v plain-ovbd:seq_tot)" "$(v raw-qemu:seq_tot)" info
  cpu_row "(info) ovbd lz4 chain vs raw via qemu-nbd, sequential --no-extents" "$(v comp-ovbd:full_tot)" "$(v raw-qemu:full_tot)" info
  echo
  echo "#### Commands"
  echo
  echo "Servers (page cache warm, one at a time):"
  echo '```'
  for c in "${CONFIGS[@]}"; do server_cmd "$c"; printf '%-11s %s\n' "$c:" "$(q "${SRV[@]}")"; done
  echo '```'
  echo "Clients (the same for every server); the export is first checked with:"
  echo '```'
  echo "$CHECK_RAW_CMD"
  echo "$CHECK_EXT_CMD"
  echo "$(q "${SEQ_CMD[@]}")"
  echo "$(q "${FULL_CMD[@]}")"
  fio_cmd 1; q "${FIO[@]}"
  fio_cmd 32; q "${FIO[@]}"
  echo '```'
  echo "Data preparation: \`bench/nbd_bench.sh --dry-run\`."
}

report >"$OUT/nbd_bench.md"   # not in a subshell: report sets GOALS_FAILED
cat "$OUT/nbd_bench.md"
if [[ -n $MD_OUT ]]; then cp "$OUT/nbd_bench.md" "$MD_OUT"; fi
log "report also in $OUT/nbd_bench.md; goals: $([[ $GOALS_FAILED == 0 ]] && echo 'all PASS' || echo 'some FAIL')"
exit "$FAILED_TO_RUN"
