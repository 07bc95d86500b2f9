#!/usr/bin/env bash
# The fuzz campaign (fuzz/): the config loader, event decoding for every source format,
# templates against hostile payloads, and the trigger machine under random event and clock
# sequences. Builds the targets with cargo-fuzz (installed into .tools when missing), with
# debug assertions on (an arithmetic overflow is a crash), and runs each for FUZZ_SECONDS
# (default 30, what CI runs) on a scratch copy of its committed corpus, from a fixed seed
# (FUZZ_SEED, default 1) so that CI explores the same inputs each time.
#   FUZZ_SECONDS=600 scripts/fuzz.sh           # longer, locally
#   FUZZ_TARGETS="template" scripts/fuzz.sh    # one target
# A crash fails the script; its input is left in fuzz/artifacts/<target>/. Make it a
# regression test and add it to fuzz/corpus/<target>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${FUZZ_SECONDS:-30}"
TARGETS="${FUZZ_TARGETS:-config decode template triggers}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if [ ! -x "$ROOT/.tools/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz into $ROOT/.tools (about 1 minute)"
    cargo install cargo-fuzz --locked --version 0.13.2 --root "$ROOT/.tools" --quiet
  fi
  export PATH="$ROOT/.tools/bin:$PATH"
fi
# cargo-fuzz passes flags that stable rustc accepts only with this (the machine has one
# stable toolchain and no nightly can be fetched).
export RUSTC_BOOTSTRAP=1
cd "$ROOT/fuzz"
echo "== cargo fuzz build (first build takes about 5 minutes)"
cargo fuzz build -s none -O -a
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
summary=""
for t in $TARGETS; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  if ! cargo fuzz run -s none -O -a "$t" "$scratch/$t" "corpus/$t" -- \
      -seed="${FUZZ_SEED:-1}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t crashed; the input is in fuzz/artifacts/$t/"
    exit 1
  fi
  runs="$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo '?')"
  summary="$summary $t=$runs"
  echo "   $t: $runs executions, no crash"
done
echo "fuzz: executions per target:$summary; crashes: 0"
