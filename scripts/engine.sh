#!/usr/bin/env bash
# Make a Docker engine (with buildx and Compose v2) answer on this Debian host, or say why not.
#   scripts/engine.sh start   install if missing, start dockerd if none answers; prints "started" when it started one
#   scripts/engine.sh stop    stop the dockerd that `start` launched (pid file), and nothing else
# Why trixie: bookworm's docker.io is Engine 20.10, too old for the containerd image store that OCI
# export and reproducible digests need; trixie's Engine 26 runs on bookworm's libc. The apt source is
# derived from the URIs this machine already uses, so no mirror host name lives in the repository.
set -euo pipefail
PIDFILE=/run/torchdev-dockerd.pid
LOG=/var/log/torchdev-dockerd.log

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

add_trixie_source() {
  local src=/etc/apt/sources.list.d/torchdev-trixie.sources
  [ -f "$src" ] && return 0
  local uri
  uri=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
  [ -n "$uri" ] || { echo "engine: no Debian URI found in /etc/apt/sources.list.d; add one, then rerun" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" >"$src"
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >/etc/apt/preferences.d/torchdev-trixie
}

install_engine() {
  command -v dockerd >/dev/null && docker buildx version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 && return 0
  echo "engine: installing Docker Engine, buildx and Compose v2 from Debian trixie" >&2
  add_trixie_source
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie docker.io docker-buildx docker-compose >/dev/null
  # Debian's client plugins live in /usr/libexec/docker/cli-plugins; a client elsewhere on PATH may not look there.
  mkdir -p /usr/local/lib/docker/cli-plugins
  for plugin in /usr/libexec/docker/cli-plugins/docker-*; do ln -sf "$plugin" /usr/local/lib/docker/cli-plugins/; done
}

configure_engine() {
  mkdir -p /etc/docker
  [ -f /etc/docker/daemon.json ] || echo '{"features":{"containerd-snapshotter":true}}' >/etc/docker/daemon.json
}

start_engine() {
  engine_answers && { echo "engine: already answering" >&2; return 0; }
  [ "$(id -u)" = 0 ] || { echo "engine: no Docker engine answers and starting one needs root; start Docker, then rerun" >&2; exit 1; }
  install_engine
  configure_engine
  command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  nohup dockerd >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 60); do engine_answers && { echo started; return 0; }; sleep 1; done
  echo "engine: dockerd did not answer within 60 s; see $LOG" >&2
  exit 1
}

stop_engine() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start_engine ;;
  stop) stop_engine ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
