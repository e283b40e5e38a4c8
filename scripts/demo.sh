#!/usr/bin/env bash
# The main job, end to end, on sample data it makes: build a 3-layer image with the ovbd CLI
# (writes, overwrites and discards in writable layers; commits to plain LSMT, ZFile LZ4, ZFile zstd
# and tar-wrapped ZFile), read the stack back and verify it byte for byte against a flat model
# written with dd, then merge the layers and verify again; serve the stack over NBD with a writable
# layer, write through it with qemu-io, commit those writes as a fourth layer and verify again;
# build an ext4 file system into a layer, attach it as /dev/loopN, mount it, write, detach,
# commit, and mount the 2-layer result read-only to compare the trees. Lazy loading: push the
# layers to a local registry (docker-registry), serve them from there through a local cache,
# then again from the cache alone with the registry stopped. Online lifecycle: serve the layers
# from a config.v1.json, take snapshots, merge and resize while served, restart from the manifest.
# Usage: scripts/demo.sh [OVBD_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
ovbd="${1:-build/release/src/cli/ovbd}"
[ -x "$ovbd" ] || { echo "demo: $ovbd not built (run scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/ovbd-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
size=$((64 << 20))
model="$work/model.img"
truncate -s "$size" "$model"

step() { printf '==> %s\n' "$*"; }
# write LAYER OFFSET LENGTH: random (incompressible) bytes into the RW layer and into the model
write() {
  local layer=$1 off=$2 len=$3
  head -c "$len" /dev/urandom >"$work/chunk"
  "$ovbd" write "$work/$layer.data" "$work/$layer.index" --offset "$off" "$work/chunk"
  dd if="$work/chunk" of="$model" bs=512 seek=$((off / 512)) conv=notrunc status=none
}
# text LAYER OFFSET LENGTH: compressible bytes
text() {
  local layer=$1 off=$2 len=$3
  { yes "ovbd demo layer $layer offset $off: the quick brown fox jumps over the lazy dog" || true; } | head -c "$len" >"$work/chunk"
  "$ovbd" write "$work/$layer.data" "$work/$layer.index" --offset "$off" "$work/chunk"
  dd if="$work/chunk" of="$model" bs=512 seek=$((off / 512)) conv=notrunc status=none
}
discard() {
  local layer=$1 off=$2 len=$3
  "$ovbd" discard "$work/$layer.data" "$work/$layer.index" --offset "$off" --length "$len"
  dd if=/dev/zero of="$model" bs=512 seek=$((off / 512)) count=$((len / 512)) conv=notrunc status=none
}

step "layer 0: create a 64 MiB writable layer, write 12 MiB, commit as ZFile (lz4, 4K blocks, CRC)"
"$ovbd" create --size 64M "$work/l0.data" "$work/l0.index"
text l0 0 $((8 << 20))
write l0 $((16 << 20)) $((4 << 20))
write l0 $((size - 4096)) 4096
"$ovbd" commit -m "base" --zfile "$work/l0.data" "$work/l0.index" "$work/layer0.zfile"

step "layer 1: overwrite and discard parts of layer 0, commit as ZFile (zstd, 64K blocks) in a tar"
"$ovbd" create --size 64M "$work/l1.data" "$work/l1.index"
write l1 $((4 << 20)) $((1 << 20))
discard l1 $((17 << 20)) $((2 << 20))
text l1 $((30 << 20)) 123392
"$ovbd" commit -m "update" --zfile --algorithm zstd --block-size 64K --tar "$work/l1.data" "$work/l1.index" "$work/layer1.tar"

step "layer 2: small scattered writes, commit as a plain LSMT layer"
"$ovbd" create --size 64M "$work/l2.data" "$work/l2.index"
for i in 1 2 3 4 5 6 7 8; do write l2 $((i * 7 << 20)) 8192; done
discard l2 0 4096
"$ovbd" commit -m "patch" "$work/l2.data" "$work/l2.index" "$work/layer2.lsmt"

step "read the 3-layer stack back and compare with the model"
"$ovbd" cat -o "$work/stack.img" "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt"
cmp "$work/stack.img" "$model"
echo "    stack == model ($(md5sum <"$model" | cut -c1-32))"

step "check every layer (structure, caps, every CRC)"
"$ovbd" check "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt"

step "merge the 3 layers into one ZFile and compare again"
"$ovbd" merge --zfile -o "$work/merged.zfile" "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt"
"$ovbd" cat -o "$work/merged.img" "$work/merged.zfile"
cmp "$work/merged.img" "$model"
echo "    merged == model"
"$ovbd" info "$work/merged.zfile"
ls -l "$work"/layer* "$work/merged.zfile" | awk '{print "    " $5 "\t" $NF}'

# serve ARGS...: `ovbd serve` on a Unix socket in the background; waits for its ready line.
serve() {
  "$ovbd" serve --socket "$work/nbd.sock" "$@" >"$work/serve.out" &
  server=$!
  for _ in $(seq 1 100); do grep -q '^serving' "$work/serve.out" && break; sleep 0.1; done
  sed 's/^/    /' "$work/serve.out"
}
stop_server() { kill -TERM "$server"; wait "$server"; }  # exit 0 = in-flight done, upper flushed
uri="nbd+unix:///?socket=$work/nbd.sock"

step "serve the stack over NBD with a new writable layer on top; read it with nbdcopy"
"$ovbd" create --size 64M "$work/up.data" "$work/up.index"
serve "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt" --upper "$work/up.data" "$work/up.index"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
nbdcopy "$uri" "$work/nbd.img"
cmp "$work/nbd.img" "$model"
echo "    nbdcopy of the export == model"

step "write through NBD with qemu-io (a pattern, a zeroed range), check with qemu-img compare"
qemu-io -f raw "$uri" -c "write -P 0x5a 40M 3M" -c "write -z 1M 1M" -c flush | sed 's/^/    /'
head -c 3M /dev/zero | tr '\0' '\132' >"$work/chunk"   # 3 MiB of 0x5a
dd if="$work/chunk" of="$model" bs=1M seek=40 conv=notrunc status=none
dd if=/dev/zero of="$model" bs=1M seek=1 count=1 conv=notrunc status=none
qemu-img compare -q -f raw -F raw "$model" "$uri"
"$ovbd" ctl "$work/nbd.sock.ctl" status | grep -E '"(bytes_read|bytes_written|clients)"' | sed 's/^ */    /'
stop_server

step "commit the NBD writes as layer 3 and serve the 4 layers read-only"
"$ovbd" commit -m "nbd writes" --zfile "$work/up.data" "$work/up.index" "$work/layer3.zfile"
serve "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt" "$work/layer3.zfile"
qemu-img compare -q -f raw -F raw "$model" "$uri"
echo "    4-layer export == model"
stop_server

step "online lifecycle: serve from a manifest, snapshot, merge and resize while it is served"
mkdir "$work/live"
live="$work/live.img"   # the model of the live image (the 4 layers, then its writes)
cp "$model" "$live"
cp "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt" "$work/layer3.zfile" "$work/live/"
"$ovbd" create --size 64M "$work/live/up.data" "$work/live/up.index"
cat >"$work/live/config.v1.json" <<'JSON'
{"lowers": [{"file": "layer0.zfile"}, {"file": "layer1.tar"}, {"file": "layer2.lsmt"}, {"file": "layer3.zfile"}],
 "upper": {"data": "up.data", "index": "up.index"}}
JSON
serve --config "$work/live/config.v1.json"
ctl() { "$ovbd" ctl "$work/nbd.sock.ctl" "$@"; }
qemu-io -f raw "$uri" -c "write -P 0x21 8M 2M" -c flush >/dev/null
head -c 2M /dev/zero | tr '\0' '\041' | dd of="$live" bs=1M seek=8 conv=notrunc status=none
ctl snapshot --name before-update | grep -E '"(name|write_pause_ms)"' | sed 's/^ */    /'
qemu-io -f raw "$uri" -c "write -P 0x22 9M 2M" -c flush >/dev/null
head -c 2M /dev/zero | tr '\0' '\042' | dd of="$live" bs=1M seek=9 conv=notrunc status=none
ctl snapshot --name after-update >/dev/null
qemu-img compare -q -f raw -F raw "$live" "$uri"
echo "    2 snapshots taken while served; export == model"
ctl merge --from 0 --to before-update --zfile | grep -E '"(checkpoint|bytes)"' | sed 's/^ */    /'
qemu-img compare -q -f raw -F raw "$live" "$uri"
ctl status | grep -E '"(path|name)"' | sed 's/^ */    /'
ctl resize 96M >/dev/null
truncate -s 96M "$live"
echo "    resized online: a new connection sees $(nbdinfo --size "$uri") bytes"
qemu-io -f raw "$uri" -c "write -P 0x23 90M 1M" -c flush >/dev/null
head -c 1M /dev/zero | tr '\0' '\043' | dd of="$live" bs=1M seek=90 conv=notrunc status=none
stop_server
serve --config "$work/live/config.v1.json"
qemu-img compare -q -f raw -F raw "$live" "$uri"
stop_server
echo "    restarted from the rewritten manifest: export == model"

step "lazy loading: push the 4 layers to a local registry, serve them from there through a cache"
if ! command -v docker-registry >/dev/null; then
  echo "    skipped: docker-registry is not installed (scripts/install-deps.sh installs it)"
else
  registry=$(bash scripts/registry.sh start "$work/registry")
  trap 'kill "$server" 2>/dev/null || true; bash scripts/registry.sh stop "$work/registry" || true; rm -rf "$work"' EXIT
  "$ovbd" push -q --to "http://$registry/demo/app" --config-out "$work/registry.json" \
    "$work/layer0.zfile" "$work/layer1.tar" "$work/layer2.lsmt" "$work/layer3.zfile"
  sed 's/^/    /' "$work/registry.json"
  serve --config "$work/registry.json" --cache-dir "$work/cache" --cache-size 256M \
    --record-trace "$work/startup.trace"
  qemu-img compare -q -f raw -F raw "$model" "$uri"
  "$ovbd" ctl "$work/nbd.sock.ctl" status | grep -E '"(fetched_bytes|hits|misses)"' | sed 's/^ */    /'
  stop_server
  echo "    registry-backed export == model; trace of $(grep -c '^r ' "$work/startup.trace") ranges recorded"
  bash scripts/registry.sh stop "$work/registry"
  serve --config "$work/registry.json" --cache-dir "$work/cache"
  qemu-img compare -q -f raw -F raw "$model" "$uri"
  stop_server
  echo "    registry stopped: served from the cache, still == model"
  "$ovbd" cache status --cache-dir "$work/cache" | sed 's/^/    /'
  trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
fi

step "an ext4 file system as a layer: attach it as /dev/loopN, mount, write, detach, commit"
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ] || ! command -v mkfs.ext4 >/dev/null; then
  echo "    skipped: ovbd attach needs root, /dev/fuse and mkfs.ext4"
else
  mnt="$work/mnt"
  dev=""
  # Runs on every exit, also after success: nothing in it may fail the script (set -e applies).
  cleanup_attach() {
    if mountpoint -q "$mnt"; then umount "$mnt" || true; fi
    if [ -n "$dev" ]; then "$ovbd" detach "$dev" >/dev/null 2>&1 || true; fi
    kill "$server" 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup_attach EXIT
  mkdir -p "$work/tree/docs" "$mnt"
  cp -r docs/. "$work/tree/docs/"
  head -c 5M /dev/urandom >"$work/tree/random.bin"
  truncate -s 64M "$work/fs.raw"
  mkfs.ext4 -q -b 4096 -d "$work/tree" "$work/fs.raw"
  "$ovbd" import -q "$work/fs.raw" -o "$work/fs0.zfile" --zfile
  "$ovbd" create --size 64M "$work/fs.data" "$work/fs.index"
  dev=$("$ovbd" attach "$work/fs0.zfile" --upper "$work/fs.data" "$work/fs.index")
  mount "$dev" "$mnt"
  echo "    $dev mounted: $(df -h "$mnt" | tail -1 | awk '{print $2 " ext4, " $3 " used"}')"
  diff -r -x lost+found "$work/tree" "$mnt"
  echo "written through the loop device" | tee "$work/tree/hello.txt" >"$mnt/hello.txt"
  rm "$work/tree/random.bin" "$mnt/random.bin"
  umount "$mnt"
  "$ovbd" detach "$dev"
  dev=""
  "$ovbd" commit -q -m "ext4 changes" --zfile "$work/fs.data" "$work/fs.index" "$work/fs1.zfile"
  dev=$("$ovbd" attach --read-only "$work/fs0.zfile" "$work/fs1.zfile")
  mount -o ro "$dev" "$mnt"
  diff -r -x lost+found "$work/tree" "$mnt"
  echo "    2-layer ext4 image, attached read-only as $dev, matches the source tree"
  umount "$mnt"
  "$ovbd" detach "$dev"
  dev=""
fi
echo "demo: OK"
