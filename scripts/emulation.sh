#!/usr/bin/env bash
# Let this Linux host run linux/arm64 containers and builds under emulation: Debian's qemu-user-static, registered
# with the kernel's binfmt_misc with the F flag (the interpreter is opened once, so it works inside containers).
#   scripts/emulation.sh enable    mount binfmt_misc and register qemu-aarch64 where they are not; install
#                                  qemu-user-static (a leaf package: it upgrades nothing else) when it is missing
#   scripts/emulation.sh disable   undo exactly what `enable` did (state in /run), nothing else
#   scripts/emulation.sh status    say whether arm64 binaries run here
# Docker Desktop (Mac, Windows) has this built in; dockerd reads binfmt_misc per build, so no restart is needed.
set -euo pipefail
BINFMT=/proc/sys/fs/binfmt_misc
ENTRY=$BINFMT/qemu-aarch64
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
STATE=/run/torchdev-emulation

native_arm64() { [ "$(uname -m)" = aarch64 ]; }
registered() { [ -f "$ENTRY" ] && grep -q '^enabled' "$ENTRY"; }

enable() {
  if native_arm64; then echo "emulation: this host is arm64: nothing to emulate"; return 0; fi
  if registered; then echo "emulation: linux/arm64 already runs here ($(sed -n 's/^interpreter //p' "$ENTRY"))"; return 0; fi
  [ "$(id -u)" = 0 ] || { echo "emulation: needs root (binfmt_misc): sudo $0 enable" >&2; exit 1; }
  : >"$STATE"
  if [ ! -f "$CONF" ]; then
    echo "emulation: installing qemu-user-static (apt-get install qemu-user-static)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
    echo installed >>"$STATE"
  fi
  if [ ! -f "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" \
      || { echo "emulation: cannot mount binfmt_misc (a container without privileges?): run this on the host" >&2
           exit 1; }
    echo mounted >>"$STATE"
  fi
  # The conf's flags include F: the kernel opens qemu at registration, so containers need no copy of it.
  cat "$CONF" >"$BINFMT/register"
  echo registered >>"$STATE"
  echo "emulation: linux/arm64 runs here through $(sed -n 's/^interpreter //p' "$ENTRY")"
}

disable() {
  if [ ! -f "$STATE" ]; then echo "emulation: not enabled by this script: left as it is"; return 0; fi
  if grep -qx registered "$STATE" && [ -f "$ENTRY" ]; then echo -1 >"$ENTRY"; fi
  if grep -qx mounted "$STATE"; then umount "$BINFMT" || true; fi
  if grep -qx installed "$STATE"; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq qemu-user-static >/dev/null || true
  fi
  rm -f "$STATE"
  echo "emulation: disabled (what enable did is undone)"
}

case ${1:-status} in
  enable) enable ;;
  disable) disable ;;
  status)
    if native_arm64 || registered; then echo "emulation: linux/arm64 runs here"
    else echo "emulation: linux/arm64 does not run here: scripts/emulation.sh enable"; exit 1; fi ;;
  *) echo "usage: $0 enable|disable|status" >&2; exit 2 ;;
esac
