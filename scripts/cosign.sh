#!/usr/bin/env bash
# Make cosign (sigstore's signing tool, for `./dev push --sign` and `./dev verify`) available on a Debian host.
#   scripts/cosign.sh install [--install-from-trixie]   nothing when cosign is on PATH; else install Debian's cosign
# Debian packages cosign 2.5 in trixie (13) only. It needs nothing but libc6 >= 2.34, which Debian 12 has, so on
# bookworm the install adds the trixie apt source with a low pin (scripts/trixie-source.sh, shared with
# scripts/engine.sh) and takes only cosign from it. Adding an apt source changes the host, so, as scripts/engine.sh
# does, it installs only with consent (CI=true, or --install-from-trixie); otherwise it says what it would install
# (apt's own simulation, in a private apt state), names the other routes, changes nothing and exits 1.
set -euo pipefail
TRIXIE_PREFIX=cosign
# shellcheck source=SCRIPTDIR/trixie-source.sh
. "$(dirname "$0")/trixie-source.sh"
ROUTES="install cosign from sigstore's own packages or release binaries (docs.sigstore.dev/cosign/system_config/installation), \
or, on Debian 13 (trixie), apt-get install cosign"

# What installing cosign from trixie would change here, from apt's simulation in a throw-away apt state.
show_install() {
  local uri=$1 simulated
  simulated=$(simulate_trixie_install "$uri" cosign)
  if [ -z "$simulated" ]; then
    echo "cosign: (apt could not read trixie's package lists here, so what it would install is unknown)" >&2
    return
  fi
  echo "cosign: apt would install or upgrade:" \
       "$(printf '%s\n' "$simulated" | sed -n -E 's/^Inst ([^ ]+) .*/\1/p' | tr '\n' ' ')" >&2
}

install_cosign() {
  local consent=$1
  if command -v cosign >/dev/null 2>&1; then
    echo "cosign: $(command -v cosign) present, nothing to do"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cosign: not installed, and this is no Debian host: $ROUTES" >&2
    exit 1
  fi
  local uri
  uri=$(debian_uri)
  if [ "$consent" != yes ]; then
    echo "cosign: not installed. This script (CI's) would install Debian's cosign 2.5 from trixie, adding the" \
         "trixie apt source with a low pin (nothing else moves to trixie)" >&2
    show_install "$uri"
    echo "cosign: nothing was changed. Otherwise: $ROUTES. To install from trixie: sudo $0 install --install-from-trixie" >&2
    exit 1
  fi
  [ "$(id -u)" = 0 ] || { echo "cosign: installing needs root: sudo $0 install --install-from-trixie" >&2; exit 1; }
  echo "cosign: installing cosign from Debian trixie" >&2
  [ -f "$APT_DIR/sources.list.d/torchdev-trixie.sources" ] || \
    write_trixie_source "$uri" "$APT_DIR/sources.list.d" "$APT_DIR/preferences.d"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie cosign >/dev/null
  echo "cosign: $(command -v cosign) installed"
}

consent=no
[ "${CI:-}" = true ] && consent=yes
case "${1:-} ${2:-}" in
  "install --install-from-trixie") install_cosign yes ;;
  "install ") install_cosign "$consent" ;;
  *) echo "usage: $0 install [--install-from-trixie]" >&2; exit 2 ;;
esac
