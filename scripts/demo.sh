#!/usr/bin/env bash
# The main job, end to end on this machine:
#   1. installs a pinned Prefect into .prefect-venv (first time only) and builds switchyard;
#   2. starts a local Prefect server on a free loopback port, with a fresh home;
#   3. creates a process work pool, deploys the flows in flows/demo_flows.py, starts a worker;
#   4. runs switchyard with examples/demo.yaml: sample events on stdin, sample orders on a webhook;
#   5. prints the runs switchyard started until they reach Completed, then stops everything.
# KEEP=1 leaves Prefect (with its UI), the worker and switchyard running until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/prefect-env.sh
PREFECT="$ROOT/.prefect-venv/bin/prefect"
PY="$ROOT/.prefect-venv/bin/python"
echo "== building switchyard (a first build compiles ~400 crates, 2.5 to 6 minutes on 2 cores; later ones take seconds)"
started=$SECONDS
cargo build --bin switchyard
echo "   built in $((SECONDS - started)) s"
# Wherever cargo puts it: CARGO_TARGET_DIR, a .cargo/config.toml's target-dir, or target/.
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
SWITCHYARD="$TARGET_DIR/debug/switchyard"

WORK="$(mktemp -d -t switchyard-demo.XXXXXX)"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
HOOK_PORT="$(free_port)"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_HOME="$WORK/prefect"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED=false
export PREFECT_SERVER_UI_ENABLED="${KEEP:+true}"
export PREFECT_SERVER_UI_ENABLED="${PREFECT_SERVER_UI_ENABLED:-false}"
PIDS=()
# Each background process runs in its own process group (setsid), so stopping it also stops
# what it spawned (the worker's flow-run subprocesses). Stop order is the reverse of start
# order: switchyard, then the worker while the server is still up, then the server.
stop_group() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_group "${PIDS[$i]}"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting Prefect at $PREFECT_API_URL (logs: $WORK/prefect.log)"
setsid "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$WORK/prefect.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 240); do
  if [ "$(curl -s "$PREFECT_API_URL/health" || true)" = "true" ]; then break; fi
  if ! kill -0 "${PIDS[0]}" 2>/dev/null; then cat "$WORK/prefect.log"; echo "Prefect failed to start"; exit 1; fi
  sleep 0.5
done
[ "$(curl -s "$PREFECT_API_URL/health" || true)" = "true" ] || { echo "Prefect did not become healthy"; exit 1; }

echo "== creating work pool, deploying flows/demo_flows.py"
"$PREFECT" work-pool create switchyard-demo --type process --overwrite >/dev/null
(cd flows && "$PY" deploy.py switchyard-demo)

echo "== starting a process worker (logs: $WORK/worker.log)"
PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_WORKER_PREFETCH_SECONDS=0 \
  setsid "$PREFECT" worker start --pool switchyard-demo --name demo-worker >"$WORK/worker.log" 2>&1 &
PIDS+=($!)

echo "== switchyard check"
SWITCHYARD_LISTEN="127.0.0.1:$HOOK_PORT" "$SWITCHYARD" check --online examples/demo.yaml

echo "== running switchyard: flows/sample-events.jsonl on stdin, orders on http://127.0.0.1:$HOOK_PORT/hooks/orders"
SWITCHYARD_LISTEN="127.0.0.1:$HOOK_PORT" SWITCHYARD_JOURNAL="$WORK/journal.db" setsid "$SWITCHYARD" run examples/demo.yaml \
  <flows/sample-events.jsonl 2>"$WORK/switchyard.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$HOOK_PORT/healthz" >/dev/null && break
  sleep 0.1
done
for order in '{"id": 1001, "amount": 250.0, "customer": "Initech"}' \
             '{"id": 1002, "amount": 20, "customer": "Small Co"}' \
             '{"id": 1003, "amount": 149.99, "customer": "Hooli"}' \
             '{"id": 1004, "amount": '; do
  printf '   POST %-58s -> ' "$order"
  # The body goes to stdout as it is (no `-o /dev/stdout`: that truncates a redirected log).
  curl -s -w ' (HTTP %{http_code})\n' -X POST -H 'content-type: application/json' \
    -d "$order" "http://127.0.0.1:$HOOK_PORT/hooks/orders"
done

echo "== waiting for the runs (greet x2, process-order x2) to complete"
status=0
"$PY" flows/show_runs.py "$PREFECT_API_URL" 4 180 || status=$?
echo
echo "switchyard's log (decisions and runs):"
grep -E "event received|flow run started|route failed|malformed|skipped" "$WORK/switchyard.log" | sed 's/^/   /' || true
echo
echo "the journal (switchyard events list):"
"$SWITCHYARD" events --journal "$WORK/journal.db" list | sed 's/^/   /' 

if [ -n "${KEEP:-}" ]; then
  echo
  echo "Prefect UI: http://127.0.0.1:$PORT  — webhook: http://127.0.0.1:$HOOK_PORT/hooks/orders — Ctrl-C to stop"
  wait "${PIDS[0]}"
fi
exit "$status"
