#!/usr/bin/env bash
# End-to-end tests of todo-api against a real Better Auth and headless Chromium.
#
#   TODO_API_BIN=target/release/todo-api tests/e2e/run.sh
#
# Environment:
#   TODO_API_BIN      the todo-api binary to test (required; a built release binary)
#   E2E_DATABASE_URL  database for todo-api (default: a SQLite file in a temp dir)
#   E2E_CHROMIUM      Chromium executable (default /usr/bin/chromium; installed with
#                     apt-get when missing)
# Artifacts: target/e2e-browser.png, target/e2e-*-todo-api.log
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [[ -z "${TODO_API_BIN:-}" ]]; then
  echo "run.sh: set TODO_API_BIN to a built todo-api binary (e.g. target/release/todo-api)" >&2
  exit 2
fi
bin="$(cd "$OLDPWD" && realpath -e -- "$TODO_API_BIN" 2>/dev/null)" || {
  echo "run.sh: TODO_API_BIN does not exist: $TODO_API_BIN" >&2
  exit 2
}
TODO_API_BIN="$bin"
if [[ ! -x "$TODO_API_BIN" ]]; then
  echo "run.sh: TODO_API_BIN is not executable: $TODO_API_BIN" >&2
  exit 2
fi
export TODO_API_BIN

chromium="${E2E_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  if [[ "$chromium" != /usr/bin/chromium ]]; then
    echo "run.sh: E2E_CHROMIUM is not executable: $chromium" >&2
    exit 2
  fi
  echo "run.sh: installing Debian's chromium package" >&2
  sudo_cmd=()
  if [[ "$(id -u)" != 0 ]]; then sudo_cmd=(sudo); fi
  install_chromium() {
    "${sudo_cmd[@]}" apt-get update -qq &&
      "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  }
  # One retry: an interrupted earlier install leaves dpkg half-configured.
  install_chromium || {
    "${sudo_cmd[@]}" dpkg --configure -a || true
    install_chromium
  }
  [[ -x "$chromium" ]] || { echo "run.sh: chromium still missing after apt-get" >&2; exit 2; }
fi
export E2E_CHROMIUM="$chromium"

# playwright-core never downloads browsers, but make sure nothing tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error >/dev/null

node --test --test-reporter=spec api.test.mjs browser.test.mjs
