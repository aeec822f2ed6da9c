#!/bin/sh
# Compose entrypoint: run the command as the owner of /workspace (the host user who mounted it), so that
# checkpoints, metrics and reports written there belong to them and not to root or the image's UID 1000.
set -eu
uid=$(stat -c %u /workspace)
gid=$(stat -c %g /workspace)
export HOME="${HOME_OVERRIDE:-/tmp/home-$uid}"
mkdir -p "$HOME"
[ "$(id -u)" = "$uid" ] && exec "$@"
chown "$uid:$gid" "$HOME"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
