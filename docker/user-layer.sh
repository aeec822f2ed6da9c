#!/usr/bin/env bash
# The last step of both images (docker/Dockerfile's runtime and devel stages), run as root:
#   TARGETOS=linux TARGETARCH=amd64 ADDED_PACKAGES="einops==0.8.1" user-layer.sh
# with the variant's lock in /tmp/lock/<os>-<arch>.txt and the lock of its added packages in /tmp/added/<os>-<arch>.txt
# (either may be absent), pip-env.sh, index_login.py, lock_part.py and write_manifest.py in /tmp/torchdev, a tmpfs
# at /tmp/user-layer.
#
# 1. The variant's added packages (images.yaml: a variant's added_packages, which `./dev capture` writes from what
#    people installed in a container): from their own lock with its hashes, after everything the variant's lock put
#    in; without a lock, resolved now, held to what is installed. Here, in the image's last step, so adding one
#    rebuilds this step alone.
# 2. The constraints file (/usr/share/torchdev/constraints.txt, which PIP_CONSTRAINT names for every later `pip
#    install`): every name==version of the lock and the added lock (without a lock: of what is installed). `pip install
#    torch==2.1.0`, or a package that needs another numpy, then fails naming the locked version, and `import torch`
#    still gets the image's. NGC's images do the same with /etc/pip/constraint.txt.
# 3. The venv opened to the user's site-packages (include-system-site-packages = true): pip, run as the non-root user
#    who cannot write /opt/venv, installs into ~/.local ("Defaulting to user installation because normal site-packages
#    is not writeable"), `pip install --user` works, and `python -s` or PYTHONNOUSERSITE=1 leaves the additions out.
#    Python puts the venv's site-packages first, then the user's, then the system's (site.py: "venv takes precedence
#    over user-site"): the image's packages win. The system's dist-packages hold nothing here (the bases' python3 has
#    no Debian Python packages beside it; the smoke suite checks).
# 4. /home/owners, where docker/run-as-owner.sh gives compose's users their homes (/home/owners/<uid>): open to every
#    user, with the sticky bit, so a named volume mounted there starts the same, and the user makes their own home in
#    it without root's CHOWN.
# 5. The manifest's package list, now with the added packages.
set -euo pipefail
lock="/tmp/lock/$TARGETOS-$TARGETARCH.txt"
added="/tmp/added/$TARGETOS-$TARGETARCH.txt"
share=/usr/share/torchdev
scratch=/tmp/user-layer
# The build's secrets and indexes, read as the locked install reads them; pip_install and pip_install_locked.
# shellcheck source=docker/pip-env.sh
source /tmp/torchdev/pip-env.sh

python -m pip list --format=freeze --exclude-editable > "$scratch/installed.txt"
if grep -q '^[^#[:space:]]' "$added" 2>/dev/null; then
  pip_install_locked "$added"
elif [ -n "${ADDED_PACKAGES:-}" ] && [ "${UNLOCKED:-}" != 1 ]; then
  echo "torchdev: added packages without their lock for $TARGETOS/$TARGETARCH, so nothing would be checked against a hash: run ./dev lock for the variant, or build with --unlocked" >&2
  exit 1
elif [ -n "${ADDED_PACKAGES:-}" ]; then
  # shellcheck disable=SC2086  # one word per package
  pip_install --constraint "$scratch/installed.txt" \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} $ADDED_PACKAGES
fi

{
  echo "# What this image holds, as pip constraints: PIP_CONSTRAINT names this file, so no \`pip install\` replaces it."
  echo "# From the variant's lock and the lock of its added packages (./dev lock), or what was installed without one."
  if [ -s "$lock" ]; then
    python /tmp/torchdev/lock_part.py "$lock" --without --pins
    if [ -s "$added" ]; then python /tmp/torchdev/lock_part.py "$added" --without --pins; fi
  else
    python -m pip list --format=freeze --exclude-editable
  fi
} > "$share/constraints.txt"

python /tmp/torchdev/write_manifest.py --update "$share/manifest.json" --declared "added=${ADDED_PACKAGES:-}" \
  > "$scratch/manifest.json"
mv "$scratch/manifest.json" "$share/manifest.json"

config=/opt/venv/pyvenv.cfg
sed -i 's/^include-system-site-packages = false$/include-system-site-packages = true/' "$config"
if ! grep -qx 'include-system-site-packages = true' "$config"; then
  echo "torchdev: $config does not open the venv to the user's site-packages: it reads $(grep include-system "$config")" >&2
  exit 1
fi

install -d -m 1777 /home/owners
