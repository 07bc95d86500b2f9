#!/usr/bin/env bash
# Installs a pinned, working Prefect server into a git-ignored venv at .prefect-venv.
# Why the pins: `pip install prefect` on the registry resolves prefect 3.8.8 with fastapi 0.165,
# which crashes at import (Body(min_items=...)); fastapi<0.151 is what 3.8.8/3.9.x were built for.
# Idempotent: does nothing when the venv already has the pinned versions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SWITCHYARD_PREFECT_VENV:-$ROOT/.prefect-venv}"
PREFECT_VERSION="3.8.8"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/prefect" ] && "$VENV/bin/python" -c "import prefect,sys; sys.exit(0 if prefect.__version__=='$PREFECT_VERSION' else 1)" 2>/dev/null; then
  echo "prefect $PREFECT_VERSION already installed in $VENV"
  exit 0
fi
echo "installing prefect $PREFECT_VERSION into $VENV (about 30 s)"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "prefect==$PREFECT_VERSION" "fastapi<0.151"
"$VENV/bin/python" -c "import prefect; print('prefect', prefect.__version__, 'ready in', '$VENV')"
