#!/usr/bin/env bash
# Installs what the web UI's browser test needs (crates/switchyard/tests/ui.rs): Debian's
# Chromium (/usr/bin/chromium) and playwright-core from npm, pinned, into .browser-env/ (git
# ignored). Nothing is downloaded by Playwright itself: it drives the system Chromium.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLAYWRIGHT_VERSION=1.64.1

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package, about 1 minute)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
  echo "installing nodejs and npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
dir="$ROOT/.browser-env"
if [ ! -f "$dir/node_modules/playwright-core/package.json" ] ||
   ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$dir/node_modules/playwright-core/package.json"; then
  echo "installing playwright-core $PLAYWRIGHT_VERSION into $dir"
  mkdir -p "$dir"
  (cd "$dir" && npm install --no-audit --no-fund --silent --prefix "$dir" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null)
fi
echo "browser ready: $(chromium --version 2>/dev/null | head -1), playwright-core $PLAYWRIGHT_VERSION in $dir"
