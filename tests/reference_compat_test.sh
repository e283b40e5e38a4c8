#!/usr/bin/env bash
# Reference compatibility: every layer variant ovbd writes must be readable by the REFERENCE
# format rules, checked with tests/reference_reader.py (an independent reader written from
# shared/format/overlaybd.md only), and must read back the same through ovbd.
#
# usage: reference_compat_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (/usr/bin/python3 lacks lz4/zstandard).
set -u

OVBD=${1:?usage: reference_compat_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: reference_compat_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
READER="$(cd "$(dirname "$0")" && pwd)/reference_reader.py"

if [ ! -x "$PY" ]; then
  echo "SKIP: $PY not found (the reference reader needs Debian's python3 with python3-lz4 and python3-zstandard)"
  exit 77
fi
if ! "$PY" -c 'import lz4.block, zstandard' 2>/dev/null; then
  echo "SKIP: $PY lacks the lz4 and/or zstandard modules (apt-get install python3-lz4 python3-zstandard;" \
       "scripts/install-deps.sh installs them)"
  exit 77
fi
[ -x "$OVBD" ] || { echo "FAIL: ovbd binary '$OVBD' not found"; exit 1; }
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-refcompat.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

pass=0
fail=0
beyond=0
ok()  { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
ref() { "$PY" "$READER" --strict "$@"; }

# Run an ovbd command; on failure record it and return 1.
run() {
  "$OVBD" "$@" >"$T/ovbd.out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    bad "ovbd $* (exit $rc): $(head -c 600 "$T/ovbd.out")"
    return 1
  fi
}

# md5_is WHAT EXPECTED CMD... : md5 of CMD's stdout (CMD must exit 0)
md5_is() {
  local what=$1 want=$2; shift 2
  local got rc
  got=$("$@" 2>"$T/err" | md5sum | cut -d' ' -f1; exit "${PIPESTATUS[0]}")
  rc=$?
  if [ $rc -ne 0 ]; then bad "$what: exit $rc: $(head -c 600 "$T/err")"
  elif [ "$got" != "$want" ]; then bad "$what: md5 $got, expected $want"
  else ok "$what"; fi
}

# check_ref NAME MAY_BE_BEYOND EXPECTED_FILE READER_ARGS...
# Runs the reference reader (--ignore-read-limit, so it still produces the output when a block
# is over the reference's 64 KiB read limit) and compares its output with EXPECTED_FILE.
# Exit 3 (beyond the reference's limit) is accepted only when MAY_BE_BEYOND=1 (64K blocks).
check_ref() {
  local name=$1 may_beyond=$2 expected=$3; shift 3
  local rc
  ref --ignore-read-limit "$@" >"$T/ref.out" 2>"$T/ref.err"
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
    bad "$name: reference reader exit $rc: $(head -c 600 "$T/ref.err")"
    return
  fi
  if [ $rc -eq 3 ] && { [ "$may_beyond" != 1 ] || ! grep -q MAX_READ_SIZE "$T/ref.err"; }; then
    bad "$name: not readable by the reference: $(head -c 600 "$T/ref.err")"
    return
  fi
  if ! cmp -s "$T/ref.out" "$expected"; then
    bad "$name: reference reader output differs from ovbd's: $(cmp "$T/ref.out" "$expected" 2>&1 | head -c 300)"
    return
  fi
  if [ $rc -eq 3 ]; then
    beyond=$((beyond + 1))
    ok "$name (content equal; beyond the reference reader's limit: ovbd reads it, overlaybd would not:" \
       "$(grep -o 'on-disk entry of [0-9]* bytes' "$T/ref.err" | head -1))"
  else
    ok "$name"
  fi
}

# expect_info NAME FILE WORDS... : the reader's `info` line of FILE contains every WORD.
expect_info() {
  local name=$1 file=$2 line w; shift 2
  if ! line=$(ref info "$file" 2>"$T/err"); then
    bad "$name: info: $(head -c 600 "$T/err")"; return 1
  fi
  for w in "$@"; do
    case " $line " in
      *" $w "*) ;;
      *) bad "$name: expected '$w' in: $line"; return 1 ;;
    esac
  done
}

# ------------------------------------------------------------------------------------------------
echo "== 1. reference reader self-check on the golden vectors (made by overlaybd's own tools)"
md5_is "vector layer0.zstd-16k-nocrc-hdrovw.zfile decompresses to layer0.lsmt" f7e821df2c985f4926647452e2b9ab8d \
  ref zfile-decompress "$VEC/layer0.zstd-16k-nocrc-hdrovw.zfile"
md5_is "vector plain.lz4-4k-crc.zfile decompresses to plain.bin" e531f6e154d34b9c6f65149d3b961bc9 \
  ref zfile-decompress "$VEC/plain.lz4-4k-crc.zfile"
md5_is "vector layer1.zstd-64k-crc.zfile decompresses to layer1.lsmt" c97baf54c04ec670de6922f140457e9a \
  ref zfile-decompress "$VEC/layer1.zstd-64k-crc.zfile"
md5_is "vector stack layer0.lz4-4k-crc.zfile + layer1.lz4-4k-crc.zfile.tar" ca7d25ce00c72165dcb351bf308f46fa \
  ref cat "$VEC/layer0.lz4-4k-crc.zfile" "$VEC/layer1.lz4-4k-crc.zfile.tar"
# The reader must really check CRCs: flip one byte inside block 5 of a CRC'd vector.
cp "$VEC/plain.lz4-4k-crc.zfile" corrupt.zfile
printf '\xff' | dd of=corrupt.zfile bs=1 seek=3000 conv=notrunc status=none
if ref zfile-decompress corrupt.zfile >/dev/null 2>"$T/err"; then
  bad "reference reader accepted a corrupted block"
elif grep -q 'CRC mismatch' "$T/err"; then ok "reference reader rejects a corrupted block (CRC mismatch)"
else bad "reference reader on a corrupted block: $(cat "$T/err")"; fi

# ------------------------------------------------------------------------------------------------
echo "== 2. ovbd-written layers"
# Deterministic data: random (incompressible, also whole 64K blocks), text, explicit zeros.
"$PY" - <<'EOF'
import random
r = random.Random(20240611)
def text(n):
    out, i = [], 0
    while sum(map(len, out)) < n:
        out.append(b"line %06d: the quick brown fox %d jumps over the lazy dog\n" % (i, r.randrange(1000)))
        i += 1
    return b"".join(out)[:n]
K, M = 1024, 1024 * 1024
files = {
    "rand1m": r.randbytes(M), "rand512k": r.randbytes(512 * K), "rand8k": r.randbytes(8 * K),
    "rand4k": r.randbytes(4 * K), "text1m": text(M), "text64k": text(64 * K), "text7s": text(7 * 512),
    "zero256k": bytes(256 * K),
    "l1text256k": text(256 * K), "l1rand128k": r.randbytes(128 * K), "zero4k": bytes(4 * K),
    "l1rand512k": r.randbytes(512 * K),
    # a raw (non-LSMT) file, not a multiple of any block size
    "raw.bin": text(300 * K) + r.randbytes(200 * K) + bytes(100 * K) + text(37 * K + 1234) + r.randbytes(70 * K),
    "tiny.bin": text(1000),
}
for name, data in files.items():
    open(name, "wb").write(data)
EOF

K=1024; M=$((1024 * 1024))
setup_ok=1
# layer0: 16 MiB device, ~3.3 MiB of writes, overlaps, zero writes and discards
run create --size 16M l0.data l0.index || setup_ok=0
w0() { run write l0.data l0.index --offset "$1" "$2" || setup_ok=0; }
w0 0 rand1m                        # incompressible, covers whole 64K blocks
w0 $((256 * K)) text64k            # contained overwrite
w0 $((M + 1536)) text7s            # 7 sectors at an odd sector offset
w0 $((2 * M)) text1m
w0 $((3 * M + 512)) rand512k
w0 $((4 * M)) zero256k             # explicit zero write (stored as data)
w0 $((6 * M)) text1m
w0 $((16 * M - 4096)) rand4k       # last 4K of the device
run discard l0.data l0.index --offset $((2560 * K)) --length $((256 * K)) || setup_ok=0
run discard l0.data l0.index --offset $((3 * M + 256 * K)) --length $((M)) || setup_ok=0
w0 $((3 * M + 512 * K)) rand8k     # write inside the discarded range

# layer1: writes and discards over layer0 data
run create --size 16M l1.data l1.index || setup_ok=0
w1() { run write l1.data l1.index --offset "$1" "$2" || setup_ok=0; }
w1 $((128 * K)) l1text256k
run discard l1.data l1.index --offset $((512 * K)) --length $((256 * K)) || setup_ok=0
w1 $((2 * M + 64 * K)) l1rand128k
w1 $((4 * M + 4096)) zero4k
run discard l1.data l1.index --offset $((6 * M + 100 * K)) --length $((100 * K)) || setup_ok=0
w1 $((10 * M)) l1rand512k
if [ $setup_ok -ne 1 ]; then
  echo "$pass passed, $fail failed (could not build the RW layers)"
  exit 1
fi

# check_layer NAME FILE MAY_BE_BEYOND [SAME_AS_IMG]: reader cat == ovbd cat (and == SAME_AS_IMG)
check_layer() {
  local name=$1 file=$2 may=$3 same=${4:-}
  run cat -q -f -o "$T/ovbd.img" "$file" || return
  if [ -n "$same" ] && ! cmp -s "$T/ovbd.img" "$same"; then
    bad "$name: ovbd cat differs from the plain layer's content"; return
  fi
  check_ref "$name" "$may" "$T/ovbd.img" cat "$file"
}

# layer0: plain
if run commit -q -m layer0 l0.data l0.index l0.plain.lsmt; then
  expect_info "l0.plain.lsmt" l0.plain.lsmt tar=0 zfile=0 &&
    "$OVBD" cat -q -o l0.img l0.plain.lsmt && check_layer "layer0 plain" l0.plain.lsmt 0
fi
[ -f l0.img ] || { echo "$pass passed, $((fail + 1)) failed (no plain layer0)"; exit 1; }

# layer0: ZFile, algorithm x block size x CRC
for algo in lz4 zstd; do
  for bs in 4K 8K 16K 32K 64K; do
    for crc in crc nocrc; do
      out=l0.$algo-$bs-$crc.zfile
      flags=(--zfile --algorithm "$algo" --block-size "$bs")
      verify=1
      if [ $crc = nocrc ]; then flags+=(--no-crc); verify=0; fi
      run commit -q "${flags[@]}" l0.data l0.index "$out" || continue
      bytes=$(( ${bs%K} * 1024 ))
      expect_info "$out" "$out" tar=0 zfile=1 header_overwrite=1 algo=$algo block_size=$bytes verify=$verify || continue
      may=0; [ $bs = 64K ] && may=1
      check_layer "layer0 zfile $algo $bs $crc" "$out" $may l0.img
    done
  done
done

# layer0: tar-wrapped plain and tar-wrapped ZFile
if run commit -q --tar l0.data l0.index l0.plain.tar; then
  expect_info l0.plain.tar l0.plain.tar tar=1 zfile=0 && check_layer "layer0 plain tar" l0.plain.tar 0 l0.img
fi
if run commit -q --zfile --algorithm zstd --block-size 16K --tar l0.data l0.index l0.zstd-16K-crc.tar; then
  expect_info l0.zstd-16K-crc.tar l0.zstd-16K-crc.tar tar=1 zfile=1 algo=zstd block_size=16384 verify=1 &&
    check_layer "layer0 zfile zstd 16K crc tar" l0.zstd-16K-crc.tar 0 l0.img
fi

# layer1 variants, alone and stacked on layer0 variants of another kind
run commit -q l1.data l1.index l1.plain.lsmt && check_layer "layer1 plain" l1.plain.lsmt 0
run commit -q --zfile --block-size 8K l1.data l1.index l1.lz4-8K-crc.zfile &&
  check_layer "layer1 zfile lz4 8K crc" l1.lz4-8K-crc.zfile 0
run commit -q --zfile --algorithm zstd --block-size 32K --no-crc --tar l1.data l1.index l1.zstd-32K-nocrc.tar &&
  check_layer "layer1 zfile zstd 32K nocrc tar" l1.zstd-32K-nocrc.tar 0

check_stack() {
  local name=$1 may=$2; shift 2
  run cat -q -f -o "$T/ovbd.img" "$@" || return
  if [ -f l01.img ] && ! cmp -s "$T/ovbd.img" l01.img; then
    bad "$name: ovbd cat of the stack differs from plain+plain"; return
  fi
  check_ref "$name" "$may" "$T/ovbd.img" cat "$@"
}
"$OVBD" cat -q -o l01.img l0.plain.lsmt l1.plain.lsmt || bad "ovbd cat l0.plain.lsmt l1.plain.lsmt"
check_stack "stack plain + plain" 0 l0.plain.lsmt l1.plain.lsmt
check_stack "stack plain + zstd 32K nocrc tar" 0 l0.plain.lsmt l1.zstd-32K-nocrc.tar
check_stack "stack lz4 4K nocrc + lz4 8K crc" 0 l0.lz4-4K-nocrc.zfile l1.lz4-8K-crc.zfile
check_stack "stack zstd 16K crc tar + plain" 0 l0.zstd-16K-crc.tar l1.plain.lsmt
check_stack "stack plain tar + zstd 32K nocrc tar" 0 l0.plain.tar l1.zstd-32K-nocrc.tar
check_stack "stack lz4 64K crc + lz4 8K crc" 1 l0.lz4-64K-crc.zfile l1.lz4-8K-crc.zfile

# merge (flatten) of two layers, and commit --lower (flatten with the RW layer)
run merge -q -o merged.lsmt l0.zstd-8K-crc.zfile l1.lz4-8K-crc.zfile &&
  check_layer "merge -> plain" merged.lsmt 0 l01.img
run merge -q --zfile -o merged.zfile l0.plain.tar l1.zstd-32K-nocrc.tar &&
  expect_info merged.zfile merged.zfile zfile=1 algo=lz4 block_size=4096 verify=1 &&
  check_layer "merge --zfile -> lz4 4K crc" merged.zfile 0 l01.img
run commit -q --zfile --algorithm zstd --block-size 4K --lower l0.lz4-16K-crc.zfile l1.data l1.index flat.zfile &&
  check_layer "commit --lower -> zstd 4K crc" flat.zfile 0 l01.img

# ovbd zfile compress of raw (non-LSMT) files: the reader's decompression must give the input back
check_raw() {
  local name=$1 zf=$2 raw=$3 may=$4
  run zfile decompress -q "$zf" "$T/ovbd.raw" -f || return
  if ! cmp -s "$T/ovbd.raw" "$raw"; then bad "$name: ovbd zfile decompress differs from the input"; return; fi
  check_ref "$name" "$may" "$raw" zfile-decompress "$zf"
}
run zfile compress -q --algorithm lz4 --block-size 4K raw.bin raw.lz4-4K.zfile &&
  expect_info raw.lz4-4K.zfile raw.lz4-4K.zfile tar=0 zfile=1 header_overwrite=0 algo=lz4 block_size=4096 verify=1 &&
  check_raw "zfile compress lz4 4K" raw.lz4-4K.zfile raw.bin 0
run zfile compress -q --algorithm zstd --block-size 64K raw.bin raw.zstd-64K.zfile &&
  expect_info raw.zstd-64K.zfile raw.zstd-64K.zfile tar=0 zfile=1 header_overwrite=0 algo=zstd block_size=65536 verify=1 &&
  check_raw "zfile compress zstd 64K" raw.zstd-64K.zfile raw.bin 1
run zfile compress -q --algorithm zstd --block-size 8K --no-crc --tar raw.bin raw.zstd-8K-nocrc.tar &&
  expect_info raw.zstd-8K-nocrc.tar raw.zstd-8K-nocrc.tar tar=1 zfile=1 algo=zstd block_size=8192 verify=0 &&
  check_raw "zfile compress zstd 8K nocrc tar" raw.zstd-8K-nocrc.tar raw.bin 0
run zfile compress -q tiny.bin tiny.zfile && check_raw "zfile compress of a 1000-byte file" tiny.zfile tiny.bin 0

echo "== summary"
[ $beyond -gt 0 ] && echo "$beyond output(s) beyond the reference reader's limit (a block entry > 64 KiB):" \
  "ovbd reads them, overlaybd would not"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
