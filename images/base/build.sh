#!/usr/bin/env bash
# Build the local Debian base image (`nasloop-base:bookworm` by default) from Debian packages only,
# for machines without a container registry (CI). Users with a registry build the nasloop images
# FROM a CUDA PyTorch image instead (BASE_IMAGE=...). Needs root (debootstrap) and a Docker daemon.
set -euo pipefail

name="${1:-nasloop-base:bookworm}"
if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name already present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: building $name needs root (debootstrap); run as root or set BASE_IMAGE to an existing image" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

# The Debian mirror apt already uses on this machine (deb822 or one-line sources).
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '$1 ~ /^(URIs:|deb)$/ && $2 ~ /\/debian\/?$/ {print $2; exit}' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror ..."
debootstrap --variant=minbase --include=python3,libstdc++6,libgomp1,ca-certificates bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["python3"]' - "$name" >/dev/null
echo "built $name"
