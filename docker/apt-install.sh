#!/usr/bin/env bash
# Install Debian/Ubuntu packages in a build step, the same way in every stage:
#   APT_SNAPSHOT="debian=http://... ubuntu=..." apt-install.sh PACKAGE...
# The CA bundle (a TLS-intercepting proxy's, when the host has one) arrives as the BuildKit secret ca_bundle, apt's
# logins (when the user gives some, TORCHDEV_APT_AUTH_CONF) as the secret apt_auth at /etc/apt/auth.conf.d/torchdev.conf.
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
# An archive that wants a login apt was not given (or refuses the one it was) answers 401; without a snapshot apt
# calls that a warning and goes on to "Unable to locate package", so the answer is looked for in what apt said. The
# log lies on the step's tmpfs, never in a layer.
log=/tmp/apt-sources/update.log
status=0
apt-get "${apt_opt[@]}" update -qq "${update_opt[@]}" 2>&1 | tee "$log" || status=$?
if grep -qE '\b40[13]\b +(Unauthorized|Forbidden)' "$log"; then
  if [ -s /etc/apt/auth.conf.d/torchdev.conf ]; then
    echo "torchdev: an apt archive refused the login the build was given (HTTP 401/403, see above): check the file TORCHDEV_APT_AUTH_CONF names (a machine line per host; machine http://HOST for plain http)" >&2
  else
    echo "torchdev: an apt archive asks for a login (HTTP 401/403, see above) and the build was given none: name an apt auth.conf file with TORCHDEV_APT_AUTH_CONF (docs/security.md, Credentials)" >&2
  fi
  exit 1
fi
if [ "$status" != 0 ]; then
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
