#!/bin/bash
# A throwaway OCI registry (Debian's docker-registry) on 127.0.0.1 for tests.
#   registry.sh start DIR   starts it with storage in DIR, prints "127.0.0.1:PORT" when it answers
#   registry.sh stop DIR    kills the registry started for DIR
# Exit 77 if docker-registry or curl is not installed.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
if [ "$cmd" = stop ]; then
  [ -f "$dir/registry.pid" ] && kill "$(cat "$dir/registry.pid")" 2>/dev/null || true
  rm -f "$dir/registry.pid"
  exit 0
fi
command -v docker-registry >/dev/null || { echo "docker-registry not installed" >&2; exit 77; }
command -v curl >/dev/null || { echo "curl not installed" >&2; exit 77; }
mkdir -p "$dir/storage"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
echo $! > "$dir/registry.pid"
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; then echo "127.0.0.1:$port"; exit 0; fi
  kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || break
  sleep 0.1
done
echo "registry did not start; log:" >&2; cat "$dir/registry.log" >&2
"$0" stop "$dir"
exit 1
