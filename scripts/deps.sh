#!/usr/bin/env bash
# Installs the Debian packages hearth needs to build and test. Idempotent and quiet when
# everything is present. Usage: scripts/deps.sh [build|test]
set -eu
want_build="make gcc pkg-config libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev zlib1g-dev libedit-dev"
want_test="libcmocka-dev clang libclang-rt-14-dev chromium tmux"
mode=${1:-build}
want="$want_build"
[ "$mode" = test ] && want="$want $want_test"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js is only needed by the server/browser tests; the machine image may ship its own
# (not Debian's nodejs package, which conflicts with it), so check the command instead.
if [ "$mode" = test ] && ! command -v npm >/dev/null 2>&1; then missing="$missing nodejs npm"; fi
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
