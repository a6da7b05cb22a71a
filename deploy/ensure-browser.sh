#!/usr/bin/env bash
# The portal's browser tests drive Debian's Chromium through Playwright (never a downloaded
# browser). Install it when missing; skip quietly when not root (the tests then skip).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is not installed and this is not root: browser tests will be skipped" >&2
  exit 0
fi
echo "installing chromium from the OS packages..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
