#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET seconds (default 30).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Targets: inspect (vela-inspect on arbitrary bytes), policy_rule, json_patch, list_query, range
# (vela-domain's parsers). Each starts from its committed seed corpus, fuzz/corpus/<target>;
# new inputs go to a scratch directory, so the committed files never grow. A crash, a failed
# assertion, a timeout or an out-of-memory stops with a non-zero exit; the reproducer is in
# fuzz/artifacts/<target>/ (`cargo fuzz run <target> fuzz/artifacts/<target>/<file>`).
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain of rust-toolchain.toml accept them. cargo-fuzz is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-30}"
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
TARGETS=(inspect policy_rule json_patch list_query range)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "== building the fuzz targets"
start=$(date +%s)
cargo fuzz build
echo "build: $(($(date +%s) - start)) s"

failed=()
for t in "${TARGETS[@]}"; do
  echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "$scratch/$t"
  start=$(date +%s)
  if cargo fuzz run "$t" "$scratch/$t" "$PWD/fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    >"$scratch/$t.log" 2>&1; then
    stats="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/$t.log" | tail -1 | tr -s '[:space:]' ' ')"
    echo "$t: ok in $(($(date +%s) - start)) s (runs $stats)"
  else
    echo "$t: FAILED after $(($(date +%s) - start)) s; last lines of the log:"
    tail -n 40 "$scratch/$t.log"
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets passed"
