# shellcheck shell=bash disable=SC2034  # MARKER, TRIXIE_FILES and TRIXIE_PREFIX are for the scripts that source it
# Sourced by scripts/engine.sh and scripts/cosign.sh: where this Debian host's packages come from, the trixie apt
# source (with a low pin, so nothing else moves to trixie) both install from, the marker line that says torchdev wrote
# it, and apt's simulation of an install from it. Messages go to stderr, prefixed with $TRIXIE_PREFIX (the calling
# script's name). TORCHDEV_APT_DIR (default /etc/apt) points at a fake layout in tests.
APT_DIR=${TORCHDEV_APT_DIR:-/etc/apt}
TRIXIE_PREFIX=${TRIXIE_PREFIX:-engine}
# The first line of both files either script writes: `scripts/engine.sh stop` removes exactly the files that carry it
# (the packages installed from them stay), and leaves a trixie source or pin someone else wrote.
MARKER="# Written by torchdev (scripts/engine.sh or scripts/cosign.sh); scripts/engine.sh stop removes it."
TRIXIE_FILES=(sources.list.d/torchdev-trixie.sources preferences.d/torchdev-trixie)  # under $APT_DIR

# The first Debian archive URI of this host's apt sources (deb822 *.sources or one-line *.list), security excluded.
debian_uri() {
  local uri=""
  if compgen -G "$APT_DIR/sources.list.d/*.sources" >/dev/null; then
    uri=$(sed -n -E 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' "$APT_DIR"/sources.list.d/*.sources \
          | grep -v security | head -n 1 || true)
  fi
  if [ -z "$uri" ]; then
    uri=$(cat "$APT_DIR/sources.list" "$APT_DIR"/sources.list.d/*.list 2>/dev/null \
          | sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]].*/\2/p' \
          | grep -v security | head -n 1 || true)
  fi
  if [ -z "$uri" ]; then
    echo "$TRIXIE_PREFIX: no Debian archive URI in $APT_DIR/sources.list or $APT_DIR/sources.list.d/ (*.sources, *.list):" \
         "add the Debian mirror this host uses (e.g. deb http://deb.debian.org/debian bookworm main), then rerun" >&2
    return 1
  fi
  printf '%s\n' "$uri"
}

# Write the trixie source and its low-priority pin, each marked, into folder $2 (sources) and $3 (preferences).
write_trixie_source() {
  local uri=$1 sources=$2 preferences=$3
  mkdir -p "$sources" "$preferences"
  printf '%s\nTypes: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MARKER" "$uri" >"$sources/torchdev-trixie.sources"
  printf '%s\nPackage: *\nPin: release n=trixie\nPin-Priority: 100\n' "$MARKER" >"$preferences/torchdev-trixie"
}

# What `apt-get -s install -t trixie PACKAGES` answers (uri, then the packages) with the trixie source added, in a
# throw-away apt state: the host's apt sources, lists and cache stay as they are. Nothing when apt cannot read
# trixie's package lists.
simulate_trixie_install() {
  local uri=$1 state
  shift
  state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts"
  cp "$APT_DIR"/sources.list.d/* "$state/parts/" 2>/dev/null || true
  write_trixie_source "$uri" "$state/parts" "$state/preferences"
  local options=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=$state/parts"
                 -o "Dir::Etc::PreferencesParts=$state/preferences" -o "Dir::State::Lists=$state/lists"
                 -o "Dir::Cache=$state/cache" -o "Debug::NoLocking=true")
  if apt-get "${options[@]}" update -qq >"$state/update.log" 2>&1; then
    apt-get "${options[@]}" -s install -t trixie "$@" 2>&1 || true
  fi
  rm -rf "$state"
}
