#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another, each
# starting from a scratch copy of its committed seed corpus (fuzz/corpus-seed/<target>/) with a
# fixed libFuzzer seed, and fails when any target finds a crash (a panic, an overflow, a
# timeout or running out of memory). Crashing inputs are kept in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz with
# `cargo install cargo-fuzz` when it is missing. Environment:
#   FUZZ_TARGETS  targets to run, space-separated (default: all of `cargo fuzz list`)
#   FUZZ_SEED     libFuzzer -seed (default 1)
#   FUZZ_CORPUS   a directory to keep the grown corpora in (<dir>/<target>/), for long runs
#                 that resume; default: a fresh temporary copy of the seeds, removed at the end
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

say() { echo "fuzz.sh: $*"; }
die() {
  echo "fuzz.sh: $*" >&2
  exit 1
}

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "SECONDS must be a positive integer, got '$seconds'"
seed=${FUZZ_SEED:-1}

cargo +nightly --version >/dev/null 2>&1 ||
  die "the nightly Rust toolchain is required (cargo-fuzz needs -Z flags): rustup toolchain install nightly"
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install cargo-fuzz)"
  cargo install cargo-fuzz --locked >/dev/null
fi

# Release code with debug assertions and overflow checks. No sanitizer: the fuzzed code is
# safe Rust (the only unsafe blocks are socket syscalls in the TURN driver, not reached here),
# so AddressSanitizer would cost build and run time without finding more.
flags=(--sanitizer none --debug-assertions)

started=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
say "built every target in $(($(date +%s) - started)) s"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
[ "${#targets[@]}" -gt 0 ] || die "no fuzz targets found"

scratch=
if [ -z "${FUZZ_CORPUS:-}" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
fi
corpora=${FUZZ_CORPUS:-$scratch}

failed=()
for target in "${targets[@]}"; do
  seeds=corpus-seed/$target
  [ -d "$seeds" ] || die "no seed corpus for $target at fuzz/$seeds"
  corpus=$corpora/$target
  mkdir -p "$corpus"
  cp -n "$seeds"/* "$corpus"/
  log=$(mktemp)
  say "$target: ${seconds} s from $(find "$corpus" -type f | wc -l) inputs, -seed=$seed"
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" -- \
    -seed="$seed" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  # The final stats say how much ran; the last status line says what it covered.
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -n 1 || true)
  if [ "$status" = 0 ]; then
    say "$target: ok, ${runs:-?} runs, ${cov:-no coverage line}"
  else
    say "$target: FAILED (exit $status) after ${runs:-?} runs; output follows"
    tail -n 60 "$log" >&2
    failed+=("$target")
  fi
  rm -f "$log"
done

[ "${#failed[@]}" = 0 ] || die "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
say "all ${#targets[@]} targets ran ${seconds} s each without a crash"
