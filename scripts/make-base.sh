#!/usr/bin/env bash
# Make a local Debian base image from Debian packages, for hosts that reach no container registry.
#   scripts/make-base.sh [NAME] [--platform linux/amd64,linux/arm64] [--install-mmdebstrap]
# (default torchdev-base:bookworm for this host's platform). Run it through `./dev base`, which first asks the engine
# which platforms NAME holds (torchdev.engine's image_platforms) and calls this only when one asked for is missing.
# It needs Debian's mmdebstrap, and installs it (as root, from this host's release) only with consent, as
# scripts/engine.sh does: CI=true or --install-mmdebstrap; otherwise it names the package and the command, changes
# nothing and exits 1. It writes only into a temporary folder (removed at the end) and the image NAME.
# mmdebstrap writes a minimal root file system per architecture (a foreign one runs its package scripts under
# qemu: scripts/emulation.sh enable); buildx turns them into one multi-platform image FROM scratch, so one name
# serves `FROM NAME` for each platform, as ubuntu:22.04 does.
set -euo pipefail
name=torchdev-base:bookworm
platforms=""
consent=no
[ "${CI:-}" = true ] && consent=yes
while [ $# -gt 0 ]; do
  case $1 in
    --platform) platforms=${2:?--platform needs a value such as linux/amd64,linux/arm64}; shift 2 ;;
    --platform=*) platforms=${1#*=}; shift ;;
    --install-mmdebstrap) consent=yes; shift ;;
    -*) echo "base: unknown option $1 (usage: $0 [NAME] [--platform linux/amd64,linux/arm64]" \
             "[--install-mmdebstrap])" >&2; exit 2 ;;
    *) name=$1; shift ;;
  esac
done
native=linux/$(case $(uname -m) in aarch64|arm64) echo arm64 ;; *) echo amd64 ;; esac)
platforms=${platforms:-$native}
suite=${TORCHDEV_BASE_SUITE:-bookworm}

for platform in ${platforms//,/ }; do
  case $platform in linux/amd64|linux/arm64) ;; *)
    echo "base: unknown platform $platform: torchdev builds linux/amd64 and linux/arm64" >&2; exit 2 ;; esac
done
if ! command -v mmdebstrap >/dev/null; then
  # Debian's own mmdebstrap, from this host's release: a leaf tool that upgrades nothing else.
  if [ "$consent" != yes ]; then
    echo "base: mmdebstrap is missing; nothing was changed: install Debian's mmdebstrap (sudo apt-get install" \
         "mmdebstrap) and rerun, or let this script install it: $0 $name --platform $platforms --install-mmdebstrap" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "base: installing mmdebstrap needs root: sudo $0 $name --platform $platforms --install-mmdebstrap" >&2
    exit 1
  fi
  echo "base: installing mmdebstrap (apt-get install mmdebstrap)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi
for platform in ${platforms//,/ }; do
  if [ "$platform" != "$native" ] && ! bash "$(dirname "$0")/emulation.sh" status >/dev/null; then
    echo "base: $platform needs emulation on this $native host: run scripts/emulation.sh enable, then rerun" >&2
    exit 1
  fi
done
folder=$(mktemp -d)
trap 'rm -rf "$folder"' EXIT
# Every platform asked for is made again, not only the missing ones: the new image replaces the name as a whole.
for platform in ${platforms//,/ }; do
  arch=${platform#linux/}
  started=$SECONDS
  echo "base: building $name for $platform from Debian $suite packages (about 30 s native, 2 min emulated)" >&2
  mmdebstrap --quiet --variant=minbase --arch="$arch" --include=ca-certificates "$suite" "$folder/rootfs-$arch.tar"
  echo "base: $platform root file system in $((SECONDS - started)) s" >&2
done
# shellcheck disable=SC2016  # ${TARGETARCH} is the Dockerfile's, not this shell's
printf '%s\n' 'FROM scratch' 'ARG TARGETARCH' 'ADD rootfs-${TARGETARCH}.tar /' 'CMD ["/bin/bash"]' >"$folder/Dockerfile"
docker buildx build --quiet --provenance=false --platform "$platforms" --output "type=image,name=$name" \
  "$folder" >/dev/null
echo "base: $name ready for $platforms"
