#!/usr/bin/env bash
# Cluster benchmark (issue 11, item 6): offer relay latency between two users on the same node
# and on different nodes, with 1,000 and then 10,000 connected sessions spread over two nodes,
# and cross-node offers per second through Redis.
#
# It builds the release binary and examples/cluster_load.rs, starts two `chorus serve` nodes on
# 127.0.0.1 sharing the Redis at REDIS (a key prefix of their own, deleted at exit), raises the
# open-file limit, and runs cluster_load against them (see its module docs for the method):
#   - sessions: users u0, u1, ... with one raw WebSocket each, alternating between the nodes,
#     idle apart from the measured pairs and checked alive at every step;
#   - pairs set up with call:initiate / call:accept and sorted by where their call is owned
#     (read from Redis): same-node (no Redis on the path), cross-node (one Redis hop), and
#     same-node with the owner on the other node (two hops; reported, not part of the goal);
#   - at each session count: SAMPLES offers per kind at RATE per kind, socket to socket
#     (`offer` written by the caller -> `offer` read by the callee), then a throughput run of
#     THROUGHPUT seconds with WINDOW cross-node offers in flight per pair: delivered offers/s
#     and the nodes' chorus_cluster_relayed_total{direction="in"} per second.
# It prints the CPU-seconds of each node, of Redis and of the load client over the whole run,
# the figures, and the goal: cross-node p99 at most 5 ms above same-node p99 at the largest
# session count (MET / NOT MET). The exit status is non-zero only when something was lost
# (an offer that never arrived, a session that closed) or could not run; a missed goal is
# reported, not an error.
#
# Usage: bench/cluster.sh                              (about 3 minutes after the build)
#        SESSIONS=1000,5000,10000 SAMPLES=5000 bench/cluster.sh
# Environment: SESSIONS (default 1000,10000), SAMPLES (2000), RATE (200 per kind per second),
#              SAME_PAIRS (100 per node), CROSS_PAIRS (200), THROUGHPUT (10 s; 0 skips it),
#              WINDOW (4), CLIENT_THREADS (1), REDIS (127.0.0.1:6379), CARGO_TARGET_DIR;
#              CHORUS_BIN and LOAD_BIN (both: use these binaries, build nothing).
# Node settings (benchmark only): per-connection event limit 1e6/s, 20,000 sessions per IP
# (every client is 127.0.0.1), log level warn; everything else, heartbeats included, is the
# default.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS="${SESSIONS:-1000,10000}"
SAMPLES="${SAMPLES:-2000}"
RATE="${RATE:-200}"
SAME_PAIRS="${SAME_PAIRS:-100}"
CROSS_PAIRS="${CROSS_PAIRS:-200}"
THROUGHPUT="${THROUGHPUT:-10}"
WINDOW="${WINDOW:-4}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
REDIS="${REDIS:-127.0.0.1:6379}"
SECRET="cluster-bench-secret-$(date +%s)-0123456789abcdef"
PREFIX="chorus-bench:cluster:$$:$RANDOM:"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"

REDIS_HOST="${REDIS%:*}"
REDIS_PORT="${REDIS##*:}"
redis() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
redis ping >/dev/null || { echo "no Redis at $REDIS" >&2; exit 2; }

# 10,000 client sockets in the load client, 5,000 in each node, plus files and Redis.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then
  echo "open-file limit $(ulimit -n) is too low for 10,000 sessions (raise the hard limit)" >&2
  exit 2
fi

if [ -n "${CHORUS_BIN:-}" ] && [ -n "${LOAD_BIN:-}" ]; then
  BIN="$CHORUS_BIN"
  LOAD="$LOAD_BIN"
else
  nice -n 10 cargo build --release --bin chorus --example cluster_load >&2
  BIN="$CARGO_TARGET_DIR/release/chorus"
  LOAD="$CARGO_TARGET_DIR/release/examples/cluster_load"
fi
TICKS=$(getconf CLK_TCK)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chorus-cluster-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  redis --scan --pattern "${PREFIX}*" | xargs -r -n 1000 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null
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

cpu_ticks() { # utime+stime of PID, in clock ticks (fields 14 and 15 of /proc/PID/stat)
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat")
  awk '{print $12 + $13}' <<<"$rest"
}
seconds() { awk -v a="$1" -v b="$2" -v t="$TICKS" 'BEGIN{printf "%.1f", (a-b)/t}'; }

start_node() { # $1 = node id; appends to PIDS and NODE_ARGS
  local id=$1 addr
  addr="127.0.0.1:$(free_port)"
  mkdir -p "$WORK/$id"
  CHORUS_AUTH_SECRET="$SECRET" \
  CHORUS_CLUSTER_REDIS_URL="redis://$REDIS" \
  CHORUS_CLUSTER_NODE_ID="$id" \
  CHORUS_CLUSTER_KEY_PREFIX="$PREFIX" \
  CHORUS_CLUSTER_ADVERTISE_URL="http://$addr" \
  CHORUS_SFU_UDP_LISTEN=127.0.0.1:0 \
  CHORUS_SFU_TCP_LISTEN=127.0.0.1:0 \
  CHORUS_SFU_PUBLIC_IPS=127.0.0.1 \
  CHORUS_TURN_ENABLED=false \
  CHORUS_LIMITS_EVENTS_PER_SECOND=1000000 \
  CHORUS_LIMITS_EVENT_BURST=1000000 \
  CHORUS_SERVER_MAX_CONNECTIONS_PER_IP=20000 \
  CHORUS_SERVER_MAX_RAW_CONNECTIONS_PER_IP=20000 \
  CHORUS_SERVER_DRAIN_TIMEOUT=2s \
  CHORUS_LOG_LEVEL=warn \
    "$BIN" serve --listen "$addr" --data-dir "$WORK/$id" >"$WORK/$id.log" 2>&1 &
  PIDS+=($!)
  NODE_ARGS+=("$id=$addr")
  for _ in $(seq 200); do
    curl -sf "http://$addr/ready" >/dev/null 2>&1 && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "node $id did not become ready; log:" >&2
  cat "$WORK/$id.log" >&2
  return 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ); redis $(redis info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p') at $REDIS; open-file limit $(ulimit -n)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average: other work on the machine skews every figure)"

NODE_ARGS=()
start_node n1
start_node n2
# Both nodes must see each other before the first call is placed.
for _ in $(seq 100); do
  seen=0
  for a in "${NODE_ARGS[@]}"; do
    n=$(curl -sf "http://${a#*=}/metrics" | awk '$1=="chorus_cluster_nodes"{print $2}')
    [ "${n:-0}" = 2 ] && seen=$((seen + 1))
  done
  [ "$seen" = 2 ] && break
  sleep 0.2
done
[ "$seen" = 2 ] || { echo "the nodes never saw each other" >&2; exit 2; }

REDIS_PID=$(redis info server | sed -n 's/^process_id:\([0-9]*\)\r$/\1/p')
before=()
for pid in "${PIDS[@]}" "$REDIS_PID"; do before+=("$(cpu_ticks "$pid" 2>/dev/null || echo 0)"); done
set +e
"$LOAD" "$SECRET" "${NODE_ARGS[@]}" --prefix "$PREFIX" --redis "$REDIS" \
  --sessions "$SESSIONS" --samples "$SAMPLES" --rate "$RATE" --same-pairs "$SAME_PAIRS" \
  --cross-pairs "$CROSS_PAIRS" --throughput "$THROUGHPUT" --window "$WINDOW" \
  --threads "$CLIENT_THREADS" | tee "$WORK/out.txt"
status=${PIPESTATUS[0]}
set -e
after=()
for pid in "${PIDS[@]}" "$REDIS_PID"; do after+=("$(cpu_ticks "$pid" 2>/dev/null || echo 0)"); done

echo
echo "CPU over the run (s): n1 $(seconds "${after[0]}" "${before[0]}"), n2 $(seconds "${after[1]}" "${before[1]}"), redis $(seconds "${after[2]}" "${before[2]}")"
echo "load now: $(cut -d' ' -f1-3 /proc/loadavg)"
for id in n1 n2; do
  if grep -qiE 'error|panic' "$WORK/$id.log"; then
    echo "node $id log has errors:" >&2
    grep -iE 'error|panic' "$WORK/$id.log" | head -5 >&2
  fi
done

echo
echo "summary (latency = offer written by the caller -> offer read by the callee, ms; redis = one"
echo "         Redis pub/sub message between two client connections at the same time, no chorus)"
printf '%9s %9s %9s %10s %10s %11s %10s %10s %9s %13s\n' sessions same_p50 same_p99 \
  cross_p50 cross_p99 "p99 gap" redis_p50 redis_p99 offers/s relayed_in/s
grep '^RESULT ' "$WORK/out.txt" | while read -r line; do
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  gap=$(awk -v c="$(get cross_p99_ms)" -v s="$(get same_p99_ms)" 'BEGIN{printf "%+.3f", c-s}')
  printf '%9s %9s %9s %10s %10s %11s %10s %10s %9s %13s\n' "$(get sessions)" \
    "$(get same_p50_ms)" "$(get same_p99_ms)" "$(get cross_p50_ms)" "$(get cross_p99_ms)" \
    "$gap" "$(get redis_hop_p50_ms)" "$(get redis_hop_p99_ms)" "$(get offers_per_s)" \
    "$(get relayed_in_per_s)"
done
grep -E '^(goal|load client CPU)' "$WORK/out.txt" || true
exit "$status"
