#!/usr/bin/env bash
# Browser test of the web chat page (tests/browser/): Debian's Chromium driven by
# playwright-core against the mock server and, once `$HEARTH serve` exists, against the real
# server on a loopback port. Screenshots land in build/test-artifacts/.
# Needs chromium and npm (scripts/deps.sh test installs them); exit 0 = pass.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
dir="$top/tests/browser"
fail() { echo "browser.sh: $*" >&2; exit 1; }
command -v node >/dev/null 2>&1 || fail "node is not installed (scripts/deps.sh test)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed (scripts/deps.sh test)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "chromium is not installed (apt-get install chromium)"
[ -d "${HEARTH_TEST_SHARED:-$top/../shared}" ] || fail "../shared (fixtures and models) is missing next to the project"

# Install playwright-core from the lock file once; reinstall when the lock file changes.
stamp="$dir/node_modules/.hearth-lock"
if ! cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed in tests/browser"
  cp "$dir/package-lock.json" "$stamp"
fi

# The ASan build of hearth is several times slower: stretch every timeout.
if [ -n "${HEARTH:-}" ] && [ -x "$HEARTH" ] && nm "$HEARTH" 2>/dev/null | grep -q __asan_init; then
  export HEARTH_TEST_SLOW=${HEARTH_TEST_SLOW:-4}
fi
export HEARTH_ARTIFACTS=${HEARTH_ARTIFACTS:-$top/build/test-artifacts}
mkdir -p "$HEARTH_ARTIFACTS"
cd "$dir" && exec node --test --test-reporter=spec chat.test.mjs
