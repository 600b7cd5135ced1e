#!/usr/bin/env bash
# Chat benchmark (issues 5 and 10): message:send → ack latency with durable commit, and
# messages/s, for SQLite (the default: WAL, synchronous=FULL) and then PostgreSQL.
#
# For each backend it starts its own `chorus serve` on 127.0.0.1 (own temp data dir, or own
# PostgreSQL schema) and runs examples/chat_load.rs once per scenario in SCENARIOS:
#   one-conversation    1 conversation × 10 senders (each message fans out to 9 members)
#   many-conversations  100 conversations × 1 sender
#   many-senders        200 conversations × 2 senders (the throughput scenario: 400 senders,
#                       each message goes to the other sender as message:new)
# each sender sending for DURATION seconds with WINDOW messages in flight (1 = next message
# after the ack). With RATE=R it adds a fixed-rate run (the latency scenario): 100
# conversations × 1 sender sending R messages per second in total on a fixed schedule,
# latency counted from each message's scheduled time. Then it stops the server with SIGTERM
# and cleans up. It prints the server's CPU-seconds (utime+stime from /proc/PID/stat) and the
# mean group commit size (chorus_chat_commit_* from /metrics) over
# each run and a summary table. chat_load checks correctness (no errors, gap-free sequence
# numbers per conversation, every message:new delivered once and in sequence order, history ==
# acks); any failure makes this script exit non-zero.
#
# With SQLite among the backends it first runs examples/chat_store_load.rs (chat crate): the
# chat service alone in one process, 200 conversations x 2 senders, no network (STORE= to skip),
# which shows what the store and group commit take apart from the transport.
#
# Usage: bench/chat.sh                       (DURATION=20 WINDOW=1, about 2 minutes)
#        RATE=1000 SCENARIOS=many-senders BACKENDS=sqlite bench/chat.sh   (the issue-10 goals)
#        RATE=1000 SCENARIOS= bench/chat.sh   (only the fixed-rate run)
#        DURATION=10 WINDOW=4 bench/chat.sh
#        BACKENDS=sqlite bench/chat.sh        (sqlite, postgres or "sqlite postgres")
# Environment: CHORUS_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),
#              CARGO_TARGET_DIR.
# Server settings used (benchmark only, nothing else is tuned): see bench/chat-server.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
WINDOW="${WINDOW:-1}"
BACKENDS="${BACKENDS:-sqlite postgres}"
SCENARIOS="${SCENARIOS-one-conversation many-conversations many-senders}"
RATE="${RATE:-}"
STORE="${STORE-1}"
PG_URL="${CHORUS_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
CHAT_SECRET="chat-bench-secret-$(date +%s)-0123456789abcdef"
SECRET=$CHAT_SECRET
# shellcheck source=bench/chat-server.sh
. bench/chat-server.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"

cargo build --release -p chorus -p chorus-chat --bin chorus --example chat_load \
  --example chat_store_load >&2
BIN="$CARGO_TARGET_DIR/release/chorus"
LOAD="$CARGO_TARGET_DIR/release/examples/chat_load"
STORE_LOAD="$CARGO_TARGET_DIR/release/examples/chat_store_load"
TICKS=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chorus-chat-bench.XXXXXX")
SERVER_PID=""
SCHEMA=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
  if [ -n "$SCHEMA" ]; then
    psql "$PG_URL" -qAtc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    SCHEMA=""
  fi
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return; fi
  done
  echo "no free port" >&2; return 1
}

start_server() { # $1 = backend; sets SERVER_PID, ADDR, SCHEMA
  local backend=$1 url="" dir="$WORK/$backend"
  mkdir -p "$dir"
  if [ "$backend" = postgres ]; then
    SCHEMA="chorus_chat_bench_$$_$(date +%s)"
    psql "$PG_URL" -qAtc "CREATE SCHEMA $SCHEMA" >/dev/null
    url="$PG_URL?options=-csearch_path%3D$SCHEMA"
    [[ "$PG_URL" == *\?* ]] && url="$PG_URL&options=-csearch_path%3D$SCHEMA"
  fi
  ADDR="127.0.0.1:$(free_port)"
  chat_serve "$BIN" "$ADDR" "$dir" "$WORK/$backend.log" "$url"
  SERVER_PID=$CHAT_SERVER_PID
  for _ in $(seq 100); do
    curl -sf "http://$ADDR/ready" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server ($backend) did not become ready; log:" >&2
  cat "$WORK/$backend.log" >&2
  return 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ); duration ${DURATION}s per run, window $WINDOW${RATE:+, fixed-rate run at $RATE msg/s}"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average: other work on the machine skews every figure)"
# The floor under a durable commit: 4 KiB write + fdatasync latencies on the file system that
# holds the SQLite data directory (bench/fsync-latency.py), 5 s before the runs.
echo "disk:    $(df -T "$WORK" | awk 'NR==2{print $1" ("$2")"}'), $(python3 bench/fsync-latency.py 5 "$WORK")"
if [[ " $BACKENDS " == *" postgres "* ]]; then
  echo "postgres: $(psql "$PG_URL" -qAtc 'show server_version'), synchronous_commit=$(psql "$PG_URL" -qAtc 'show synchronous_commit'), fsync=$(psql "$PG_URL" -qAtc 'show fsync')"
fi

SUMMARY=()
FAILED=0
if [[ " $BACKENDS " == *" sqlite "* ]] && [ -n "$STORE" ]; then
  # The chat service alone, in one process, without the network: what SQLite and the group
  # commit can take, against which the whole-server figures below show the transport's cost.
  echo
  echo "=== sqlite / store-only (in-process ChatService, 200 conversations x 2 senders)"
  set +e
  "$STORE_LOAD" --conversations 200 --senders 2 --seconds "$DURATION" --dir "$WORK/store" \
    | tee "$WORK/out.txt"
  status=${PIPESTATUS[0]}
  set -e
  line=$(grep '^RESULT ' "$WORK/out.txt" || true)
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  if [ "$status" -ne 0 ] || [ -z "$line" ]; then
    FAILED=1
    SUMMARY+=("$(printf '%-9s %-19s %s' sqlite store-only "FAILED (exit $status)")")
  else
    SUMMARY+=("$(printf '%-9s %-19s %9s %10s %9s %9s %9s %7s %7s %s' sqlite store-only \
      "$(get acked)" "$(get msgs_per_s)" "$(get p50_ms)" "$(get p99_ms)" "$(get max_ms)" \
      "$(get cpu_s)" "$(get cpu_us_per_msg)" "groups=$(get groups)")")
  fi
fi
for backend in $BACKENDS; do
  start_server "$backend"
  runs=$SCENARIOS
  [ -n "$RATE" ] && runs="$runs rate-$RATE"
  for scenario in $runs; do
    echo
    echo "=== $backend / $scenario"
    if [[ "$scenario" == rate-* ]]; then
      args=(many-conversations --rate "$RATE")
    else
      args=("$scenario" --window "$WINDOW")
    fi
    before=$(cpu_ticks "$SERVER_PID")
    read -r groups_before messages_before < <(commits "$ADDR")
    set +e
    "$LOAD" "$ADDR" "$SECRET" "${args[@]}" --duration "$DURATION" --strict-order \
      | tee "$WORK/out.txt"
    status=${PIPESTATUS[0]}
    set -e
    after=$(cpu_ticks "$SERVER_PID")
    read -r groups_after messages_after < <(commits "$ADDR")
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}')
    group=$(awk -v g=$((groups_after - groups_before)) -v m=$((messages_after - messages_before)) \
      'BEGIN{ if (g > 0) printf "%.1f", m / g; else print "-" }')
    echo "server CPU: ${cpu} s (utime+stime, setup and read-back included); load now $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "group commits: $((groups_after - groups_before)) for $((messages_after - messages_before)) messages (mean group $group)"
    line=$(grep '^RESULT ' "$WORK/out.txt" || true)
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    if [ "$status" -ne 0 ] || [ -z "$line" ]; then
      FAILED=1
      SUMMARY+=("$(printf '%-9s %-19s %s' "$backend" "$scenario" "FAILED (exit $status)")")
    else
      acked=$(get acked)
      per_msg=$(awk -v c="$cpu" -v n="$acked" 'BEGIN{ if (n>0) printf "%.0f", c*1e6/n; else print "-" }')
      SUMMARY+=("$(printf '%-9s %-19s %9s %10s %9s %9s %9s %7s %7s %s' "$backend" "$scenario" \
        "$acked" "$(get msgs_per_s)" "$(get p50_ms)" "$(get p99_ms)" "$(get max_ms)" "$cpu" \
        "$per_msg" "$(get ok) group=$group")")
    fi
  done
  kill -TERM "$SERVER_PID"
  if ! wait "$SERVER_PID"; then
    echo "server ($backend) did not exit cleanly on SIGTERM; log:" >&2
    tail -20 "$WORK/$backend.log" >&2
    FAILED=1
  fi
  SERVER_PID=""
  if grep -qiE 'error|panic' "$WORK/$backend.log"; then
    echo "server ($backend) log has errors:" >&2
    grep -iE 'error|panic' "$WORK/$backend.log" | head -5 >&2
  fi
  cleanup
done

echo
echo "summary (${DURATION}s per run, window $WINDOW; latency = message:send → ack, durable commit;"
echo "         rate-N runs: fixed schedule, latency from each message's scheduled time)"
printf '%-9s %-19s %9s %10s %9s %9s %9s %7s %7s %s\n' backend scenario acked msgs/s \
  p50_ms p99_ms max_ms cpu_s cpu_us/msg ok
for l in "${SUMMARY[@]}"; do echo "$l"; done
if [ "$FAILED" -ne 0 ]; then
  echo "CORRECTNESS FAILURE: see above" >&2
  exit 1
fi
