#!/usr/bin/env bash
# Runs the whole test suite: builds the preset (default: release) and runs every test with ctest.
# Usage: scripts/test.sh [PRESET]      PRESET: release | debug | asan-ubsan
# Installs missing build dependencies first (Debian packages), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
bash scripts/install-deps.sh
# The golden vectors are tests/golden. Where the copy they came from sits beside the checkout,
# it must hold the same bytes.
if [ -d ../shared/vectors ] && ! diff -rq ../shared/vectors tests/golden >/dev/null; then
  echo "test.sh: warning: ../shared/vectors differs from tests/golden (see diff -r)" >&2
fi
bash scripts/build.sh "$preset"
ctest --preset "$preset" -j "$(nproc)" --timeout 900
