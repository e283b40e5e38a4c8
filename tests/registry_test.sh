#!/bin/bash
# ovbd push against a real registry (scripts/registry.sh): golden layers pushed chunked and
# monolithic, each blob checked with curl -I (Docker-Content-Digest, Content-Length), a second
# push skips existing blobs, and the written config.v1.json names them in order, each with its
# digest table (docs/format/digest-table.md), which is in the registry too; --no-digest-table
# pushes none.
# Usage: registry_test.sh OVBD VECTORS_DIR. Exit 77 (skip) without docker-registry, curl, python3.
set -euo pipefail
ovbd=$1; vectors=$2
here=$(cd "$(dirname "$0")" && pwd)
script=$here/../scripts/registry.sh
for tool in docker-registry curl python3 sha256sum; do
  command -v $tool >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
work=$(mktemp -d)
trap 'bash "$script" stop "$work"; rm -rf "$work"' EXIT
addr=$(bash "$script" start "$work")
fail() { echo "FAIL: $*"; exit 1; }

layers=("$vectors/layer0.lsmt" "$vectors/layer1.lz4-4k-crc.zfile.tar" "$vectors/layer0.zstd-4k-crc.zfile")
"$ovbd" push --to "http://$addr/golden/app" --config-out "$work/config.v1.json" --chunk-size 64K -q "${layers[@]}" \
  || fail "chunked push"
"$ovbd" push --to "http://$addr/golden/mono" --monolithic "${layers[@]}" > "$work/mono.out" || fail "monolithic push"
grep -v "digest table" "$work/mono.out" | grep -c uploaded | grep -qx 3 || fail "monolithic push did not upload 3 blobs: $(cat "$work/mono.out")"
grep -c "digest table .* uploaded" "$work/mono.out" | grep -qx 3 || fail "monolithic push did not upload 3 tables: $(cat "$work/mono.out")"

for layer in "${layers[@]}"; do
  digest="sha256:$(sha256sum "$layer" | cut -d' ' -f1)"
  size=$(stat -c %s "$layer")
  for repo in app mono; do
    headers=$(curl -sfI "http://$addr/v2/golden/$repo/blobs/$digest") || fail "HEAD $repo $digest"
    echo "$headers" | tr -d '\r' | grep -qix "docker-content-digest: $digest" || fail "digest header for $layer"
    echo "$headers" | tr -d '\r' | grep -qix "content-length: $size" || fail "length for $layer"
  done
  curl -sf "http://$addr/v2/golden/app/blobs/$digest" | cmp - "$layer" || fail "content of $layer"
done

"$ovbd" push --to "http://$addr/golden/app" "${layers[@]}" > "$work/again.out" || fail "second push"
grep -c "exists, skipped" "$work/again.out" | grep -qx 6 || fail "second push re-uploaded: $(cat "$work/again.out")"

python3 - "$work/config.v1.json" "$addr" "${layers[@]}" <<'PY' || fail "config.v1.json"
import hashlib, json, os, sys, urllib.request
cfg = json.load(open(sys.argv[1]))
assert cfg["repoBlobUrl"] == f"http://{sys.argv[2]}/v2/golden/app/blobs", cfg
assert len(cfg["lowers"]) == len(sys.argv) - 3
for lower, path in zip(cfg["lowers"], sys.argv[3:]):
    assert lower["digest"] == "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest(), lower
    assert lower["size"] == os.path.getsize(path), lower
    # The digest table: in the registry under its digest, 64 + 32 * ceil(size / 16 KiB) bytes,
    # magic OVBDDGT1, and (checked here from the spec) chunk i's sha256 at 64 + 32 * i.
    table = lower["digestTable"]
    chunks = -(-lower["size"] // 16384)
    assert table["size"] == 64 + 32 * chunks, table
    body = urllib.request.urlopen(cfg["repoBlobUrl"] + "/" + table["digest"]).read()
    assert len(body) == table["size"], (len(body), table)
    assert "sha256:" + hashlib.sha256(body).hexdigest() == table["digest"], table
    assert body[:8] == b"OVBDDGT1", body[:8]
    data = open(path, "rb").read()
    for i in range(chunks):
        assert body[64 + 32 * i:96 + 32 * i] == hashlib.sha256(data[i * 16384:(i + 1) * 16384]).digest(), (path, i)
PY

"$ovbd" push --to "http://$addr/golden/json" --json "$vectors/layer0.lsmt" | python3 -c \
  'import json,sys; d=json.load(sys.stdin)["layers"][0]; assert d["existed"] is False and d["digestTable"]["existed"] is False
assert d["digestTable"]["size"] == 64 + 32 * -(-d["size"] // 16384), d' || fail "--json"

# --no-digest-table: the layer alone, no digestTable key, no table blob uploaded.
"$ovbd" push --to "http://$addr/golden/plain" --no-digest-table --config-out "$work/plain.json" "$vectors/layer0.lsmt" \
  > "$work/plain.out" || fail "--no-digest-table push"
grep -q "digest table" "$work/plain.out" && fail "--no-digest-table pushed a table: $(cat "$work/plain.out")"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["lowers"]; assert len(l) == 1 and "digestTable" not in l[0], l' \
  "$work/plain.json" || fail "--no-digest-table config"
table_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lowers"][0]["digestTable"]["digest"])' "$work/config.v1.json")
[ "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$addr/v2/golden/plain/blobs/$table_digest")" = 404 ] \
  || fail "--no-digest-table: the table blob is in the repository"
set +e
"$ovbd" push --to "ftp://$addr/x" "$vectors/layer0.lsmt" 2>/dev/null; rc=$?
[ $rc -eq 1 ] || fail "bad URL should exit 1, got $rc"
"$ovbd" push --to "http://$addr/x" --chunk-size 100 "$vectors/layer0.lsmt" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || fail "bad chunk size should exit 2, got $rc"
"$ovbd" push --to "http://127.0.0.1:1/x" "$vectors/layer0.lsmt" 2>"$work/err"; rc=$?
[ $rc -eq 1 ] && grep -q "attempts" "$work/err" || fail "unreachable registry: rc $rc $(cat "$work/err")"
echo "PASS"
