#!/usr/bin/env bash
# `ovbd serve` against real, unmodified NBD clients: libnbd's nbdinfo, nbdcopy, nbdsh and Python
# bindings, qemu-img and qemu-io. Every check compares bytes with `ovbd cat`
# of the same stack or with a model of the writes. The server advertises minimum block size 1;
# its unaligned_requests counter shows that these clients still send only sector-aligned I/O
# (docs/nbd.md, "Block sizes"), and that libnbd's unaligned pread/pwrite reach it and work.
#
# usage: nbd_clients_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a client is not installed; the reason is printed).
set -u

OVBD=${1:?usage: nbd_clients_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: nbd_clients_test.sh OVBD VECTORS_DIR}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in nbdinfo nbdcopy nbdsh qemu-img qemu-io cmp; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"; exit 77; }
done
"$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-nbd.XXXXXX")
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

. "$HERE/harness.sh"

# ---- 1. golden stacks: size, block size, map, whole-device copy ---------------------------------
declare -A STACKS=(
  [layer0]="layer0.lsmt"
  [stack01]="layer0.lsmt layer1.lsmt"
  [zfile_tar]="layer0.lz4-4k-crc.zfile layer1.lz4-4k-crc.zfile.tar"
  [zstd]="layer0.zstd-4k-crc.zfile layer1.zstd-64k-crc.zfile"
  [merged]="merged01.lz4-4k-crc.zfile"
  [raw_zfile]="plain.zstd-8k-crc.zfile"
)
map_is_consistent() {  # map_is_consistent MAP_JSON DEVICE_FILE SIZE: extents cover SIZE; zero extents hold zeros
  "$PY" - "$1" "$2" "$3" <<'EOF'
import json, sys
extents = json.load(open(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
size = int(sys.argv[3])
at = 0
holes = 0
for e in extents:
    assert e["offset"] == at, f"gap before {e['offset']} (expected {at})"
    if e["type"] & 2:  # NBD_STATE_ZERO
        assert data[at:at + e["length"]].count(0) == e["length"], f"zero extent at {at} holds data"
    holes += e["type"] & 1
    at += e["length"]
assert at == size, f"map covers {at} of {size} bytes"
print(f"{len(extents)} extents, {holes} holes")
EOF
}
for name in "${!STACKS[@]}"; do
  layers=()
  for l in ${STACKS[$name]}; do layers+=("$VEC/$l"); done
  "$OVBD" cat -q -o "$T/$name.want" "${layers[@]}" || { bad "$name: ovbd cat"; continue; }
  size=$(stat -c %s "$T/$name.want")
  [ "$name" = raw_zfile ] && { size=$(( (size + 511) / 512 * 512 )); truncate -s "$size" "$T/$name.want"; }
  start "$name" "${layers[@]}" || continue
  nbdinfo --json "$URI" > "$T/$name.info"
  check "$name: nbdinfo size $size, read-only, block sizes 1/4096" "$PY" -c "
import json; i = json.load(open('$T/$name.info'))['exports'][0]
assert i['export-size'] == $size, i['export-size']
assert i['is_read_only'] is True
assert i['block_size_minimum'] == 1 and i['block_size_preferred'] == 4096, i"
  nbdcopy "$URI" "$T/$name.got"
  check "$name: nbdcopy of the export equals ovbd cat" cmp "$T/$name.want" "$T/$name.got"
  nbdinfo --map --json "$URI" > "$T/$name.map"
  check "$name: nbdinfo --map covers the device; zero extents read as zeros" \
    map_is_consistent "$T/$name.map" "$T/$name.want" "$size"
  check "$name: qemu-img compare with the raw image" qemu-img compare -q -f raw -F raw "$T/$name.want" "$URI"
  check "$name: qemu-img convert of the export equals ovbd cat" bash -c \
    "qemu-img convert -f raw -O raw '$URI' '$T/$name.qemu' && cmp '$T/$name.want' '$T/$name.qemu'"
  check "$name: nbdinfo, nbdcopy and qemu-img sent no unaligned request" status_is unaligned_requests 0
  nbdinfo --list --json "$URI" > "$T/$name.list"
  n=$(wc -w <<< "${STACKS[$name]}")
  check "$name: nbdinfo --list shows the default description" "$PY" -c "
import json; d = json.load(open('$T/$name.list'))['exports'][0]['description']
n = $n
want = f'ovbd: {n} layer' + ('s' if n > 1 else '') + ' ('
assert d.startswith(want) and d.endswith('), read-only'), d"
  check "$name: stop on SIGTERM exits 0" stop
done
check "layer0: the map shows holes" "$PY" -c "
import json; assert any(e['type'] & 1 for e in json.load(open('$T/layer0.map')))"

# ---- 2. writes through NBD into an upper layer, then commit --------------------------------------
size=$(stat -c %s "$T/layer0.want")
"$OVBD" create --size "$size" "$T/up.data" "$T/up.index" >/dev/null
start rw "$VEC/layer0.lsmt" --upper "$T/up.data" "$T/up.index" || exit 1
# An nbdsh script: nbdsh connects (-u) and runs it with the handle `h`; arguments come in the
# environment. nbdsh runs "python3" from PATH, which must be Debian's (python3-libnbd).
cat > "$T/rw_ops.py" <<'EOF'
import os, random, nbd
base, model_path = os.environ["BASE"], os.environ["MODEL"]
model = bytearray(open(base, "rb").read())
def read_all(h, size, chunk=4 << 20):
    return b"".join(h.pread(min(chunk, size - at), at) for at in range(0, size, chunk))
assert not h.is_read_only() and h.can_trim() and h.can_zero() and h.can_flush() and h.can_fua()
assert h.can_multi_conn()
rng = random.Random(11)
size = len(model)
assert h.get_size() == size
for i in range(300):
    off = rng.randrange(0, size // 512) * 512
    n = min(size - off, rng.randrange(1, 64) * 512)
    op = rng.randrange(4)
    if op <= 1:
        data = rng.randbytes(n) if op == 0 else bytes([i % 256]) * n
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if i % 10 == 0 else 0)
        model[off:off + n] = data
    elif op == 2:
        h.trim(n, off)
        model[off:off + n] = bytes(n)
    else:
        h.zero(n, off, nbd.CMD_FLAG_NO_HOLE if i % 2 else 0)
        model[off:off + n] = bytes(n)
    if i % 50 == 0:
        h.flush()
        assert read_all(h, size) == model, f"mismatch after op {i}"
h.flush()
assert read_all(h, size) == model
open(model_path, "wb").write(model)
EOF
check "rw: an nbdsh script writes, trims, zeroes, flushes; reads back the model" \
  env BASE="$T/layer0.want" MODEL="$T/rw.model" PATH="/usr/bin:$PATH" nbdsh -u "$URI" -c "exec(open('$T/rw_ops.py').read())"
check "rw: 8 clients write and read disjoint ranges at once; all content verified after" "$PY" - "$URI" "$T/rw.model" <<'EOF'
import random, sys, threading, nbd
uri, model_path = sys.argv[1:3]
model = bytearray(open(model_path, "rb").read())
size = len(model)
slice_len = size // 8 // 4096 * 4096
errors = []
def client(k):
    try:
        h = nbd.NBD()
        h.connect_uri(uri)
        rng = random.Random(100 + k)
        base = k * slice_len
        for i in range(200):
            off = base + rng.randrange(0, slice_len // 4096 - 16) * 4096
            n = rng.randrange(1, 16) * 4096
            if rng.random() < 0.7:
                data = rng.randbytes(n)
                h.pwrite(data, off)
                model[off:off + n] = data  # disjoint slices: no two threads touch the same bytes
            else:
                assert h.pread(n, off) == model[off:off + n], f"client {k}: stale read at {off}"
        h.flush()
        h.shutdown()
    except Exception as e:  # reported by the main thread
        errors.append(f"client {k}: {e!r}")
threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
h = nbd.NBD()
h.connect_uri(uri)
got = b"".join(h.pread(min(4 << 20, size - at), at) for at in range(0, size, 4 << 20))
assert got == model, "content after the concurrent clients differs from the model"
open(model_path, "wb").write(model)
EOF
check "rw: ovbd ctl status reports the client traffic" bash -c "
  '$OVBD' ctl '$SOCK.ctl' status > '$T/status.json' &&
  '$PY' -c \"import json; s = json.load(open('$T/status.json')); assert s['ok'] and s['device']['writable']; assert s['io']['bytes_written'] > 0 and s['io']['bytes_read'] > 0, s\""
check "rw: ovbd ctl flush" "$OVBD" ctl "$SOCK.ctl" flush
# qemu-io: 120 random writes (patterns), write-zeroes and discards at 512-aligned offsets, each
# write read back with pattern verification; the same ops are applied to the model.
"$PY" - "$T/rw.model" "$T/qemu-io.cmds" <<'EOF'
import random, sys
model_path, cmds_path = sys.argv[1:3]
m = bytearray(open(model_path, "rb").read())
rng = random.Random(23)
cmds = []
for i in range(120):
    off = rng.randrange(0, len(m) // 512 - 256) * 512
    n = rng.randrange(1, 256) * 512
    kind = rng.randrange(6)
    if kind == 0:
        cmds.append(f"write -z {off} {n}"); cmds.append(f"read -P 0 {off} {n}")
        m[off:off + n] = bytes(n)
    elif kind == 1:
        cmds.append(f"discard {off} {n}")
        m[off:off + n] = bytes(n)  # ovbd: a trimmed range reads as zeros (a zeroed mapping)
    else:
        pat = rng.randrange(1, 256)
        cmds.append(f"write -P {pat} {off} {n}"); cmds.append(f"read -P {pat} {off} {n}")
        m[off:off + n] = bytes([pat]) * n
cmds.append("flush")
open(cmds_path, "w").write("\n".join(cmds) + "\n")
open(model_path, "wb").write(m)
EOF
qemu_io_random() {
  local args=()
  while IFS= read -r c; do args+=(-c "$c"); done < "$T/qemu-io.cmds"
  qemu-io -f raw "$URI" "${args[@]}" > "$T/qemu-io.log" 2>&1 || return 1
  ! grep -qi 'Pattern verification failed\|error\|fail' "$T/qemu-io.log"
}
check "rw: qemu-io random writes, write-zeroes, discards and verified reads" qemu_io_random
check "rw: qemu-img compare with the model" qemu-img compare -q -f raw -F raw "$T/rw.model" "$URI"
check "rw: qemu-img convert writes the model into the export" \
  qemu-img convert -n -f raw -O raw "$T/rw.model" "$URI"
check "rw: nbdsh, 8 libnbd clients, qemu-io and qemu-img sent no unaligned request" status_is unaligned_requests 0
# Minimum block size 1: libnbd sends byte-granular requests as they are, the server serves them
# (read-modify-write in the device). Six unaligned requests, each checked against the model.
cat > "$T/unaligned.py" <<'EOF'
import os, nbd
path = os.environ["MODEL"]
model = bytearray(open(path, "rb").read())
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
h.pwrite(b"xyz", 1000)
model[1000:1003] = b"xyz"
assert h.pread(5, 999) == bytes(model[999:1004])
h.pwrite(b"w" * 100, 5100)  # across the sector boundary at 5120
model[5100:5200] = b"w" * 100
assert h.pread(4096, 4097) == bytes(model[4097:8193])
h.zero(7, 2001)
model[2001:2008] = bytes(7)
h.trim(13, 3001)
model[3001:3014] = bytes(13)
h.flush()
open(path, "wb").write(model)
EOF
check "rw: nbdsh unaligned pwrite, pread, zero and trim keep the bytes around them" \
  env MODEL="$T/rw.model" PATH="/usr/bin:$PATH" nbdsh -u "$URI" -c "exec(open('$T/unaligned.py').read())"
check "rw: ... and the server counted exactly those six as unaligned" status_is unaligned_requests 6
check "rw: qemu-img compare with the model after the unaligned writes" \
  qemu-img compare -q -f raw -F raw "$T/rw.model" "$URI"
check "rw: no request was refused at the edge" status_is requests_refused 0
check "rw: SIGTERM exits 0 after flushing" stop
check "rw: the upper layer reopens to the model" bash -c \
  "'$OVBD' cat -q '$VEC/layer0.lsmt' --upper '$T/up.data' '$T/up.index' | cmp - '$T/rw.model'"
check "rw: ovbd commit of the upper, stacked on layer0, reads as the model" bash -c \
  "'$OVBD' commit -q '$T/up.data' '$T/up.index' '$T/new.lsmt' && '$OVBD' cat -q '$VEC/layer0.lsmt' '$T/new.lsmt' | cmp - '$T/rw.model'"

# ---- 3. read-only export refuses writes with EPERM ----------------------------------------------
start ro "$VEC/layer0.lsmt" --upper "$T/up.data" "$T/up.index" --read-only --description "ro test disk" || exit 1
check "ro: NBD_OPT_LIST names the export with the --description text" "$PY" - "$URI" <<'EOF'
import sys, nbd
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(sys.argv[1])
entries = []
assert h.opt_list(lambda name, description: entries.append((name, description)) or 0) == 1
assert entries == [("", "ro test disk")], entries
h.opt_abort()
EOF
check "ro: nbdinfo --list --json shows it" bash -c "
  nbdinfo --list --json '$URI' | '$PY' -c 'import json, sys; d = json.load(sys.stdin)[\"exports\"][0][\"description\"]; assert d == \"ro test disk\", d'"
check "ro: --read-only export refuses pwrite with EPERM" "$PY" - "$URI" <<'EOF'
import errno, sys, nbd
h = nbd.NBD()
h.set_strict_mode(0)  # send the write anyway: the server, not libnbd, must refuse it
h.connect_uri(sys.argv[1])
assert h.is_read_only()
for op in (lambda: h.pwrite(b"x" * 512, 0), lambda: h.trim(512, 0), lambda: h.zero(512, 0)):
    try:
        op()
        raise SystemExit("a write succeeded on a read-only export")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, (e, e.errnum)
try:
    h.pread(512, h.get_size())  # past the end
    raise SystemExit("a read past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, (e, e.errnum)
assert h.pread(512, 0) is not None  # the connection still works
EOF
check "ro: ctl status counts the 4 requests refused at the edge" status_is requests_refused 4
check "ro: ... and io.errors none (the device never saw them)" bash -c "
  '$OVBD' ctl '$CTL' status | '$PY' -c 'import json, sys; e = json.load(sys.stdin)[\"io\"][\"errors\"]; assert e == 0, e'"
check "ro: stop" stop

# ---- 4. config.v1.json, resultFile, PATH:LENGTH -------------------------------------------------
cp "$VEC/layer0.lsmt" "$T/padded.bin"
head -c 100000 /dev/urandom >> "$T/padded.bin"
cat > "$T/config.v1.json" <<EOF
{"lowers": [{"file": "$T/padded.bin:$(stat -c %s "$VEC/layer0.lsmt")"}, {"file": "$VEC/layer1.lsmt"}],
 "resultFile": "result", "unknownKey": [1, 2]}
EOF
if start config --config "$T/config.v1.json"; then
  check "config: resultFile says success" grep -qx success "$T/result"
  nbdcopy "$URI" "$T/config.got"
  check "config: PATH:LENGTH lower + layer1 equal the golden stack" cmp "$T/stack01.want" "$T/config.got"
  check "config: stop" stop
fi
echo '{"lowers": [{"file": "missing.lsmt"}], "resultFile": "result"}' > "$T/bad.json"
check "config: a missing layer fails with exit 1 and resultFile failed:..." bash -c "
  ! '$OVBD' serve --socket '$T/bad.sock' --config '$T/bad.json' 2> '$T/bad.err' && grep -q '^failed:' '$T/result' &&
  grep -q 'missing.lsmt' '$T/bad.err'"

# ---- 5. readiness: the ready line also with -q, --pid-file -----------------------------------------
"$OVBD" serve -q --socket "$T/q.sock" --pid-file "$T/q.pid" "$VEC/layer0.lsmt" > "$T/q.out" 2> "$T/q.err" &
SERVER_PID=$!
pid_file_appears() {
  for _ in $(seq 1 400); do
    [ -s "$T/q.pid" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
check "ready: --pid-file appears once the server listens" pid_file_appears
check "ready: the pid file holds the server's pid" test "$(cat "$T/q.pid" 2>/dev/null)" = "$SERVER_PID"
check "ready: once the pid file exists, a client connects at once" nbdinfo --size "nbd+unix:///?socket=$T/q.sock"
check "ready: -q still prints the ready line" grep -q '^serving nbd+unix:///?socket=' "$T/q.out"
check "ready: stop exits 0" stop
check "ready: the pid file is removed at exit" test ! -e "$T/q.pid"
check "ready: --json -q prints the JSON ready line with the pid" bash -c "
  '$OVBD' serve -q --json --socket '$T/j.sock' '$VEC/layer0.lsmt' > '$T/j.out' & p=\$!
  for _ in \$(seq 1 400); do [ -s '$T/j.out' ] && break; sleep 0.05; done
  kill -TERM \$p; wait \$p || exit 1
  '$PY' -c \"import json; j = json.loads(open('$T/j.out').readline()); assert j['pid'] == \$p and j['uri'].startswith('nbd+unix:'), j\""
check "ready: an unwritable --pid-file fails the start with exit 1, naming the option" bash -c "
  ! '$OVBD' serve --socket '$T/bad-pid.sock' --pid-file '$T/no/such/dir/x.pid' '$VEC/layer0.lsmt' > /dev/null 2> '$T/bad-pid.err' &&
  grep -q -- '--pid-file' '$T/bad-pid.err' && test ! -e '$T/bad-pid.sock'"

summary nbd_clients
