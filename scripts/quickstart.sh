#!/usr/bin/env bash
# Quick start, step 1: install dependencies (Debian packages), build the release preset, and run
# the end-to-end demo (scripts/demo.sh). Run as root (or with sudo) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release ovbd
bash scripts/demo.sh build/release/src/cli/ovbd
