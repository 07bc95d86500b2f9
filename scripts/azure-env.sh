#!/usr/bin/env bash
# Installs the Azure Storage emulator for tests: Azurite 3.35.0 from npm (the newest that runs
# on node 20; see ../shared/reference/brokers.md §3) into .azurite. The tests start
# .azurite/node_modules/.bin/azurite-queue themselves on a free port.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.azurite"
if [ -x "$DIR/node_modules/.bin/azurite-queue" ]; then
  echo "azurite already installed in $DIR"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to install azurite (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
echo "azurite installed in $DIR"
