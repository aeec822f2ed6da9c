#!/usr/bin/env bash
# Point a base's apt sources at dated archive snapshots, in a copy that only the build's apt reads:
#   APT_SNAPSHOT="debian=http://.../debian/20261101T000000Z ubuntu=..." apt-snapshot.sh /etc/apt OUT
# Every source URI whose archive (the last part of its path: debian, debian-security, ubuntu) APT_SNAPSHOT
# names is replaced by that archive's snapshot URL, in OUT/sources.list and OUT/sources.list.d/. The image
# keeps its own sources, so `apt-get update` in a container still sees today's archive.
# Sources no entry covers stay live and are listed; when none is covered the snapshot would pin nothing: exit 1.
# Plain bash and sed: the base may have neither Python nor awk yet.
set -euo pipefail
etc=$1
out=$2

copy_sources() {
  mkdir -p "$out/sources.list.d"
  if [ -f "$etc/sources.list" ]; then cp "$etc/sources.list" "$out/sources.list"; else : >"$out/sources.list"; fi
  local file
  for file in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
    if [ -f "$file" ]; then cp "$file" "$out/sources.list.d/"; fi
  done
}

# One sed expression per archive, applied twice: a match takes the blank after a URI, so of two URIs side by
# side on a "URIs:" line the first pass rewrites only the first.
rewrite_expressions() {
  local pair archive url pattern
  for pair in $APT_SNAPSHOT; do
    archive=${pair%%=*}
    url=${pair#*=}
    pattern=${archive//./\\.}
    pattern=${pattern//+/\\+}
    for _ in 1 2; do
      printf '%s\n' "/^[[:space:]]*(deb|deb-src|URIs:)[[:space:]]/ \
s#([[:space:]])[a-z0-9+]+://[^[:space:]]*/${pattern}/?([[:space:]]|\$)#\\1${url%/}/\\2#g"
    done
  done
}

source_files() {
  local file
  for file in "$out/sources.list" "$out"/sources.list.d/*; do
    if [ -f "$file" ]; then printf '%s\n' "$file"; fi
  done
}

source_uris() {
  source_files | xargs cat \
    | sed -nE '/^[[:space:]]*(deb|deb-src|URIs:)[[:space:]]/p' | grep -oE '[a-z0-9+]+://[^[:space:]]+' || true
}

is_snapshot() {
  local uri=$1 pair
  for pair in $APT_SNAPSHOT; do
    case "$uri" in "${pair#*=}"*) return 0 ;; esac
  done
  return 1
}

main() {
  copy_sources
  local expressions=() files=() line uri pinned=0 live=()
  while IFS= read -r line; do expressions+=(-e "$line"); done < <(rewrite_expressions)
  while IFS= read -r line; do files+=("$line"); done < <(source_files)
  sed -i -E "${expressions[@]}" "${files[@]}"
  while IFS= read -r uri; do
    if is_snapshot "$uri"; then pinned=$((pinned + 1)); else live+=("$uri"); fi
  done < <(source_uris)
  for uri in "${live[@]}"; do
    echo "apt-snapshot: $uri stays live: apt_snapshot_urls has no entry for its archive '$(basename "$uri")'" >&2
  done
  if [ "$pinned" = 0 ]; then
    echo "torchdev: apt_snapshot is set but apt_snapshot_urls covers none of the base's apt sources" \
      "(${live[*]:-none}): add their archives to apt_snapshot_urls, or set apt_snapshot: null" >&2
    exit 1
  fi
  echo "apt-snapshot: $pinned apt source(s) read from snapshots" >&2
}

main
