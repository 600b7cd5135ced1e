#!/usr/bin/env bash
# SFU fan-out benchmark (issue 3): one publisher sending ~1.5 Mbit/s VP8-sized video at
# 30 fps plus 50 packets/s of Opus-sized audio, forwarded to N subscribers for DURATION
# seconds, over 127.0.0.1 only. Prints forwarded packets/s, SFU worker CPU-seconds
# (utime+stime of the one "chorus-sfu-0" worker thread from /proc), CPU-µs per forwarded packet and RSS.
#
# Usage: bench/sfu-fanout.sh [N ...]        (default: 10 50 100)
#        DURATION=30 bench/sfu-fanout.sh 10
set -euo pipefail
cd "$(dirname "$0")/../sfu"
DURATION="${DURATION:-30}"
NS=("$@")
[ ${#NS[@]} -eq 0 ] && NS=(10 50 100)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../target}"
cargo build --release --example fanout >&2
BIN="$CARGO_TARGET_DIR/release/examples/fanout"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for n in "${NS[@]}"; do
  echo "--- N=$n, ${DURATION}s"
  "$BIN" "$n" "$DURATION"
done
