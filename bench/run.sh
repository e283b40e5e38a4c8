#!/usr/bin/env bash
# bench/run.sh [BUILD_DIR] — builds the Release benchmarks, runs them and the CLI comparisons,
# and prints one markdown table: goal | ovbd | baseline | ratio | target | result.
#
#   BUILD_DIR                 default build/release (configured with `cmake --preset release`)
#   OVBD_BENCH_DIR            on-disk data (default BUILD_DIR/bench-data; refused if tmpfs)
#   OVBD_BENCH_MIN_TIME       --benchmark_min_time per repetition, seconds (default 0.2)
#   OVBD_BENCH_REPS           repetitions, randomly interleaved; the best one counts (default 3)
#   OVBD_BENCH_DATA_MIB       size of the raw file for the CLI rows (default 512)
#   OVBD_BENCH_JOBS           build parallelism (default 2)
#
# Every ratio compares numbers taken in the same invocation (Google Benchmark repetitions
# interleaved; CLI runs back to back, best of 3), so a busy machine lowers both sides.
# Exit status: 0 when everything ran (even if goals FAIL: the table says so); 1 when something
# could not run (build, data generation, a benchmark or CLI command failing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build/release}
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
MIN_TIME=${OVBD_BENCH_MIN_TIME:-0.2}
REPS=${OVBD_BENCH_REPS:-3}
DATA_MIB=${OVBD_BENCH_DATA_MIB:-512}
JOBS=${OVBD_BENCH_JOBS:-2}

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "[bench] $*" >&2; }
for tool in cmake jq awk lz4; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
done

# ---- build ----------------------------------------------------------------------------------
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  if [[ $BUILD == "$ROOT/build/release" ]]; then
    (cd "$ROOT" && cmake --preset release -DOVBD_BUILD_TESTS=OFF >&2) || die "configure failed"
  else
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOVBD_BUILD_TESTS=OFF >&2 \
      || die "configure failed"
  fi
else
  cmake "$BUILD" >/dev/null || die "re-configure of $BUILD failed"  # picks up index_bench.cc
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
[[ $build_type == Release ]] || log "WARNING: $BUILD is a '$build_type' build, not Release"
targets=(ovbd zfile_bench lsmt_bench bench_make_data)
HAVE_INDEX_BENCH=0
if [[ -f $ROOT/bench/index_bench.cc ]]; then targets+=(index_bench); HAVE_INDEX_BENCH=1; fi
log "building ${targets[*]} in $BUILD"
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >&2 || die "build failed"
OVBD=$BUILD/src/cli/ovbd
BENCH=$BUILD/bench

# ---- data -----------------------------------------------------------------------------------
DATA=${OVBD_BENCH_DIR:-$BUILD/bench-data}
mkdir -p "$DATA"
[[ $(stat -f -c %T "$DATA") != tmpfs ]] || die "$DATA is on tmpfs; set OVBD_BENCH_DIR to a disk"
export OVBD_BENCH_DIR=$DATA
OUT=$DATA/results
mkdir -p "$OUT"
RAW=$DATA/disk-like-${DATA_MIB}M.img
if [[ ! -f $RAW || $(stat -c %s "$RAW") -ne $((DATA_MIB << 20)) ]]; then
  log "generating $RAW"
  "$BENCH/bench_make_data" "$DATA_MIB" "$RAW" || die "bench_make_data failed"
fi

FAILED_TO_RUN=0
# run_gbench NAME BINARY [extra flags...]: JSON into $OUT/NAME.json, console log beside it.
run_gbench() {
  local name=$1 bin=$2; shift 2
  log "running $name (min_time ${MIN_TIME}s x $REPS interleaved repetitions)"
  if ! "$bin" --benchmark_format=json --benchmark_min_time="$MIN_TIME" \
      --benchmark_repetitions="$REPS" --benchmark_enable_random_interleaving=true \
      "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"; then
    log "ERROR: $name failed (see $OUT/$name.log)"; tail -5 "$OUT/$name.log" >&2
    FAILED_TO_RUN=1
  fi
}
run_gbench zfile_bench "$BENCH/zfile_bench"
run_gbench lsmt_bench "$BENCH/lsmt_bench"
if [[ $HAVE_INDEX_BENCH == 1 ]]; then
  run_gbench index_bench "$BENCH/index_bench" \
    --benchmark_filter='BM_LowerBoundBaseline/1000000|BM_SegmentIndexLookup/1000000|BM_MergeAndBuild'
fi

# gb FILE RUN_NAME FIELD [max|min]: best value of FIELD over the repetitions of RUN_NAME
# (max for throughputs, min for times); empty if missing or errored.
gb() {
  local file=$OUT/$1.json
  [[ -s $file ]] || { echo ""; return; }
  jq -r --arg n "$2" --arg f "$3" --arg how "${4:-max}" '
    [.benchmarks[] | select(.run_type == "iteration" and .run_name == $n
                            and (.error_occurred | not)) | .[$f] | select(. != null)]
    | if length == 0 then "" elif $how == "min" then min else max end' "$file" 2>/dev/null || echo ""
}
gb_errors() {  # error messages of benchmarks that failed
  local file=$OUT/$1.json
  [[ -s $file ]] || return 0
  jq -r '.benchmarks[] | select(.error_occurred) | "\(.run_name): \(.error_message)"' "$file" \
    2>/dev/null | sort -u
}

# ---- CLI comparisons ------------------------------------------------------------------------
# best_time CMD...: best wall time (seconds) of 3 runs; empty (and $OUT/cli.failed) if it fails.
# Runs in a $(...) subshell, hence the marker file instead of a variable.
best_time() {
  local best="" t0 t1 t
  for _ in 1 2 3; do
    t0=$(date +%s.%N)
    if ! "$@" >/dev/null 2>"$OUT/cli.err"; then
      log "ERROR: $* failed: $(tail -2 "$OUT/cli.err")"; touch "$OUT/cli.failed"; echo ""; return
    fi
    t1=$(date +%s.%N)
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (a == "" || b < a) ? b : a }')
  done
  echo "$best"
}
RAW_BYTES=$(stat -c %s "$RAW")
rm -f "$OUT/cli.failed"
ZF=$DATA/disk-like-${DATA_MIB}M.zfile
log "warming the page cache"
cat "$RAW" >/dev/null
log "lz4 -b1 -B4096 on $RAW"
lz4_line=$(lz4 -b1 -B4096 -i2 "$RAW" 2>&1 | tr '\r' '\n' | grep -E 'MB/s *, *[0-9.]+ MB/s' | tail -1 || true)
LZ4_C=$(sed -nE 's/.*[ ,]([0-9.]+) MB\/s *,.*/\1/p' <<<"$lz4_line")   # MB/s = 1e6 B/s
LZ4_D=$(sed -nE 's/.*, *([0-9.]+) MB\/s *$/\1/p' <<<"$lz4_line")
[[ -n $LZ4_C && -n $LZ4_D ]] || { log "ERROR: could not parse lz4 -b output: $lz4_line"; FAILED_TO_RUN=1; }
log "ovbd zfile compress --threads 2 (best of 3)"
T_C2=$(best_time "$OVBD" zfile compress -q -f --threads 2 "$RAW" "$ZF")
T_C1=$(best_time "$OVBD" zfile compress -q -f --threads 1 "$RAW" "$ZF")
cat "$ZF" >/dev/null 2>&1 || true
log "ovbd zfile decompress (best of 3)"
T_D=$(best_time "$OVBD" zfile decompress -q "$ZF" /dev/null)
T_D1=$(best_time "$OVBD" zfile decompress -q --threads 1 "$ZF" /dev/null)
mbps() {
  if [[ -n $1 ]]; then awk -v b="$RAW_BYTES" -v t="$1" 'BEGIN { printf "%.1f", b / t / 1e6 }'; fi
}
CLI_C2=$(mbps "$T_C2"); CLI_C1=$(mbps "$T_C1"); CLI_D=$(mbps "$T_D"); CLI_D1=$(mbps "$T_D1")
[[ ! -f $OUT/cli.failed ]] || FAILED_TO_RUN=1

# ---- table ----------------------------------------------------------------------------------
GOALS_FAILED=0
fmt() {
  if [[ -n $1 ]]; then awk -v v="$1" -v s="${2:-1}" -v d="${3:-1}" 'BEGIN { printf "%.*f", d, v / s }'; fi
}
# row GOAL OVBD BASELINE TARGET_OP TARGET [UNIT_OVBD UNIT_BASE]
#   TARGET_OP: ge (ratio >= target), lt (ovbd < target), info (no target)
row() {
  local goal=$1 ov=$2 base=$3 op=$4 target=$5 uo=${6:-} ub=${7:-${6:-}}
  local ratio="—" result="info" tgt="—" ovs="n/a" bs="—"
  if [[ -n $ov ]]; then ovs="$ov $uo"; fi
  if [[ $base != "-" ]]; then bs="n/a"; if [[ -n $base ]]; then bs="$base $ub"; fi; fi
  if [[ -n $ov && -n $base && $base != "-" ]]; then
    ratio=$(awk -v a="$ov" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')
  fi
  case $op in
    ge) tgt=">= ${target}x"
        if [[ $ratio == "—" ]]; then result="NOT RUN"
        elif awk -v r="${ratio%x}" -v t="$target" 'BEGIN { exit !(r >= t) }'; then result="PASS"
        else result="FAIL"; GOALS_FAILED=1; fi ;;
    lt) tgt="< $target $uo"
        if [[ -z $ov ]]; then result="NOT RUN"
        elif awk -v v="$ov" -v t="$target" 'BEGIN { exit !(v < t) }'; then result="PASS"
        else result="FAIL"; GOALS_FAILED=1; fi ;;
    info) if [[ -z $ov ]]; then result="NOT RUN"; fi ;;
  esac
  echo "| $goal | $ovs | $bs | $ratio | $tgt | $result |"
}

MB=1e6
ZB=zfile_bench
seq_lz4=$(fmt "$(gb $ZB BM_ZFileSequentialRead/algo:1/bs:4096 bytes_per_second)" $MB)
raw_lz4=$(fmt "$(gb $ZB BM_RawLz4DecompressBlocks bytes_per_second)" $MB)
rnd_zf=$(fmt "$(gb $ZB BM_ZFileRandomRead4K items_per_second)" 1e3)
rnd_raw=$(fmt "$(gb $ZB BM_RawLz4RandomBlock items_per_second)" 1e3)
open_ms=$(fmt "$(gb lsmt_bench BM_OpenStack255/real_time real_time min)" 1 0)
mem_seg=$(fmt "$(gb lsmt_bench BM_OpenStack255/real_time index_bytes_per_segment min)" 1 1)
open_cpu=$(fmt "$(gb lsmt_bench BM_OpenStack255/real_time cpu_time min)" 1 0)
merged=$(gb lsmt_bench BM_OpenStack255/real_time merged_segments)
lookup=$(fmt "$(gb index_bench BM_SegmentIndexLookup/1000000 items_per_second)" 1e6 2)
lbound=$(fmt "$(gb index_bench BM_LowerBoundBaseline/1000000 items_per_second)" 1e6 2)

{
echo "## ovbd benchmark results"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- build: $BUILD ($build_type); data: $DATA; MB = 10^6 bytes"
echo "- Google Benchmark: min_time ${MIN_TIME}s, $REPS interleaved repetitions, best shown; CLI: best of 3"
echo
echo "| goal | ovbd | baseline | ratio | target | result |"
echo "|---|---|---|---|---|---|"
row "ZFile sequential read, lz4 4K + CRC, in-process (1 MiB ReadAt) vs LZ4_decompress_safe on the same blocks" \
    "$seq_lz4" "$raw_lz4" ge 0.8 MB/s
row "\`ovbd zfile decompress F /dev/null\` (${DATA_MIB} MiB, default threads) vs \`lz4 -b1 -B4096\` decompression" \
    "$CLI_D" "$LZ4_D" ge 0.7 MB/s
row "\`ovbd zfile compress --threads 2\` vs \`lz4 -b1 -B4096\` compression" \
    "$CLI_C2" "$LZ4_C" ge 1.3 MB/s
if [[ $HAVE_INDEX_BENCH == 1 ]]; then
  row "merged-index lookup (FindFirstEndingAfter), 1M segments, vs std::lower_bound" \
      "$lookup" "$lbound" ge 3 "M lookups/s"
else
  row "merged-index lookup, 1M segments (bench/index_bench.cc missing)" "" "" ge 3
fi
row "open 255 layers x 10K segments (image::OpenImage, ${merged:-?} merged segments; wall time, CPU ${open_cpu:-?} ms)" \
    "$open_ms" - lt 1000 ms
row "index memory per merged segment (open Image, heap/RSS delta)" "$mem_seg" - lt 24 B
row "random 4K read (lz4 4K) vs LZ4_decompress_safe of the same blocks" \
    "$rnd_zf" "$rnd_raw" info - "K reads/s"
for bs in 4096 16384 65536; do
  row "ZFile sequential read, zstd $((bs / 1024))K + CRC vs ZSTD_decompressDCtx on the same blocks" \
      "$(fmt "$(gb $ZB BM_ZFileSequentialRead/algo:2/bs:$bs bytes_per_second)" $MB)" \
      "$(fmt "$(gb $ZB BM_RawZstdDecompressBlocks/bs:$bs bytes_per_second)" $MB)" info - MB/s
done
raw_c=$(fmt "$(gb $ZB BM_RawLz4CompressBlocks/real_time bytes_per_second)" $MB)
for t in 1 2; do
  row "zfile::Compress lz4 4K, $t thread(s), in-process vs LZ4_compress_default (1 thread)" \
      "$(fmt "$(gb $ZB BM_Compress/threads:$t/real_time bytes_per_second)" $MB)" "$raw_c" info - MB/s
done
row "\`ovbd zfile compress --threads 1\` vs \`lz4 -b1 -B4096\` compression" "$CLI_C1" "$LZ4_C" info - MB/s
row "\`ovbd zfile decompress --threads 1\` vs \`lz4 -b1 -B4096\` decompression" "$CLI_D1" "$LZ4_D" info - MB/s
for z in 0 1 2; do
  label="plain blob"; [[ $z != 0 ]] && label="through zfile lz4 4K, $z thread(s)"
  row "commit of an RW layer with 256 MiB (random 64K..1M writes), $label, to memory" \
      "$(fmt "$(gb lsmt_bench BM_Commit/zfile_threads:$z/real_time bytes_per_second)" $MB)" - info - MB/s
done
if [[ $HAVE_INDEX_BENCH == 1 ]]; then
  row "merge 255x10K indexes + build SegmentIndex (index_bench, synthetic)" \
      "$(fmt "$(gb index_bench BM_MergeAndBuild_255x10K real_time min)" 1 0)" - info - ms
fi
} >"$OUT/table.md"  # a group, not a pipeline: row() must set GOALS_FAILED in this shell
cat "$OUT/table.md"

errors=$(for b in zfile_bench lsmt_bench index_bench; do gb_errors $b; done)
if [[ -n $errors ]]; then
  echo; echo "Benchmarks that reported errors:"; echo "$errors" | sed 's/^/- /'
  FAILED_TO_RUN=1
fi
echo
if [[ $GOALS_FAILED == 1 ]]; then echo "Some goals FAIL (reported above)."; else echo "All goals that ran PASS."; fi
echo "Raw results: $OUT/*.json; table: $OUT/table.md"
exit $FAILED_TO_RUN
