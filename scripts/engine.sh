#!/usr/bin/env bash
# CI's script: make a Docker engine (with buildx and Compose v2) answer on a Debian host, or say why not.
#   scripts/engine.sh start [--install-from-trixie]   start dockerd if none answers; install it first only with consent
#   scripts/engine.sh stop                            stop the dockerd that `start` launched (pid file) and remove the
#                                                     trixie apt source and pin that `start` or scripts/cosign.sh
#                                                     wrote (a marker line in each says so), nothing else; installed
#                                                     packages stay
# Why trixie: bookworm's docker.io is Engine 20.10, too old for the containerd image store that OCI export and
# reproducible digests need. But installing trixie's Engine 26 on Debian 12 also upgrades libc6, the default
# python3, systemd and apt to trixie's: fine on a throw-away CI machine, not on someone's workstation. So it
# installs only with consent (CI=true, or --install-from-trixie); otherwise it shows what would be upgraded
# (apt-get -s, in a private apt state) and the usual routes, changes nothing, and exits 1.
# The apt source is derived from the URIs this machine already uses, so no mirror host name lives in the repository.
# TORCHDEV_APT_DIR (default /etc/apt) and TORCHDEV_ENGINE_PIDFILE let tests point the script at a fake apt layout
# and away from a dockerd that `start` launched for real.
set -euo pipefail
PIDFILE=${TORCHDEV_ENGINE_PIDFILE:-/run/torchdev-dockerd.pid}
LOG=/var/log/torchdev-dockerd.log
PACKAGES=(docker.io docker-buildx docker-compose)
ROUTES="install Docker Engine from Docker's own packages for your distribution (docs.docker.com/engine/install/debian, \
or .../ubuntu), or Docker Desktop (docs.docker.com/desktop)"

# debian_uri, write_trixie_source and the marker its files carry (MARKER, TRIXIE_FILES): shared with scripts/cosign.sh,
# which installs cosign from trixie the same way.
# shellcheck source=SCRIPTDIR/trixie-source.sh
. "$(dirname "$0")/trixie-source.sh"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }
engine_installed() {
  command -v dockerd >/dev/null && docker buildx version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

# What installing from trixie would upgrade here, from apt's own simulation in a throw-away apt state.
show_upgrades() {
  local uri=$1 simulated upgrades
  simulated=$(simulate_trixie_install "$uri" "${PACKAGES[@]}")
  upgrades=$(printf '%s\n' "$simulated" | sed -n -E 's/^Inst ([^ ]+) \[([^]]+)\] \(([^ ]+) .*/\1 \2 -> \3/p')
  if [ -z "$simulated" ]; then
    echo "engine: (apt could not read trixie's package lists here, so what would be upgraded is unknown)" >&2
  elif [ -n "$upgrades" ]; then
    echo "engine: on this host that would also upgrade $(printf '%s\n' "$upgrades" | wc -l) installed packages to" \
         "trixie's, among them:" >&2
    { printf '%s\n' "$upgrades" | grep -E '^(libc6|python3|systemd|apt) ' || true
      printf '%s\n' "$upgrades" | grep -v -E '^(libc6|python3|systemd|apt) ' | head -n 4 || true; } \
      | sed 's/^/engine:   /' >&2
  else
    echo "engine: apt's simulation upgrades no installed package on this host" >&2
  fi
}

refuse_install() {
  local uri=$1
  echo "engine: no Docker engine with buildx and Compose v2 is installed. This script (CI's) would install" \
       "Engine 26 from Debian trixie: ${PACKAGES[*]}" >&2
  show_upgrades "$uri"
  echo "engine: nothing was changed. On a workstation, $ROUTES. To install from trixie anyway (a throw-away" \
       "machine): sudo $0 start --install-from-trixie" >&2
  exit 1
}

install_engine() {
  echo "engine: installing Docker Engine, buildx and Compose v2 from Debian trixie" >&2
  write_trixie_source "$1" "$APT_DIR/sources.list.d" "$APT_DIR/preferences.d"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie "${PACKAGES[@]}" >/dev/null
  # Debian's client plugins live in /usr/libexec/docker/cli-plugins; a client elsewhere on PATH may not look there.
  mkdir -p /usr/local/lib/docker/cli-plugins
  for plugin in /usr/libexec/docker/cli-plugins/docker-*; do ln -sf "$plugin" /usr/local/lib/docker/cli-plugins/; done
}

configure_engine() {
  mkdir -p /etc/docker
  [ -f /etc/docker/daemon.json ] || echo '{"features":{"containerd-snapshotter":true}}' >/etc/docker/daemon.json
}

start_engine() {
  local consent=$1
  engine_answers && { echo "engine: already answering" >&2; return 0; }
  if ! engine_installed; then
    local uri
    uri=$(debian_uri)
    [ "$consent" = yes ] || refuse_install "$uri"
    [ "$(id -u)" = 0 ] || { echo "engine: installing needs root: sudo $0 start --install-from-trixie" >&2; exit 1; }
    install_engine "$uri"
  fi
  [ "$(id -u)" = 0 ] || { echo "engine: no Docker engine answers and starting one needs root; start Docker" \
                               "(sudo systemctl start docker), then rerun" >&2; exit 1; }
  configure_engine
  nohup dockerd >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 60); do engine_answers && { echo started; return 0; }; sleep 1; done
  echo "engine: dockerd did not answer within 60 s; see $LOG" >&2
  exit 1
}

stop_engine() {
  if [ -f "$PIDFILE" ]; then
    local pid; pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$PIDFILE"
  fi
  remove_trixie_source
}

# The trixie source and pin go only where they carry the marker line (this script's or scripts/cosign.sh's: one run's
# CI adds them with either); the packages installed stay.
remove_trixie_source() {
  local file removed=()
  for file in "${TRIXIE_FILES[@]/#/$APT_DIR/}"; do
    [ -f "$file" ] || continue
    if grep -qxF -- "$MARKER" "$file"; then rm -f "$file"; removed+=("$file")
    else echo "engine: $file has no line saying this script wrote it: left as it is" >&2; fi
  done
  [ ${#removed[@]} = 0 ] || echo "engine: removed the Debian trixie apt source and pin that torchdev added" \
    "(${removed[*]}); what was installed from them stays (apt-get purge ${PACKAGES[*]} removes the engine)" >&2
}

consent=no
[ "${CI:-}" = true ] && consent=yes
case "${1:-} ${2:-}" in
  "start --install-from-trixie") start_engine yes ;;
  "start ") start_engine "$consent" ;;
  "stop ") stop_engine ;;
  *) echo "usage: $0 start [--install-from-trixie] | stop" >&2; exit 2 ;;
esac
