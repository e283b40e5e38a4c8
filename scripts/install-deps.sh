#!/usr/bin/env bash
# Installs everything ovbd needs to build, test and benchmark, from Debian 12 packages only.
# Idempotent: packages already present are skipped by apt. Needs root (or sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries linked by ovbd
  liblz4-dev libzstd-dev libisal-dev libcli11-dev nlohmann-json3-dev libfuse3-dev libcurl4-openssl-dev libssl-dev libgnutls28-dev
  # the exports at run time: FUSE mounts, loop devices
  fuse3 util-linux
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # tools used by tests and the benchmark script
  lz4 zstd python3 xxd python3-lz4 python3-zstandard strace gnutls-bin
  # real NBD clients and the qemu-nbd baseline (tests, benchmarks), file systems for mount tests
  libnbd-bin python3-libnbd qemu-utils fio e2fsprogs erofs-utils
  # a qemu guest for what the container cannot do (tests/guest/run.sh): online ext4 resizing
  qemu-system-x86 linux-image-amd64 busybox-static cpio
  # a real OCI registry on loopback for the lazy-loading tests, and curl to poke it
  docker-registry curl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
