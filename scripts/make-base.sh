#!/usr/bin/env bash
# Make a local Debian base image from Debian packages, for hosts that reach no container registry.
#   scripts/make-base.sh [NAME]   (default torchdev-base:bookworm; does nothing when NAME exists)
# mmdebstrap writes a minimal root file system to stdout; `docker import` turns it into an image.
set -euo pipefail
name=${1:-torchdev-base:bookworm}
suite=${TORCHDEV_BASE_SUITE:-bookworm}
if docker image inspect "$name" >/dev/null 2>&1; then echo "base: $name exists"; exit 0; fi
command -v mmdebstrap >/dev/null || { echo "base: mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
echo "base: building $name from Debian $suite packages (about 30 s)" >&2
mmdebstrap --quiet --variant=minbase --include=ca-certificates "$suite" - \
  | docker import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "base: $name ready"
