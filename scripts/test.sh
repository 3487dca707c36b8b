#!/usr/bin/env bash
# The tests, exactly as CI runs them: every unit, integration and golden test, including the
# browser tests: a study report rendered in headless Chromium, and the explorer (`shapelab
# serve`) clicked through over WebDriver. Chromium and its driver are Debian's `chromium` and
# `chromium-driver` packages, installed here with apt-get when absent (never a downloaded
# browser). The store tests run against a real PostgreSQL: Debian's `postgresql`, installed
# when absent, as a throwaway server on a Unix socket in a temporary directory, stopped and
# removed at the end (scripts/throwaway-postgres.sh).
# Opt-in extras: SHAPELAB_SLOW_TESTS=1 (long experiments), SHAPELAB_PYTHON_TESTS=1 (files
# opened from Python).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: chromium is not installed and neither root nor sudo is available; install the 'chromium' package" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh

SHAPELAB_REQUIRE_BROWSER=1 SHAPELAB_REQUIRE_POSTGRES=1 cargo test --workspace --locked "$@"
