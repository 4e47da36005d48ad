#!/usr/bin/env bash
# The base image of the deployment test: Debian bookworm with Python 3.11, made with debootstrap and
# `docker import` because no registry is reachable here. The root file system is cached as a tarball
# under .deploy-cache/ and re-imported only when the image is missing.
#   deploy/base-image.sh [IMAGE]      (default mlaas-base:bookworm-2)
set -euo pipefail
IMAGE=${1:-mlaas-base:bookworm-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.deploy-cache"
TARBALL="$CACHE/base-bookworm-2.tar"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3.11,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd,libgomp1
# Bump the tag (and tarball) when PACKAGES changes: an engine keeps the old image under the old tag.

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE: present"
  exit 0
fi
mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm ($PACKAGES) into $rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # Keep apt usable inside images over plain http, and the image small.
  echo "deb $MIRROR bookworm main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
fi
docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null
echo "base image $IMAGE: imported from $TARBALL"
