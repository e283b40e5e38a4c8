#!/usr/bin/env bash
# Runs the whole test suite: builds the preset (default: release) and runs every test with ctest.
# Usage: scripts/test.sh [PRESET]      PRESET: release | debug | asan-ubsan
# Installs missing build dependencies first (Debian packages), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
bash scripts/install-deps.sh
if [ ! -d ../shared/vectors ]; then
  echo "test.sh: note: ../shared/vectors is missing; golden-vector tests will be skipped" >&2
fi
bash scripts/build.sh "$preset"
ctest --preset "$preset" -j "$(nproc)" --timeout 900
