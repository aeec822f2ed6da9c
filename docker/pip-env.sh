#!/usr/bin/env bash
# Sourced by every build step that runs pip (runtime-base's locked install, devel-base's, docker/user-layer.sh), so
# that each reads the build's secrets and indexes the one same way:
#   source /tmp/torchdev/pip-env.sh && pip_install ARGUMENT...
#   source /tmp/torchdev/pip-env.sh && pip_install_locked REQUIREMENTS-FILE
# The CA bundle (a TLS-intercepting proxy's, when the host has one) arrives as the BuildKit secret ca_bundle, read by
# pip through PIP_CERT; logins for private indexes only as the secret netrc (torchdev passes the entries for the index
# hosts, docs/security.md "Credentials"), read through NETRC; both for the step alone, never in a layer. An empty
# PIP_INDEX_URL build arg means pip's default index. SOURCE_DATE_EPOCH makes Python write checked-hash .pyc files:
# byte-identical from build to build (timestamped ones are not), and still the 1.5 s faster `import torch` .pyc gives.
# pip_install: `pip install` that, when pip fails, lets index_login.py (mounted beside this file) say whether
# PIP_INDEX_URL's or TORCH_INDEX_URL's index asked for a login the build was not given, or refused the one it was
# (pip skips an index page that answers 401 without a word), then fails the step. pip_install_locked: a part of a
# lock (every file pinned by its hashes, each dependency its own entry), with the variant's wheel index beside
# PIP_INDEX_URL: with two indexes, only the locked file can be taken.
if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi
if [ -s /run/secrets/netrc ]; then export NETRC=/run/secrets/netrc; fi
if [ -z "${PIP_INDEX_URL:-}" ]; then unset PIP_INDEX_URL; fi
export SOURCE_DATE_EPOCH=0

# An index images.yaml declares over plain http (a mirror inside the site's network) is used as declared: pip
# otherwise ignores any http index but localhost's ("not a trusted or secure host") and then finds nothing. Locked
# files are still checked against their hashes; a login sent to such an index travels unencrypted (docs/security.md).
trusted=""
for url in "${PIP_INDEX_URL:-}" "${TORCH_INDEX_URL:-}"; do
  case "$url" in
    http://*) host=${url#http://}; host=${host%%/*}; trusted="$trusted ${host##*@}" ;;
  esac
done
if [ -n "$trusted" ]; then export PIP_TRUSTED_HOST="${trusted# }"; fi
unset trusted url host

pip_install() {
  python -m pip install "$@" && return 0
  python "$(dirname "${BASH_SOURCE[0]}")/index_login.py" "${PIP_INDEX_URL:-}" "${TORCH_INDEX_URL:-}"
  exit 1
}

pip_install_locked() {
  pip_install --require-hashes --no-deps ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r "$1"
}
