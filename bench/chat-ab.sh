#!/usr/bin/env bash
# Chat latency A/B (issue 10, item 10): two `chorus` binaries, run alternately at a fixed rate.
#
# For each of PAIRS pairs it starts binary A, then binary B, each as a fresh `chorus serve` on
# 127.0.0.1 with its own temporary data directory (SQLite) and bench/chat.sh's server settings,
# and runs `chat_load … many-conversations --rate RATE --duration DURATION --strict-order`
# against it (100 conversations × 1 sender on a fixed schedule; latency = message:send → ack
# from each message's scheduled time). It prints one line per run: p50/p99/max latency, the
# server's CPU-µs per acked message (utime+stime from /proc/PID/stat over the load), its
# context switches per message (`perf stat -e context-switches`, when perf is installed) and
# the mean group commit size (from /metrics). Alternating cancels out the slow drifts of a
# shared machine that a before-then-after series would attribute to the change.
#
# With SCENARIO=many-senders it runs the throughput scenario instead (200 conversations × 2
# senders, window 1: each sender sends its next message once the last is acked) and the line
# also gives the messages per second.
#
# Usage: bench/chat-ab.sh BINARY_A BINARY_B [PAIRS]     (PAIRS defaults to 5)
#        RATE=2000 DURATION=20 bench/chat-ab.sh old/chorus target/release/chorus 8
#        SCENARIO=many-senders bench/chat-ab.sh old/chorus target/release/chorus
# The load tool is target/release/examples/chat_load (built here if missing):
#   cargo build --release -p chorus -p chorus-chat --bin chorus --example chat_load \
#     --example chat_store_load
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2; }
BINARIES=("$(realpath "$1")" "$(realpath "$2")")
PAIRS="${3:-5}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-10}"
SCENARIO="${SCENARIO:-rate}"
case "$SCENARIO" in
  rate) LOAD_ARGS=(many-conversations --rate "$RATE") ;;
  many-senders) LOAD_ARGS=(many-senders --window 1) ;;
  *) echo "SCENARIO must be rate or many-senders" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
LOAD="$CARGO_TARGET_DIR/release/examples/chat_load"
[ -x "$LOAD" ] || cargo build --release -p chorus -p chorus-chat --bin chorus \
  --example chat_load --example chat_store_load >&2
CHAT_SECRET="chat-ab-secret-$(date +%s)-0123456789abcdef"
SECRET=$CHAT_SECRET
# shellcheck source=bench/chat-server.sh
. bench/chat-server.sh
TICKS=$(getconf CLK_TCK)
HAVE_PERF=no
command -v perf >/dev/null && perf stat -e context-switches -x, -o /dev/null true 2>/dev/null \
  && HAVE_PERF=yes

WORK=""
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null || true
  [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(uname -r); ${LOAD_ARGS[*]} for ${DURATION}s per run"
echo "A = ${BINARIES[0]}"
echo "B = ${BINARIES[1]}"
for pair in $(seq "$PAIRS"); do
  for side in A B; do
    bin=${BINARIES[0]}
    [ "$side" = B ] && bin=${BINARIES[1]}
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/chorus-chat-ab.XXXXXX")
    addr="127.0.0.1:$((20000 + RANDOM % 20000))"
    chat_serve "$bin" "$addr" "$WORK" "$WORK/server.log"
    SERVER_PID=$CHAT_SERVER_PID
    for _ in $(seq 100); do curl -sf "http://$addr/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    before=$(cpu_ticks "$SERVER_PID")
    perf_pid=""
    if [ "$HAVE_PERF" = yes ]; then
      perf stat -e context-switches -x, -o "$WORK/perf" -p "$SERVER_PID" &
      perf_pid=$!
    fi
    line=$("$LOAD" "$addr" "$SECRET" "${LOAD_ARGS[@]}" --duration "$DURATION" --strict-order \
      | grep '^RESULT ' || true)
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    after=$(cpu_ticks "$SERVER_PID")
    group=$(commits "$addr" | awk '{ if ($1 > 0) printf "%.2f", $2 / $1; else print "-" }')
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    acked=$(get acked)
    if [ -z "$line" ] || [ "$(get ok)" != true ]; then
      echo "pair $pair $side: load failed: ${line:-no RESULT line}" >&2
      exit 1
    fi
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$acked" \
      'BEGIN { printf "%.0f", (a - b) / t * 1e6 / n }')
    switches=-
    if [ -f "$WORK/perf" ]; then
      switches=$(awk -F, -v n="$acked" '/context-switches/ { printf "%.1f", $1 / n }' "$WORK/perf")
    fi
    printf 'pair %s %s %s msgs_per_s=%s p50_ms=%s p99_ms=%s max_ms=%s cpu_us_per_msg=%s switches_per_msg=%s group=%s acked=%s\n' \
      "$pair" "$side" "$(date -u +%H:%M:%S)" "$(get msgs_per_s)" "$(get p50_ms)" "$(get p99_ms)" \
      "$(get max_ms)" "$cpu" "$switches" "$group" "$acked"
    rm -rf "$WORK"
    WORK=""
  done
done
