#!/usr/bin/env bash
# Make a local Debian base image from Debian packages, for hosts that reach no container registry.
#   scripts/make-base.sh [NAME]   (default torchdev-base:bookworm; does nothing when NAME exists)
# mmdebstrap writes a minimal root file system to stdout; `docker import` turns it into an image.
set -euo pipefail
name=${1:-torchdev-base:bookworm}
suite=${TORCHDEV_BASE_SUITE:-bookworm}
if docker image inspect "$name" >/dev/null 2>&1; then echo "base: $name exists"; exit 0; fi
if ! command -v mmdebstrap >/dev/null; then
  # Debian's own mmdebstrap, from this host's release: a leaf tool that upgrades nothing else.
  [ "$(id -u)" = 0 ] || { echo "base: mmdebstrap is missing: sudo apt-get install mmdebstrap, then rerun" >&2; exit 1; }
  echo "base: installing mmdebstrap (apt-get install mmdebstrap)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi
echo "base: building $name from Debian $suite packages (about 30 s)" >&2
mmdebstrap --quiet --variant=minbase --include=ca-certificates "$suite" - \
  | docker import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "base: $name ready"
