#!/usr/bin/env bash
# axe-core, from the npm registry, for the accessibility checks of the browser tests
# (tests/a11y.py injects it into each page; nothing is fetched from a CDN at run time).
# The version is pinned in .ci/package.json; idempotent and quiet: nothing to do when present.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f node_modules/axe-core/axe.min.js ] && grep -q "\"version\": \"$(node -p 'require("./package.json").dependencies["axe-core"]')\"" node_modules/axe-core/package.json; then
  exit 0
fi
npm install --no-audit --no-fund --silent >/dev/null
test -f node_modules/axe-core/axe.min.js || { echo "install-axe: axe-core did not install" >&2; exit 1; }
