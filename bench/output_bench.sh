#!/usr/bin/env bash
# bench/output_bench.sh — how fast ovbd writes an output file, against `cp` of the same number of
# bytes in the same run (issue 10): commit to a plain LSMT blob, merge to a plain blob, and
# `zfile decompress` to a file, each without and with --sync.
#
#   data      bench_make_data N MiB (disk-like, lz4 ~2-3x) = raw.img;
#             RW layer l = raw.img written at offset 0 of a 2N MiB device (`ovbd write`);
#             RW layer t = the first N/8 MiB of raw.img written at offset N/4;
#             base.lsmt = commit l, top.lsmt = commit t, merged.lsmt = merge base top,
#             raw.zfile = zfile compress raw.img (lz4 4K + CRC).
#   rows      A (ovbd)                                       B (baseline, same bytes)
#             commit -q l.data l.index OUT                   cp base.lsmt OUT
#             merge -q -o OUT base.lsmt top.lsmt             cp merged.lsmt OUT
#             zfile decompress -q raw.zfile OUT              cp raw.img OUT
#             ... each again with --sync                     cp SRC OUT && sync OUT DIR
#             (`sync OUT DIR` is fsync of the file and of its directory: what --sync does)
#   timing    A and B alternate (A B A B ...), PAIRS pairs after one warm-up pair; OUT is removed
#             before each run, outside the timed part. Wall and CPU (user+sys of the command) come
#             from bash's `time`. Shown: medians of the times, and the median of the per-pair
#             ratios A/B (pairing keeps a ratio meaningful when the machine's speed drifts).
#   goal      unsynced rows: A/B wall <= 1.5x. The --sync rows are information (both sides wait
#             for the same disk).
#   cache     inputs are in the page cache (read once before timing); outputs go to DIR on disk.
#
# Usage: bench/output_bench.sh [--build DIR] [--dir DIR] [--mib N] [--pairs N] [--no-build]
#   --build DIR   build tree (default build/release, configured with `cmake --preset release`)
#   --dir DIR     data directory on disk (default /var/tmp/ovbd-bench/output; refused on tmpfs)
#   --mib N       size of raw.img in MiB (default 512)
#   --pairs N     timed A/B pairs per row (default 7)
# Output: a markdown table on stdout (logs on stderr). Exit 0 when everything ran (goals may FAIL:
# the table says so), 1 when something could not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/release
DIR=/var/tmp/ovbd-bench/output
MIB=512
PAIRS=7
NO_BUILD=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--dir DIR] [--mib N] [--pairs N] [--no-build]" >&2; exit 2 ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac

die() { echo "bench/output_bench.sh: $*" >&2; exit 1; }
log() { echo "[output-bench] $*" >&2; }

if [[ $NO_BUILD == 0 ]]; then
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    (cd "$ROOT" && cmake --preset release >&2) || die "configure failed"
  fi
  cmake --build "$BUILD" -j 2 --target ovbd bench_make_data >&2 || die "build failed"
fi
OVBD=$BUILD/src/cli/ovbd
[[ -x $OVBD && -x $BUILD/bench/bench_make_data ]] || die "no ovbd / bench_make_data in $BUILD"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[[ $(stat -f -c %T "$DIR") != tmpfs ]] || die "$DIR is on tmpfs; give --dir on a disk"
cd "$DIR"

# ---- data -----------------------------------------------------------------------------------
STAMP="mib=$MIB v1"
if [[ ! -f stamp || $(cat stamp) != "$STAMP" ]]; then
  log "making the data in $DIR ($MIB MiB)"
  rm -f raw.img l.data l.index t.data t.index base.lsmt top.lsmt merged.lsmt raw.zfile stamp
  "$BUILD/bench/bench_make_data" "$MIB" raw.img
  "$OVBD" create --size "$((2 * MIB))M" l.data l.index
  "$OVBD" write l.data l.index --offset 0 raw.img
  "$OVBD" create --size "$((2 * MIB))M" t.data t.index
  head -c "$((MIB / 8))M" raw.img | "$OVBD" write t.data t.index --offset "$((MIB / 4))M" -
  "$OVBD" commit -q l.data l.index base.lsmt
  "$OVBD" commit -q t.data t.index top.lsmt
  "$OVBD" merge -q -o merged.lsmt base.lsmt top.lsmt
  "$OVBD" zfile compress -q raw.img raw.zfile
  sync
  echo "$STAMP" >stamp
fi
log "warming the page cache with the inputs"
cat raw.img l.data l.index base.lsmt top.lsmt merged.lsmt raw.zfile >/dev/null

# ---- timing ---------------------------------------------------------------------------------
# timed CMD...: runs CMD (stdout/stderr to $DIR/run.err); prints "wall cpu" in seconds.
timed() {
  local TIMEFORMAT='%R %U %S' t
  t=$( { time "$@" >/dev/null 2>run.err; } 2>&1 ) || { log "ERROR: $* failed: $(tail -2 run.err)"; return 1; }
  awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' <<<"$t"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cp_out() { cp "$1" out.cp; }
cp_sync_out() { cp "$1" out.cp && sync out.cp "$DIR"; }

FAILED_TO_RUN=0
GOALS_FAILED=0
ROWS=()
# pair_row LABEL SYNCED(0/1) BASE_SRC -- OVBD ARGS (OUT is the word "OUT")
pair_row() {
  local label=$1 synced=$2 src=$3; shift 4
  local args=("${@/#OUT/out.ovbd}") base=cp_out
  [[ $synced == 1 ]] && base=cp_sync_out
  local bytes=$(( $(stat -c %s "$src") ))
  local aw=() ac=() bw=() bc=() ratios=() i a b
  log "$label: $PAIRS pairs (+1 warm-up)"
  for ((i = 0; i <= PAIRS; i++)); do
    rm -f out.ovbd out.cp
    a=$(timed "$OVBD" "${args[@]}") || { FAILED_TO_RUN=1; return; }
    [[ $(stat -c %s out.ovbd) == "$bytes" ]] || { log "ERROR: $label wrote $(stat -c %s out.ovbd) bytes, expected $bytes"; FAILED_TO_RUN=1; return; }
    rm -f out.ovbd out.cp
    b=$(timed "$base" "$src") || { FAILED_TO_RUN=1; return; }
    [[ $i == 0 ]] && continue
    aw+=("${a% *}"); ac+=("${a#* }"); bw+=("${b% *}"); bc+=("${b#* }")
    ratios+=("$(awk -v x="${a% *}" -v y="${b% *}" 'BEGIN { printf "%.4f", x / y }')")
  done
  rm -f out.ovbd out.cp
  local maw mac mbw mbc mr rmin rmax result target
  maw=$(printf '%s\n' "${aw[@]}" | median); mac=$(printf '%s\n' "${ac[@]}" | median)
  mbw=$(printf '%s\n' "${bw[@]}" | median); mbc=$(printf '%s\n' "${bc[@]}" | median)
  mr=$(printf '%s\n' "${ratios[@]}" | median)
  rmin=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1); rmax=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
  if [[ $synced == 0 ]]; then
    target="<= 1.5x"
    if awk -v r="$mr" 'BEGIN { exit !(r <= 1.5) }'; then result=PASS; else result=FAIL; GOALS_FAILED=1; fi
  else
    target="—"; result=info
  fi
  local base_label="cp"
  [[ $synced == 1 ]] && base_label="cp + sync"
  ROWS+=("$(printf '| %s | %d MiB | %.3f s (cpu %.3f) | %s: %.3f s (cpu %.3f) | %.2fx (%.2f..%.2f) | %s | %s |' \
    "$label" $((bytes >> 20)) "$maw" "$mac" "$base_label" "$mbw" "$mbc" "$mr" "$rmin" "$rmax" "$target" "$result")")
}

for s in 0 1; do
  flag=(); name=""
  [[ $s == 1 ]] && { flag=(--sync); name=" --sync"; }
  pair_row "\`commit${name}\` to a plain blob" $s base.lsmt -- commit -q "${flag[@]}" l.data l.index OUT
  pair_row "\`merge${name}\` of 2 layers to a plain blob" $s merged.lsmt -- merge -q "${flag[@]}" -o OUT base.lsmt top.lsmt
  pair_row "\`zfile decompress${name}\` (lz4 4K) to a file" $s raw.img -- zfile decompress -q "${flag[@]}" raw.zfile OUT
done

echo "## ovbd output writing vs cp"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- data: $DIR ($(stat -f -c %T "$DIR")), raw.img $MIB MiB; $PAIRS A/B pairs per row; medians, ratio = median of per-pair ratios (min..max)"
echo
echo "| operation | bytes written | ovbd (wall, median) | baseline, same bytes | ovbd / baseline | target | result |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
if [[ $GOALS_FAILED == 1 ]]; then echo "Some goals FAIL (reported above)."; else echo "All goals that ran PASS."; fi
exit $FAILED_TO_RUN
