#!/usr/bin/env bash
# Debian's Chromium for the browser journeys (tests/test_browser.py), which Playwright drives
# through executable_path=/usr/bin/chromium. Idempotent and quiet: does nothing when it is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  echo "install-browser: chromium did not install (apt-get install chromium)" >&2
  exit 1
fi
