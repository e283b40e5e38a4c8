#!/usr/bin/env bash
# TLS in `ovbd serve` (NBD_OPT_STARTTLS, X.509 and PSK) against real clients: libnbd's nbdinfo,
# nbdcopy and nbdsh, qemu-img, and a raw NBD client (tools/nbd_tls_probe.py) that checks the
# replies a plaintext client gets. Certificates and keys are made here at run time with certtool
# and psktool. Every read is compared with `ovbd cat` of the same stack.
#
# usage: nbd_tls_test.sh OVBD_BINARY VECTORS_DIR
# Exit: 0 all passed, 1 a failure, 77 skipped (a tool is not installed; the reason is printed).
#
# OVBD_TLS_TEST_SERVER=nbdkit runs the same cases against nbdkit (same TLS options, a file with
# the stack's bytes; the memory plugin for writes): the reference that the cases are checked on.
# Checks only ovbd can pass (`ovbd cat` of the written upper, the plaintext TCP warning) are
# left out there.
set -u

OVBD=${1:?usage: nbd_tls_test.sh OVBD VECTORS_DIR}
VEC=${2:?usage: nbd_tls_test.sh OVBD VECTORS_DIR}
SERVER=${OVBD_TLS_TEST_SERVER:-ovbd}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
PROBE=$HERE/tools/nbd_tls_probe.py

case "$SERVER" in
  ovbd | nbdkit) ;;
  *) echo "OVBD_TLS_TEST_SERVER=$SERVER: expected ovbd or nbdkit"; exit 1 ;;
esac
tools="nbdinfo nbdcopy nbdsh qemu-img certtool psktool cmp timeout"
[ "$SERVER" = nbdkit ] && tools="$tools nbdkit"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"; exit 77; }
done
"$PY" -c 'import nbd' 2>/dev/null || { echo "SKIP: $PY lacks the nbd module (python3-libnbd)"; exit 77; }
"$PY" -c 'import ssl' 2>/dev/null || { echo "SKIP: $PY lacks the ssl module"; exit 77; }
OVBD=$(readlink -f "$OVBD")
VEC=$(readlink -f "$VEC")

T=$(mktemp -d "${TMPDIR:-/tmp}/ovbd-tls.XXXXXX")
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

. "$HERE/harness.sh"
echo "server under test: $SERVER"

# ---- keys and certificates ------------------------------------------------------------------------
# pki/ca, pki/wca: two unrelated CAs ("wca" = the wrong one). Directories in the layout of nbdkit,
# qemu and libnbd:
#   server/      ca-cert.pem server-cert.pem server-key.pem         (signed by ca)
#   server-crl/  the same plus ca-crl.pem revoking the "revoked" client certificate
#   wserver/     a server certificate and its CA from wca
#   client/      ca-cert.pem client-cert.pem client-key.pem         (signed by ca)
#   noclient/    ca-cert.pem only
#   wclient/     wca's CA and a client certificate from wca          (server cert does not verify)
#   foreign/     both CAs (the server's certificate verifies, and so does the client's own, which
#                qemu checks before it connects) and a client certificate from wca
#   revoked/     ca's CA and a client certificate from ca that server-crl/ revokes
# psk/keys.psk alice's key; psk-wrong/ alice with another key; psk-bob/ a user the server lacks.
P=$T/pki
key() { certtool --generate-privkey --key-type=ecdsa --outfile "$1"; }
make_ca() {  # make_ca DIR CN
  mkdir -p "$1"
  key "$1/ca-key.pem"
  printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 2\n' "$2" > "$1/ca.tmpl"
  certtool --generate-self-signed --load-privkey "$1/ca-key.pem" --template "$1/ca.tmpl" --outfile "$1/ca-cert.pem"
}
issue() {  # issue CA_DIR DIR server|client CN: DIR/{ca-cert,ROLE-cert,ROLE-key}.pem
  local ca=$1 dir=$2 role=$3 cn=$4
  mkdir -p "$dir"
  cp "$ca/ca-cert.pem" "$dir/ca-cert.pem"
  key "$dir/$role-key.pem"
  if [ "$role" = server ]; then
    printf 'cn = %s\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\n' "$cn" > "$dir/$role.tmpl"
  else
    printf 'cn = %s\ntls_www_client\n' "$cn" > "$dir/$role.tmpl"
  fi
  printf 'encryption_key\nsigning_key\nexpiration_days = 2\n' >> "$dir/$role.tmpl"
  certtool --generate-certificate --load-privkey "$dir/$role-key.pem" --load-ca-certificate "$ca/ca-cert.pem" \
    --load-ca-privkey "$ca/ca-key.pem" --template "$dir/$role.tmpl" --outfile "$dir/$role-cert.pem"
}
make_pki() {
  make_ca "$P/ca" "ovbd test CA" && make_ca "$P/wca" "unrelated CA" &&
    issue "$P/ca" "$P/server" server localhost && issue "$P/wca" "$P/wserver" server localhost &&
    issue "$P/ca" "$P/client" client alice && issue "$P/wca" "$P/wclient" client mallory &&
    issue "$P/wca" "$P/foreign" client mallory && cat "$P/ca/ca-cert.pem" >> "$P/foreign/ca-cert.pem" &&
    issue "$P/ca" "$P/revoked" client eve && mkdir -p "$P/noclient" && cp "$P/ca/ca-cert.pem" "$P/noclient/" &&
    cp -r "$P/server" "$P/server-crl" &&
    printf 'crl_next_update = 2\ncrl_number = 1\n' > "$P/crl.tmpl" &&
    certtool --generate-crl --load-ca-privkey "$P/ca/ca-key.pem" --load-ca-certificate "$P/ca/ca-cert.pem" \
      --load-certificate "$P/revoked/client-cert.pem" --template "$P/crl.tmpl" --outfile "$P/server-crl/ca-crl.pem" &&
    mkdir -p "$P/psk" "$P/psk-wrong" "$P/psk-bob" &&
    psktool -u alice -p "$P/psk/keys.psk" && psktool -u alice -p "$P/psk-wrong/keys.psk" &&
    psktool -u bob -p "$P/psk-bob/keys.psk" &&
    ! cmp -s "$P/psk/keys.psk" "$P/psk-wrong/keys.psk"
}
make_pki > "$T/pki.log" 2>&1 || { echo "FAIL: making keys and certificates"; tail -20 "$T/pki.log"; exit 1; }

# ---- expected bytes ---------------------------------------------------------------------------------
"$OVBD" cat -q -o "$T/want.img" "$VEC/layer0.lsmt" "$VEC/layer1.lsmt" || { echo "FAIL: ovbd cat"; exit 1; }
"$OVBD" cat -q -o "$T/layer0.img" "$VEC/layer0.lsmt" || { echo "FAIL: ovbd cat"; exit 1; }
SIZE=$(stat -c %s "$T/want.img")
NAME=tlsdisk  # the export name; a plaintext client must not learn it (the URIs use the default export "")

# ---- the server under test ---------------------------------------------------------------------------
# serve NAME unix|tcp ro|rw [TLS OPTIONS in ovbd's syntax]: starts the server and waits until it
# accepts connections. ro = layer0+layer1 read-only; rw = layer0 with a new writable upper
# $T/NAME.{data,index} (nbdkit: the memory plugin). Sets SOCK (unix) or PORT (tcp), SERVER_PID and
# ERR (its stderr). Counts a FAIL and returns 1 if it does not start.
serve() {
  launch "$@" && return 0
  bad "$1: server did not start"; sed 's/^/    /' "$ERR" | tail -20; return 1
}
# launch: serve without counting a FAIL (for servers that must refuse to start).
launch() {
  local name=$1 transport=$2 device=$3; shift 3
  SOCK="$T/$name.sock" PORT="" ERR="$T/$name.err"
  rm -f "$SOCK" "$T/$name.pid" "$T/$name.out"
  if [ "$SERVER" = ovbd ]; then
    local args=(--export-name "$NAME")
    if [ "$transport" = unix ]; then args+=(--socket "$SOCK"); else args+=(--listen 127.0.0.1:0 --control "$T/$name.ctl"); fi
    if [ "$device" = ro ]; then
      args+=("$VEC/layer0.lsmt" "$VEC/layer1.lsmt")
    else
      "$OVBD" create --size "$SIZE" "$T/$name.data" "$T/$name.index" > /dev/null || return 1
      args+=("$VEC/layer0.lsmt" --upper "$T/$name.data" "$T/$name.index")
    fi
    "$OVBD" serve "${args[@]}" "$@" > "$T/$name.out" 2> "$ERR" &
  else
    local args=(-f -P "$T/$name.pid" -e "$NAME") tls="" opts=()
    while [ $# -gt 0 ]; do  # ovbd's TLS options to nbdkit's
      case "$1" in
        --tls) tls=$2; shift 2 ;;
        --tls-certificates | --tls-psk) opts+=("$1=$2"); [ -n "$tls" ] || tls=implied; shift 2 ;;
        --tls-verify-peer) opts+=("$1"); shift ;;
        *) echo "launch: no nbdkit equivalent of $1" > "$ERR"; return 1 ;;
      esac
    done
    # ovbd: certificates or a PSK file without --tls mean require; nbdkit's default stays off.
    [ "$tls" = implied ] && tls=require
    [ -n "$tls" ] && args+=("--tls=$tls")
    if [ "$transport" = unix ]; then
      args+=(-U "$SOCK")
    else
      PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      args+=(-i 127.0.0.1 -p "$PORT")
    fi
    if [ "$device" = ro ]; then args+=(-r "${opts[@]}" file "$T/want.img"); else args+=("${opts[@]}" memory "$SIZE"); fi
    nbdkit "${args[@]}" > "$T/$name.out" 2> "$ERR" &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 400); do
    if [ "$SERVER" = ovbd ] && grep -q '^serving ' "$T/$name.out" 2>/dev/null; then
      [ "$transport" = unix ] && return 0
      PORT=$(sed -n 's|^serving [a-z+]*://[^ ]*:\([0-9][0-9]*\)/.*|\1|p' "$T/$name.out")
      [ -n "$PORT" ] && return 0
      echo "no port in the ready line: $(cat "$T/$name.out")" >> "$ERR"
      break
    fi
    [ "$SERVER" = nbdkit ] && [ -s "$T/$name.pid" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
  return 1
}

# ---- clients -------------------------------------------------------------------------------------------
# Every client runs under `timeout`: a server that hangs a refused client fails the check.
x509_uri() { echo "nbds+unix:///?socket=$SOCK&tls-certificates=$1"; }         # x509_uri CLIENT_DIR
x509_tcp_uri() { echo "nbds://localhost:$PORT/?tls-certificates=$1"; }          # x509_tcp_uri CLIENT_DIR
psk_uri() { echo "nbds+unix://$2@/?socket=$SOCK&tls-psk-file=$1"; }           # psk_uri FILE USER
plain_uri() { echo "nbd+unix:///?socket=$SOCK"; }
# libnbd 1.14 takes the PSK username only from the URI's user part (a tls-username= query
# parameter is ignored and it falls back to getlogin()). It verifies the server's certificate only
# when it has a host name to check, i.e. over TCP: over a Unix socket any certificate passes, so
# the checks that a server's certificate is refused connect by TCP.
size_is() {  # size_is URI: nbdinfo --size prints the export's size
  local got
  got=$(timeout 20 nbdinfo --size "$1") || return 1
  [ "$got" = "$SIZE" ] || { echo "nbdinfo --size: $got, expected $SIZE"; return 1; }
}
copy_is() {  # copy_is URI: nbdcopy of the whole export equals the expected bytes
  rm -f "$T/copy.img"
  timeout 30 nbdcopy "$1" "$T/copy.img" && cmp "$T/want.img" "$T/copy.img"
}
reads_ok() { size_is "$1" && copy_is "$1"; }  # reads_ok URI
served_with_tls() { copy_is "$1" && tls_negotiated "$1" "$2"; }  # served_with_tls URI True|False
tls_negotiated() {  # tls_negotiated URI True|False: libnbd connects and reports whether TLS is on
  timeout 20 "$PY" -c "
import sys, nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)  # the tls-certificates= and tls-psk-file= parameters
h.connect_uri(sys.argv[1])
assert h.get_tls_negotiated() == $2, h.get_tls_negotiated()
h.shutdown()" "$1"
}
# refused URI: a libnbd client (nbdcopy to stdout) exits non-zero, within the timeout, with no
# data; then a good client (GOOD_URI) still gets the export: the server keeps serving.
refused() {
  local rc=0
  timeout 20 nbdcopy "$1" - > "$T/refused.out" 2> "$T/refused.err" || rc=$?
  echo "client said: $(tr '\n' ' ' < "$T/refused.err")"
  [ "$rc" -ne 0 ] || { echo "nbdcopy succeeded"; return 1; }
  [ "$rc" -ne 124 ] || { echo "nbdcopy hung (timeout)"; return 1; }
  [ ! -s "$T/refused.out" ] || { echo "nbdcopy got $(stat -c %s "$T/refused.out") bytes"; return 1; }
  size_is "$GOOD_URI" || { echo "the server stopped serving after the refusal"; return 1; }
}
# qemu x509|psk DIR info|compare [NBD_OPTS]: qemu-img info (the size) or compare (with the
# expected bytes) over TLS, with tls-creds-x509 (DIR/ca-cert.pem, client-cert.pem, client-key.pem)
# or tls-creds-psk (DIR/keys.psk, user alice). To a TCP server (PORT set) by localhost:PORT, else to
# the Unix socket, where an X.509 client needs tls-hostname=localhost (qemu verifies a name even there).
qemu() {
  local kind=$1 dir=$2 sub=$3 extra=${4:-} obj nbd
  if [ "$kind" = psk ]; then
    obj="tls-creds-psk,id=tls0,endpoint=client,dir=$dir,username=alice"
  else
    obj="tls-creds-x509,id=tls0,endpoint=client,dir=$dir"
  fi
  if [ -z "$PORT" ]; then
    nbd="driver=nbd,path=$SOCK,tls-creds=tls0"
    [ "$kind" = x509 ] && [[ "$extra" != *tls-hostname* ]] && nbd="$nbd,tls-hostname=localhost"
  else
    nbd="driver=nbd,host=localhost,port=$PORT,tls-creds=tls0"
  fi
  nbd="$nbd$extra"
  rm -f "$T/qemu.json"
  if [ "$sub" = info ]; then
    timeout 20 qemu-img info --output=json --object "$obj" --image-opts "$nbd" > "$T/qemu.json" || return 1
    "$PY" -c "import json; s = json.load(open('$T/qemu.json'))['virtual-size']; assert s == $SIZE, s"
  else
    timeout 30 qemu-img compare -q --object "$obj" --image-opts "driver=raw,file.filename=$T/want.img" "$nbd"
  fi
}
qemu_refused() {  # qemu_refused KIND DIR [NBD_OPTS]: qemu-img info fails, within the timeout
  local rc=0
  qemu "$1" "$2" info "${3:-}" > "$T/qemu_refused.log" 2>&1 || rc=$?
  echo "qemu-img said: $(tr '\n' ' ' < "$T/qemu_refused.log")"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ ! -s "$T/qemu.json" ]
}
probe() { timeout 30 "$PY" "$PROBE" --socket "$SOCK" "$@"; }  # probe SCENARIO [OPTIONS]

# Each group below runs against one server; a server that does not start fails its group (the
# FAIL says why) and the next group still runs.

# ---- 1. X.509, --tls require, Unix socket: libnbd reads and writes ----------------------------------
x509_reads() {
  serve x509 unix ro --tls require --tls-certificates "$P/server" || return
  GOOD_URI=$(x509_uri "$P/client")
  check "1.1 nbdinfo --size over TLS is $SIZE" size_is "$GOOD_URI"
  check "1.2 nbdcopy of the whole export over TLS equals ovbd cat" copy_is "$GOOD_URI"
  check "1.3 libnbd reports the connection as TLS" tls_negotiated "$GOOD_URI" True
  check "1.4 stop on SIGTERM exits 0" stop
}
cat > "$T/rw.py" <<'EOF'
import os, random, nbd
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates(os.environ["CERTS"])
h.connect_unix(os.environ["SOCK"])
assert h.get_tls_negotiated() and not h.is_read_only()
model = bytearray(open(os.environ["BASE"], "rb").read())
size = h.get_size()
assert size == len(model), (size, len(model))
rng = random.Random(7)
for off, data in ((0, rng.randbytes(1 << 20)), ((33 << 20) + 4096, b"\xa5" * 8192),
                  (size - (64 << 10), rng.randbytes(64 << 10))):
    h.pwrite(data, off)
    model[off:off + len(data)] = data
h.flush()
got = b"".join(h.pread(min(4 << 20, size - at), at) for at in range(0, size, 4 << 20))
assert got == model, "read back after the writes differs from the model"
open(os.environ["MODEL"], "wb").write(model)
h.shutdown()
EOF
x509_writes() {
  serve x509rw unix rw --tls require --tls-certificates "$P/server" || return
  if [ "$SERVER" = ovbd ]; then cp "$T/layer0.img" "$T/rw.base"; else truncate -s "$SIZE" "$T/rw.base"; fi
  check "1.5 nbdsh with set_tls(TLS_REQUIRE) writes, flushes and reads the writes back" \
    timeout 30 env CERTS="$P/client" SOCK="$SOCK" BASE="$T/rw.base" MODEL="$T/rw.model" PATH="/usr/bin:$PATH" \
    nbdsh -c "exec(open('$T/rw.py').read())"
  check "1.6 stop on SIGTERM exits 0 (upper flushed)" stop
  [ "$SERVER" = ovbd ] || return
  check "1.7 ovbd cat of layer0 + the upper shows the writes made over TLS" bash -c \
    "'$OVBD' cat -q '$VEC/layer0.lsmt' --upper '$T/x509rw.data' '$T/x509rw.index' | cmp - '$T/rw.model'"
}

# ---- 2. qemu-img over TLS: Unix socket, and TCP with the server's name verified ------------------------
qemu_unix() {
  serve qemu unix ro --tls require --tls-certificates "$P/server" || return
  check "2.1 qemu-img info over TLS (Unix socket) shows $SIZE bytes" qemu x509 "$P/client" info
  check "2.2 qemu-img compare over TLS (Unix socket) with ovbd cat" qemu x509 "$P/client" compare
  check "2.3 stop" stop
}
tcp() {
  serve tcp tcp ro --tls require --tls-certificates "$P/server" || return
  GOOD_URI=$(x509_tcp_uri "$P/client")
  check "2.4 qemu-img info over TLS to localhost:$PORT" qemu x509 "$P/client" info
  check "2.5 qemu-img compare over TLS to localhost:$PORT" qemu x509 "$P/client" compare
  check "2.6 nbdinfo and nbdcopy over TLS to localhost:$PORT" reads_ok "$GOOD_URI"
  check "2.7 qemu-img refuses the server when the name it checks (tls-hostname) is not in the certificate" \
    qemu_refused x509 "$P/client" ",tls-hostname=not-localhost.example"
  check "2.8 stop" stop
}

# ---- 3. PSK, and (4.1-4.3) its refusals -------------------------------------------------------------------
# --tls-psk without --tls: ovbd's rule makes that require (the nbdkit run passes --tls=require).
psk() {
  serve psk unix ro --tls-psk "$P/psk/keys.psk" || return
  GOOD_URI=$(psk_uri "$P/psk/keys.psk" alice)
  check "3.1 nbdinfo --size with alice's PSK" size_is "$GOOD_URI"
  check "3.2 nbdcopy with alice's PSK equals ovbd cat" copy_is "$GOOD_URI"
  check "3.3 qemu-img info with tls-creds-psk" qemu psk "$P/psk" info
  check "3.4 qemu-img compare with tls-creds-psk" qemu psk "$P/psk" compare
  check "3.5 --tls-psk alone means require: a plaintext client is refused" refused "$(plain_uri)"
  check "3.6 --tls-psk alone means require: plaintext options get NBD_REP_ERR_TLS_REQD" \
    probe forced --size "$SIZE" --name "$NAME"
  check "4.1 PSK: alice with the wrong key is refused" refused "$(psk_uri "$P/psk-wrong/keys.psk" alice)"
  check "4.2 PSK: an unknown username (bob) is refused" refused "$(psk_uri "$P/psk-bob/keys.psk" bob)"
  check "4.3 PSK: qemu-img with alice's wrong key is refused" qemu_refused psk "$P/psk-wrong"
  check "4.4 stop" stop
}

# ---- 4. refusals: every failed client gets nothing, and the server keeps serving ---------------------------
wrong_ca() {
  serve refuse tcp ro --tls require --tls-certificates "$P/server" || return
  GOOD_URI=$(x509_tcp_uri "$P/client")
  check "4.5 X.509: a client trusting another CA (server certificate does not verify) is refused" \
    refused "$(x509_tcp_uri "$P/wclient")"
  check "4.6 X.509: qemu-img trusting another CA is refused" qemu_refused x509 "$P/wclient"
  check "4.7 without --tls-verify-peer a client with no certificate is served" size_is "$(x509_tcp_uri "$P/noclient")"
  check "4.8 stop" stop
}
verify_peer() {
  serve verify unix ro --tls require --tls-certificates "$P/server" --tls-verify-peer || return
  GOOD_URI=$(x509_uri "$P/client")
  check "4.9 --tls-verify-peer: a client with no certificate is refused" refused "$(x509_uri "$P/noclient")"
  check "4.10 --tls-verify-peer: a client certificate from another CA is refused" refused "$(x509_uri "$P/foreign")"
  check "4.11 --tls-verify-peer: qemu-img with a client certificate from another CA is refused" qemu_refused x509 "$P/foreign"
  check "4.12 --tls-verify-peer: the right client certificate works (libnbd)" reads_ok "$GOOD_URI"
  check "4.13 --tls-verify-peer: the right client certificate works (qemu-img)" qemu x509 "$P/client" info
  check "4.14 stop" stop
}
revoked() {
  serve crl unix ro --tls require --tls-certificates "$P/server-crl" --tls-verify-peer || return
  GOOD_URI=$(x509_uri "$P/client")
  check "4.15 --tls-verify-peer with ca-crl.pem: a revoked client certificate is refused" refused "$(x509_uri "$P/revoked")"
  check "4.16 stop" stop
}
wrong_server() {
  serve wserver tcp ro --tls require --tls-certificates "$P/wserver" || return
  GOOD_URI=$(x509_tcp_uri "$P/wclient")
  check "4.17 a server whose certificate is from another CA is refused by a client trusting ours" \
    refused "$(x509_tcp_uri "$P/client")"
  check "4.18 stop" stop
}

# ---- 5. plaintext against --tls require ----------------------------------------------------------------------
forced() {
  serve forced unix ro --tls require --tls-certificates "$P/server" || return
  GOOD_URI=$(x509_uri "$P/client")
  check "5.1 nbdinfo without TLS (libnbd's default) is refused" refused "$(plain_uri)"
  check "5.2 qemu-img without TLS is refused" bash -c "! timeout 20 qemu-img info 'nbd+unix:///?socket=$SOCK'"
  check "5.3 raw client: LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT, unknown before TLS get only NBD_REP_ERR_TLS_REQD; size and name never sent" \
    probe forced --size "$SIZE" --name "$NAME"
  check "5.4 raw client: NBD_OPT_EXPORT_NAME before TLS closes the connection with no reply bytes" probe export-name
  check "5.5 raw client: NBD_OPT_STARTTLS with data gets NBD_REP_ERR_INVALID" probe starttls-data
  check "5.6 raw client: STARTTLS, TLS handshake, then STARTTLS again inside TLS gets NBD_REP_ERR_INVALID; LIST works in TLS" \
    probe starttls-twice --ca "$P/ca/ca-cert.pem"
  check "5.7 the server still serves after the raw clients" size_is "$GOOD_URI"
  check "5.8 stop" stop
}

# ---- 6. --tls on: plaintext and TLS clients on one server ------------------------------------------------------
tls_on() {
  serve on unix ro --tls on --tls-certificates "$P/server" || return
  check "6.1 --tls on: a plaintext client gets the export, without TLS" served_with_tls "$(plain_uri)" False
  check "6.2 --tls on: a TLS client gets the export, with TLS" served_with_tls "$(x509_uri "$P/client")" True
  check "6.3 --tls on: qemu-img over TLS" qemu x509 "$P/client" info
  check "6.4 --tls on: STARTTLS twice: the second, inside TLS, gets NBD_REP_ERR_INVALID" \
    probe starttls-twice --ca "$P/ca/ca-cert.pem"
  check "6.5 stop" stop
}

# ---- 7. --tls off (the default) ----------------------------------------------------------------------------------
tls_off() {
  serve off unix ro || return
  GOOD_URI=$(plain_uri)
  check "7.1 no TLS: STARTTLS gets NBD_REP_ERR_UNSUP or NBD_REP_ERR_POLICY; plaintext LIST works after" probe notls
  check "7.2 no TLS: a client requiring TLS fails cleanly" refused "$(x509_uri "$P/client")"
  check "7.3 no TLS: qemu-img with TLS credentials fails cleanly" qemu_refused x509 "$P/client"
  check "7.4 no TLS: a plaintext client gets the export" copy_is "$GOOD_URI"
  check "7.5 stop" stop
}
plain_tcp_warns() {
  [ "$SERVER" = ovbd ] || return
  serve plaintcp tcp ro || return
  check "7.6 --listen without TLS warns on stderr" grep -qi 'tls' "$ERR"
  sed 's/^/    stderr: /' "$ERR"
  check "7.7 stop" stop
}

# ---- 8. TLS options the server must refuse at start ------------------------------------------------------------
# refuses_start NAME PATTERN TLS OPTIONS: the server exits non-zero without serving; ovbd's message
# must match PATTERN (grep -E) and must not be a command-line parse error (an option it lacks).
refuses_start() {
  local name=$1 pattern=$2; shift 2
  if launch "$name" unix ro "$@"; then echo "the server started"; stop; return 1; fi
  echo "server said: $(tr '\n' ' ' < "$ERR")"
  [ "$SERVER" = ovbd ] || return 0
  ! grep -q 'not expected' "$ERR" && grep -Eq -- "$pattern" "$ERR"
}
bad_options() {
  mkdir -p "$T/nokey" && cp "$P/server/ca-cert.pem" "$P/server/server-cert.pem" "$T/nokey/"
  check "8.1 --tls-certificates with no server-key.pem refuses to start, naming the file" \
    refuses_start nokey 'server-key\.pem' --tls require --tls-certificates "$T/nokey"
  check "8.2 --tls require with neither certificates nor a PSK file refuses to start, naming the options" \
    refuses_start nocreds 'tls-certificates|tls-psk' --tls require
}

for group in x509_reads x509_writes qemu_unix tcp psk wrong_ca verify_peer revoked wrong_server forced \
             tls_on tls_off plain_tcp_warns bad_options; do
  "$group"
done
summary nbd_tls
