#!/usr/bin/env bash
# Install Debian/Ubuntu packages in a build step, the same way in every stage:
#   APT_SNAPSHOT="debian=http://... ubuntu=..." apt-install.sh PACKAGE...
# The CA bundle (a TLS-intercepting proxy's, when the host has one) arrives as the BuildKit secret ca_bundle.
# With an apt snapshot, apt reads the base's archives as they were at that time, through a rewritten copy of the
# sources on the tmpfs /tmp/apt-sources: the image keeps the base's own sources. Snapshots' Release files carry
# expired Valid-Until dates by design, hence Check-Valid-Until=false there only; and an archive apt cannot fetch
# is only a warning to it (exit 0, then "Unable to locate package"), hence --error-on=any there.
set -euo pipefail
apt_opt=()
update_opt=()
if [ -s /run/secrets/ca_bundle ]; then apt_opt=(-o Acquire::https::CAInfo=/run/secrets/ca_bundle); fi
if [ -n "${APT_SNAPSHOT:-}" ]; then
  bash "$(dirname "$0")/apt-snapshot.sh" /etc/apt /tmp/apt-sources
  apt_opt+=(-o Dir::Etc::SourceList=/tmp/apt-sources/sources.list
            -o Dir::Etc::SourceParts=/tmp/apt-sources/sources.list.d -o Acquire::Check-Valid-Until=false)
  update_opt=(--error-on=any)
fi
rm -f /etc/apt/apt.conf.d/docker-clean
if ! apt-get "${apt_opt[@]}" update -qq "${update_opt[@]}"; then
  if [ -n "${APT_SNAPSHOT:-}" ]; then
    echo "torchdev: apt cannot read the snapshot archives ($APT_SNAPSHOT): make them reachable from the build, or set the variant's apt_snapshot: null in an overlay (README, Overlay)" >&2
  else
    echo "torchdev: apt cannot read the base's archives (see the lines above): point its sources at a reachable mirror" >&2
  fi
  exit 1
fi
apt-get "${apt_opt[@]}" install -y -qq --no-install-recommends "$@"
rm -rf /var/log/apt /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache \
       /var/cache/debconf/*-old /var/lib/dpkg/*-old
