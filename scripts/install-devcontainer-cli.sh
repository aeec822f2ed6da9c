#!/usr/bin/env bash
# Install the Dev Containers CLI (`devcontainer`), pinned, with npm; does nothing when one is already on PATH.
#   scripts/install-devcontainer-cli.sh      (DEVCONTAINER_CLI_VERSION overrides the pin)
# It needs Node.js >= 20 with npm. `npm install -g` writes to npm's global prefix: as root that is /usr or
# /usr/local; as a user, set a prefix you own first (npm config set prefix ~/.local; ~/.local/bin on PATH).
set -euo pipefail
version=${DEVCONTAINER_CLI_VERSION:-0.89.0}
if command -v devcontainer >/dev/null 2>&1; then
  echo "devcontainer-cli: $(command -v devcontainer) $(devcontainer --version) present, nothing to do"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "devcontainer-cli: npm is missing: install Node.js >= 20 with npm (e.g. from nodejs.org or NodeSource;" \
       "Debian 12's nodejs is 18, too old), then rerun this script" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "devcontainer-cli: Node.js $(node --version) is too old: @devcontainers/cli $version needs Node.js >= 20" >&2
  exit 1
fi
echo "devcontainer-cli: npm install -g @devcontainers/cli@$version" >&2
npm install -g --no-audit --no-fund "@devcontainers/cli@$version"
if ! command -v devcontainer >/dev/null 2>&1; then
  echo "devcontainer-cli: installed, but 'devcontainer' is not on PATH: add $(npm prefix -g)/bin to PATH" >&2
  exit 1
fi
echo "devcontainer-cli: $(command -v devcontainer) $(devcontainer --version) installed"
