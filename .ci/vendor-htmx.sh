#!/usr/bin/env bash
# htmx, vendored: the import page polls an import's progress with it (served from /static,
# never from a CDN). This fetches the pinned release from the npm registry and checks, or with
# --update writes, aligncycle/web/static/vendor/htmx-$VERSION.min.js (htmx is 0BSD-licensed).
set -euo pipefail
VERSION=2.0.11
cd "$(dirname "$0")/.."
target="aligncycle/web/static/vendor/htmx-$VERSION.min.js"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "htmx.org@$VERSION" --silent >/dev/null && tar xzf "htmx.org-$VERSION.tgz")
if [ "${1:-}" = "--update" ]; then
  cp "$tmp/package/dist/htmx.min.js" "$target"
  echo "vendored htmx $VERSION into $target"
elif cmp -s "$tmp/package/dist/htmx.min.js" "$target"; then
  echo "$target is htmx $VERSION as published"
else
  echo "$target differs from htmx $VERSION as published (run $0 --update)" >&2
  exit 1
fi
