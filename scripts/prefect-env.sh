#!/usr/bin/env bash
# Installs a pinned, working Prefect server into a git-ignored venv at .prefect-venv.
# Why the pins: `pip install prefect` on the registry resolves prefect 3.8.8 with fastapi 0.165,
# which crashes at import (Body(min_items=...)); fastapi<0.151 is what 3.8.8/3.9.x were built for.
# Idempotent: does nothing when the venv already has the pinned versions.
#
# SWITCHYARD_PREFECT_VERSION=3.9.1 installs 3.9.1 instead, into .prefect-venv-3.9.1 (benches
# compare versions; point them at it with SWITCHYARD_PREFECT=.prefect-venv-3.9.1/bin/prefect).
# 3.9.x asks for a certifi newer than the registry has, so pip would fall back to 3.8.8: the
# recipe (../shared/reference/prefect-api.md §1.1) installs 3.8.8's frozen dependencies, then
# 3.9.x itself without its dependency check.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFECT_VERSION="${SWITCHYARD_PREFECT_VERSION:-3.8.8}"
case "$PREFECT_VERSION" in
  3.8.8) DEFAULT_VENV="$ROOT/.prefect-venv" ;;
  3.9.*) DEFAULT_VENV="$ROOT/.prefect-venv-$PREFECT_VERSION" ;;
  *) echo "SWITCHYARD_PREFECT_VERSION: expected 3.8.8 or 3.9.x, got '$PREFECT_VERSION'" >&2; exit 2 ;;
esac
VENV="${SWITCHYARD_PREFECT_VENV:-$DEFAULT_VENV}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/prefect" ] && "$VENV/bin/python" -c "import prefect,sys; sys.exit(0 if prefect.__version__=='$PREFECT_VERSION' else 1)" 2>/dev/null; then
  echo "prefect $PREFECT_VERSION already installed in $VENV"
  exit 0
fi
echo "installing prefect $PREFECT_VERSION into $VENV (about 30 s)"
"$PY" -m venv "$VENV"
if [ "$PREFECT_VERSION" = 3.8.8 ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "prefect==$PREFECT_VERSION" "fastapi<0.151"
else
  SWITCHYARD_PREFECT_VERSION=3.8.8 SWITCHYARD_PREFECT_VENV= bash "$0"
  FROZEN="$(mktemp)"
  trap 'rm -f "$FROZEN"' EXIT
  "$ROOT/.prefect-venv/bin/pip" freeze --disable-pip-version-check | grep -v '^prefect==' > "$FROZEN"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$FROZEN"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "prefect==$PREFECT_VERSION" 'whenever<0.12,>=0.10.5'
fi
"$VENV/bin/python" -c "import prefect; print('prefect', prefect.__version__, 'ready in', '$VENV')"
