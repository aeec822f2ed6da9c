#!/bin/sh
# The entrypoint of compose's services and Slurm's Docker runtime, started as root (`sh run-as-owner.sh COMMAND...`):
# run COMMAND as the owner of /workspace (the host user who mounted it), so that checkpoints, metrics and reports
# written there belong to them. Never as root by accident: when root owns /workspace (a checkout made with sudo,
# many CI runners, Docker Desktop's mounts) the command runs as the image's user torchdev instead, saying so in one
# line; as root only when asked by name, TORCHDEV_RUN_AS=root.
#
# The container keeps only the capabilities this needs (torchdev/profile.py, OWNER_CAPABILITIES): SETUID and SETGID
# for setpriv, DAC_READ_SEARCH for `sh` to read this file in a checkout only its owner may enter, and KILL for the
# init in front of it (PID 1, root) to forward signals to COMMAND once it is another user's. HOME is made after the
# switch, by the user, so no CHOWN. setpriv to a non-root user clears every capability: COMMAND has none, and
# no-new-privileges keeps it so.
#
# HOME is /home/owners/UID: compose mounts a named volume there (one per variant), so what the user keeps in their home
# lasts from one `docker compose run` to the next, the packages they `pip install` (~/.local, behind the image's own)
# among it. /home/owners is open to every user with the sticky bit (docker/user-layer.sh): the user makes their own
# home in it. Where it cannot be made (an older image), HOME is /tmp/home-UID, which lasts as long as the container.
# Before COMMAND, as the user, the container's startup checks (smoke/startup_checks.py in the mounted checkout) say
# what would fail later (/dev/shm, locked memory, torch's kernels for the GPUs, the driver); they never stop it.
set -eu

say() { echo "run-as-owner: $*" >&2; }

image_user=torchdev
owner_uid=$(stat -c %u /workspace)
owner_gid=$(stat -c %g /workspace)
case "${TORCHDEV_RUN_AS:-}" in
  "")
    if [ "$owner_uid" != 0 ]; then
      uid=$owner_uid gid=$owner_gid
    else
      uid=$(id -u "$image_user") gid=$(id -g "$image_user")
      say "/workspace belongs to root, so this runs as $image_user (uid $uid), not as root: files it writes there" \
        "belong to uid $uid, which your host user may not be able to change or delete; chown the folder to your" \
        "user (sudo chown -R \"\$(id -u):\$(id -g)\" FOLDER) to run as yourself, or set TORCHDEV_RUN_AS=root to run" \
        "as root"
    fi ;;
  root) uid=0 gid=0 ;;
  *)
    say "TORCHDEV_RUN_AS=$TORCHDEV_RUN_AS: the one value is root (run as root); unset it to run as the owner of" \
      "/workspace"
    exit 2 ;;
esac

export HOME="${HOME_OVERRIDE:-/home/owners/$uid}"
# What runs as the user, before COMMAND: HOME, ~/.local/bin on PATH (after the image's commands), the checks.
# shellcheck disable=SC2016  # $HOME and $@ are the new shell's
start='if ! mkdir -p "$HOME" 2>/dev/null; then
  echo "run-as-owner: $HOME cannot be made, so HOME is /tmp/home-$(id -u), which lasts only as long as the container" >&2
  HOME=/tmp/home-$(id -u) && mkdir -p "$HOME"
fi
export PATH="$PATH:$HOME/.local/bin"
checks=/workspace/smoke/startup_checks.py
if [ -f "$checks" ]; then python3 -B "$checks" || true; fi
exec "$@"'
if [ "$(id -u)" = "$uid" ] || [ "$(id -u)" != 0 ]; then
  # Already that user, or started as another one (`docker run --user`), who cannot switch: run as is.
  exec sh -c "$start" sh "$@"
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- sh -c "$start" sh "$@"
