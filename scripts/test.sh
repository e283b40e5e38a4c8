#!/usr/bin/env bash
# Runs the whole test suite: builds the preset (default: release) and runs every test with ctest.
# Usage: scripts/test.sh [PRESET]      PRESET: release | debug | asan-ubsan
# Installs missing build dependencies first (Debian packages), so it works on a fresh machine.
# Ends with the list of skipped tests and their reasons. With CI=true a skip fails the run: CI
# has everything a test may need (root, /dev/fuse, loop devices, the packages), so a skip there
# is a test that silently stopped testing.
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
report="$PWD/build/$preset/ctest-junit.xml"
rm -f "$report"
status=0
# Whole outputs in the report (ctest keeps only 1 KiB of a passing test's): the skip reasons.
ctest --preset "$preset" -j "$(nproc)" --timeout 900 --output-junit "$report" \
  --test-output-size-passed 16777216 --test-output-size-failed 16777216 || status=$?
skipped=0
/usr/bin/python3 scripts/list-skips.py "$report" || skipped=$?
case "$skipped" in
  0) echo "test.sh: no test skipped" ;;
  1) why="tests skipped (listed above)" ;;
  *) why="cannot tell whether tests skipped" ;;
esac
if [ "$skipped" != 0 ] && [ "${CI:-}" = true ]; then
  echo "test.sh: CI=true and $why: failing" >&2
  status=1
fi
exit "$status"
