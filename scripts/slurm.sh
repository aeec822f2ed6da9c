#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for testing deploy/slurm/ (CI's script; needs root).
#   scripts/slurm.sh start    install Debian's slurmctld, slurmd, slurm-client and munge when missing, then start
#                             munged, slurmctld and two slurmd (nodes n1 and n2, both at 127.0.0.1 on ports of
#                             their own); prints `started` (or `running` when it already was) as its last line
#   scripts/slurm.sh stop     cancel the cluster's jobs, stop exactly the daemons `start` launched (pid files),
#                             remove its state folder; the packages stay installed (apt-get purge them to remove
#                             them) and so do the logs
#   scripts/slurm.sh status   each daemon and sinfo; exits 1 when the cluster is not up
# Everything lives in $STATE (config, munge key and socket, spool and state dirs, pid files); logs in $LOGS.
# $STATE (TORCHDEV_SLURM_STATE) must not exist before `start`, which makes it and writes a marker file in it; `start`
# and `stop` refuse, in one line and changing nothing, a folder without that marker, so neither ever stops daemons
# by another folder's pid files nor removes a folder this script did not make. $LOGS is never removed.
# The system's own munged and /etc/munge/munge.key are left alone: this cluster's munged has its own key and
# socket (slurm.conf's AuthInfo=socket=...). Clients find the cluster through SLURM_CONF=$STATE/slurm.conf; when
# /etc/slurm/slurm.conf does not exist, start links it there too (and stop removes the link), so a plain `srun`
# works. Installing takes the host release's packages and refuses when apt would upgrade an installed package.
set -euo pipefail
STATE=${TORCHDEV_SLURM_STATE:-/var/lib/torchdev-slurm}
LOGS=${TORCHDEV_SLURM_LOGS:-/var/log/torchdev-slurm}
CONF=$STATE/slurm.conf
MARKER=$STATE/made-by-torchdev-slurm  # written by start into the folder it made; stop removes only such a folder
SYSTEM_CONF=${TORCHDEV_SLURM_SYSTEM_CONF:-/etc/slurm/slurm.conf}  # tests point it elsewhere
CTLD_PORT=${TORCHDEV_SLURM_PORT:-16817}  # slurmctld; the nodes take the next two (n1, n2)
NODES=(n1 n2)
PACKAGES=(slurmctld slurmd slurm-client munge)
export SLURM_CONF=$CONF

say() { echo "slurm: $*" >&2; }
die() { say "$*"; exit 1; }
# $STATE exists but is not a folder `start` made: refuse, changing nothing.
refuse_foreign_state() {
  if [ -d "$STATE" ] && [ ! -f "$MARKER" ]; then
    say "$STATE was not made by this script (no $(basename "$MARKER") in it): left as it is; set" \
        "TORCHDEV_SLURM_STATE to a folder that does not exist yet (start makes it), or remove this one yourself"
    exit 2
  fi
}
# A start that fails stops what it had started (logs stay for reading).
fail_start() { say "$*"; stop_cluster >/dev/null 2>&1 || true; exit 1; }
# A live process whose pid is in file $1 (a zombie, dead but not yet reaped, is not).
alive() { [ -f "$1" ] && [ -r "/proc/$(cat "$1")/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$(cat "$1")/stat"; }
daemons() { echo munged slurmctld; for node in "${NODES[@]}"; do echo "slurmd-$node"; done; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
                && command -v munged >/dev/null; }

install_packages() {
  say "installing Debian's ${PACKAGES[*]} (apt-get install --no-install-recommends)"
  apt-get update -qq
  local upgrades
  upgrades=$(apt-get -s install --no-install-recommends "${PACKAGES[@]}" 2>&1 | sed -n -E 's/^Inst ([^ ]+) \[([^]]+)\].*/\1 \2/p')
  [ -z "$upgrades" ] || die "installing would upgrade installed packages ($(echo "$upgrades" | tr '\n' ' '))," \
    "so nothing was changed: install ${PACKAGES[*]} yourself, then rerun"
  mkdir -p "$LOGS"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOGS/apt.log" 2>&1 \
    || die "apt-get install failed; see $LOGS/apt.log"
  say "installed ${PACKAGES[*]}; stop leaves them installed"
}

write_config() {
  local cpus port=$CTLD_PORT node
  cpus=$(nproc)
  mkdir -p "$STATE/ctld" "$LOGS"
  for node in "${NODES[@]}"; do mkdir -p "$STATE/spool/$node"; done
  {
    echo "# Written by scripts/slurm.sh: a two-node test cluster on one machine; removed by scripts/slurm.sh stop."
    echo "ClusterName=torchdev"
    echo "SlurmctldHost=$(hostname -s)(127.0.0.1)"
    echo "SlurmctldPort=$CTLD_PORT"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$STATE/munge/munge.socket.2"
    echo "StateSaveLocation=$STATE/ctld"
    echo "SlurmdSpoolDir=$STATE/spool/%n"
    echo "SlurmctldPidFile=$STATE/slurmctld.slurm.pid"
    echo "SlurmdPidFile=$STATE/slurmd-%n.slurm.pid"
    echo "SlurmctldLogFile=$LOGS/slurmctld.log"
    echo "SlurmdLogFile=$LOGS/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/backfill"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "ReturnToService=2"
    echo "SlurmdTimeout=60"
    echo "InactiveLimit=0"
    echo "KillWait=10"
    for node in "${NODES[@]}"; do
      port=$((port + 1))
      echo "NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) Port=$port CPUs=$cpus State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
  } >"$CONF"
}

start_munge() {
  mkdir -p "$STATE/munge"
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$STATE/munge"
  chmod 0755 "$STATE/munge"
  chmod 0400 "$STATE/munge/munge.key"
  # As the munge user (it refuses root), in the foreground so that $! is munged itself.
  nohup setpriv --reuid munge --regid munge --init-groups -- munged --foreground \
    --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket.2" \
    --seed-file="$STATE/munge/munge.seed" --pid-file="$STATE/munge/munged.pid" --log-file="$LOGS/munged.log" >>"$LOGS/munged.log" 2>&1 &
  echo $! >"$STATE/munged.pid"
  for _ in $(seq 20); do [ -S "$STATE/munge/munge.socket.2" ] && return 0; sleep 0.5; done
  fail_start "munged did not start within 10 s; see $LOGS/munged.log"
}

start_cluster() {
  refuse_foreign_state
  [ "$(id -u)" = 0 ] || die "starting the test cluster needs root: sudo $0 start"
  if cluster_up; then say "already running (sinfo: $(node_states))"; echo running; return 0; fi
  if [ -d "$STATE" ]; then say "a previous start is half up: stopping it first"; stop_cluster; fi
  installed || install_packages
  mkdir -p "$(dirname "$STATE")" "$LOGS"
  mkdir "$STATE"
  echo "Made by scripts/slurm.sh start; scripts/slurm.sh stop removes this whole folder." >"$MARKER"
  write_config
  say "starting munged, slurmctld and slurmd for ${NODES[*]} (config $CONF, logs $LOGS)"
  start_munge
  nohup slurmctld -D -f "$CONF" >>"$LOGS/slurmctld.log" 2>&1 &
  echo $! >"$STATE/slurmctld.pid"
  for node in "${NODES[@]}"; do
    nohup slurmd -D -f "$CONF" -N "$node" >>"$LOGS/slurmd-$node.log" 2>&1 &
    echo $! >"$STATE/slurmd-$node.pid"
  done
  if [ ! -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ]; then
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
    echo "$SYSTEM_CONF" >"$STATE/linked"
  fi
  for _ in $(seq 60); do
    if nodes_idle; then say "up: ${NODES[*]} idle (SLURM_CONF=$CONF)"; echo started; return 0; fi
    for daemon in $(daemons); do
      alive "$STATE/$daemon.pid" || fail_start "$daemon exited while starting; see $LOGS/$daemon.log"
    done
    sleep 1
  done
  fail_start "the nodes were not idle within 60 s (sinfo: $(node_states)); see $LOGS/slurmctld.log and $LOGS/slurmd-n1.log"
}

node_states() { timeout 10 sinfo -h -N -o '%N=%t' 2>/dev/null | sort -u | tr '\n' ' ' || true; }
nodes_idle() {
  local states; states=$(node_states)
  for node in "${NODES[@]}"; do grep -q -E "(^| )$node=(idle|mix|alloc)( |$)" <<<"$states" || return 1; done
}
cluster_up() {
  local daemon
  for daemon in $(daemons); do alive "$STATE/$daemon.pid" || return 1; done
  nodes_idle
}

stop_cluster() {
  [ -d "$STATE" ] || { say "not running"; return 0; }
  refuse_foreign_state
  if alive "$STATE/slurmctld.pid"; then
    # Running jobs' steps outlive slurmd (slurmstepd): cancel them all and let them end first.
    local jobs
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      say "cancelling jobs $(echo "$jobs" | tr '\n' ' ')"
      # shellcheck disable=SC2086  # one job id per word
      timeout 10 scancel $jobs 2>/dev/null || true
      for _ in $(seq 30); do [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null || true)" ] && break; sleep 1; done
    fi
  fi
  local daemon pid
  for daemon in $(daemons | tac); do
    [ -f "$STATE/$daemon.pid" ] || continue
    pid=$(cat "$STATE/$daemon.pid")
    if alive "$STATE/$daemon.pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 30); do alive "$STATE/$daemon.pid" || break; sleep 0.5; done
      alive "$STATE/$daemon.pid" && { say "$daemon ($pid) ignored SIGTERM for 15 s: killing it"; kill -9 "$pid" || true; }
    fi
  done
  if [ -f "$STATE/linked" ] && [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
    rm -f "$SYSTEM_CONF"
  fi
  rm -rf "$STATE"
  say "stopped; state $STATE removed (logs stay in $LOGS)"
}

status_cluster() {
  local daemon up=0
  for daemon in $(daemons); do
    if alive "$STATE/$daemon.pid"; then echo "$daemon: running (pid $(cat "$STATE/$daemon.pid"))"
    else echo "$daemon: not running"; up=1; fi
  done
  [ "$up" = 0 ] && echo "sinfo: $(node_states)"
  [ "$up" = 0 ] && nodes_idle
}

case "${1:-}" in
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) status_cluster ;;
  *) echo "usage: $0 start | stop | status" >&2; exit 2 ;;
esac
