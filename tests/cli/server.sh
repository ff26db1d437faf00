#!/usr/bin/env bash
# Black-box tests of `hearth serve` with the official npm clients (ollama, openai):
# tests/server/*.test.mjs via `node --test`. Needs node >= 18 and npm (packages installed
# with `npm ci` from the committed lock file). Fails loudly when either is missing.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
: "${HEARTH:?HEARTH must point at the hearth binary}"
: "${HEARTH_TEST_SHARED:?HEARTH_TEST_SHARED must point at the shared data}"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "server.sh: node and npm are required for the server tests (apt-get install nodejs npm)" >&2
  exit 1
fi
cd "$top/tests/server" || exit 1
if [ ! -d node_modules/ollama ] || [ ! -d node_modules/openai ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1 || { cat npm-ci.log >&2; echo "server.sh: npm ci failed" >&2; exit 1; }
fi
# ASan builds run ~3x slower: scale the tests' timeouts.
case "$HEARTH" in *asan*) export HEARTH_TEST_SLOW=3 ;; esac
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
exec timeout 600 node --test --test-concurrency=1 --test-timeout=$((300000 * ${HEARTH_TEST_SLOW:-1})) ./*.test.mjs
