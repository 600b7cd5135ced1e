#!/usr/bin/env bash
# scripts/cluster.sh: the topology of docker-compose.yml as local processes, for development and
# tests on one machine. It starts N `chorus serve` nodes on one address with distinct ports, all
# sharing the local Redis (cluster coordination) and PostgreSQL (chat), and a Prometheus (Debian's
# `prometheus` package) scraping every node. It prints where everything listens, waits until every
# node answers /ready, and stays in the foreground. Ctrl-C or SIGTERM stops what it started (and
# only that): the nodes (SIGTERM, then SIGKILL after STOP_TIMEOUT), Prometheus, and the run's
# temporary directory, Redis keys and chat schema when it chose them itself. A node that dies
# (say, killed on purpose to test fail-over) is reported and the rest keep running.
#
# Usage: scripts/cluster.sh                 # 2 nodes
#        NODES=3 BASE_PORT=19000 scripts/cluster.sh
#
# Ports: node i (1..NODES) listens on BASE_PORT+10*(i-1) for HTTP, +1 for TURN (UDP and TCP), +2
# for SFU ICE-TCP, and +2 .. +1+SFU_WORKERS for its SFU media workers' UDP ports (one each); its
# TURN relay ports are RELAY_PORT_BASE+100*(i-1) .. +99.
#
# Environment (all optional):
#   NODES=2                  number of chorus nodes (1-50)
#   BASE_PORT=18080          first port, see above
#   PROMETHEUS_PORT          Prometheus's web port (default BASE_PORT+9)
#   RELAY_PORT_BASE=50000    first TURN relay port, see above
#   SFU_WORKERS=2            SFU media workers per node (sfu.workers, 1-7: their UDP ports fit in
#                            the node's ten)
#   HOST=127.0.0.1           IPv4 address the nodes and Prometheus bind to and advertise (SFU
#                            candidates, TURN relayed addresses); DEV=1 needs a loopback address
#   PREFIX                   Redis key prefix the nodes share (cluster.key_prefix). Default:
#                            chorus-cluster-<random>: for this run only, its keys deleted at exit
#   REDIS_URL=redis://127.0.0.1:6379
#   POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
#   PG_SCHEMA                schema of the chat tables. Default: chorus_cluster_<random>, created
#                            for this run and dropped at exit; a given one is created if missing
#                            and kept
#   CHORUS_BIN               the chorus binary. Default: `cargo build --release` and
#                            target/release/chorus
#   PROMETHEUS_BIN=prometheus  empty to run without Prometheus
#   SCRAPE_INTERVAL=5s       Prometheus scrape interval
#   DEV=1                    dev mode: POST /api/v1/dev/token, the demo page signs in by itself,
#                            rooms are created on join. DEV=0 runs the nodes as in production
#   CHORUS_AUTH_SECRET       JWT secret shared by the nodes (default: generated for this run and
#                            written to RUN_DIR/auth-secret; `chorus token` needs it with DEV=0)
#   LOG_LEVEL=info           the nodes' log filter (log.level)
#   READY_TIMEOUT=60         seconds to wait for every node's /ready
#   STOP_TIMEOUT=20          seconds a process gets after SIGTERM before SIGKILL
#   RUN_DIR                  logs, configs, data and Prometheus's database. Default: a new
#                            temporary directory, removed when a signal stops the cluster unless
#                            KEEP_RUN_DIR=1 (kept when it fails to start)
# Every other CHORUS_<SECTION>_<KEY> variable reaches every node, e.g. CHORUS_CALLS_RING_TIMEOUT=10s.
#
# Needs redis-cli and psql (to check the services, create the schema and clean up), curl, and
# for Prometheus `apt-get install prometheus`. No load balancer is started: clients connect to any
# node directly (docker-compose.yml has the HAProxy setup).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

NODES="${NODES:-2}"
BASE_PORT="${BASE_PORT:-18080}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-$((BASE_PORT + 9))}"
RELAY_PORT_BASE="${RELAY_PORT_BASE:-50000}"
SFU_WORKERS="${SFU_WORKERS:-2}"
HOST="${HOST:-127.0.0.1}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
PROMETHEUS_BIN="${PROMETHEUS_BIN-prometheus}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-5s}"
DEV="${DEV:-1}"
LOG_LEVEL="${LOG_LEVEL:-info}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"
KEEP_RUN_DIR="${KEEP_RUN_DIR:-0}"

die() {
  echo "cluster.sh: $*" >&2
  exit 2
}

# --- check the settings before starting anything -------------------------------------------------
[[ "$NODES" =~ ^[0-9]+$ ]] && ((NODES >= 1 && NODES <= 50)) || die "NODES must be 1-50, not '$NODES'"
for var in BASE_PORT PROMETHEUS_PORT RELAY_PORT_BASE READY_TIMEOUT STOP_TIMEOUT; do
  [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a number, not '${!var}'"
done
[[ "$SFU_WORKERS" =~ ^[1-7]$ ]] || die "SFU_WORKERS must be 1-7, not '$SFU_WORKERS'"
((BASE_PORT >= 1024 && BASE_PORT + 10 * NODES <= 65535)) || die "BASE_PORT=$BASE_PORT leaves no room for $NODES nodes"
((RELAY_PORT_BASE >= 1024 && RELAY_PORT_BASE + 100 * NODES <= 65536)) || die "RELAY_PORT_BASE=$RELAY_PORT_BASE leaves no room for $NODES nodes"
case "$DEV" in
  1)
    [[ "$HOST" == 127.* ]] || die "DEV=1 binds to loopback only; use HOST=127.0.0.1 or DEV=0"
    ;;
  0) ;;
  *) die "DEV must be 0 or 1" ;;
esac
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
RUN_ID="$(random_hex 4)"
if [[ -n "${PREFIX:-}" ]]; then
  OWN_PREFIX=0
else
  PREFIX="chorus-cluster-$RUN_ID:"
  OWN_PREFIX=1
fi
if [[ -n "${PG_SCHEMA:-}" ]]; then
  OWN_SCHEMA=0
  [[ "$PG_SCHEMA" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "PG_SCHEMA must be a plain lower-case identifier"
else
  PG_SCHEMA="chorus_cluster_$RUN_ID"
  OWN_SCHEMA=1
fi
if [[ -n "${CHORUS_AUTH_SECRET:-}" ]]; then
  AUTH_SECRET="$CHORUS_AUTH_SECRET"
  # Dev mode would quietly replace a shorter one with a secret of its own per node, and a token
  # from one node would then fail on the others.
  ((${#AUTH_SECRET} >= 32)) || die "CHORUS_AUTH_SECRET must be at least 32 bytes"
else
  AUTH_SECRET="$(random_hex 32)"
fi
for tool in curl redis-cli psql; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install curl redis-tools postgresql-client)"
done
if [[ -n "$PROMETHEUS_BIN" ]]; then
  command -v "$PROMETHEUS_BIN" >/dev/null ||
    die "$PROMETHEUS_BIN not found: apt-get install prometheus, or PROMETHEUS_BIN= to run without it"
fi
redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || die "Redis does not answer at $REDIS_URL"
psql "$POSTGRES_URL" -Atqc 'select 1' >/dev/null 2>&1 || die "PostgreSQL does not answer at $POSTGRES_URL"

if [[ -z "${CHORUS_BIN:-}" ]]; then
  echo "building target/release/chorus (set CHORUS_BIN to use another binary)"
  (cd "$ROOT" && cargo build --release --quiet --bin chorus)
  CHORUS_BIN="$ROOT/target/release/chorus"
fi
[[ -x "$CHORUS_BIN" ]] || die "CHORUS_BIN=$CHORUS_BIN is not an executable"

# --- what this run owns, and how to give it back ------------------------------------------------
if [[ -n "${RUN_DIR:-}" ]]; then
  mkdir -p "$RUN_DIR"
  OWN_RUN_DIR=0
else
  RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/chorus-cluster.XXXXXX")"
  OWN_RUN_DIR=1
fi
declare -A NAME_OF=() # pid -> node-1 | prometheus, for the processes still running
SCHEMA_CREATED=0

stop_all() {
  local status=$?
  # A second Ctrl-C must not cut the clean-up short; STOP_TIMEOUT bounds it.
  trap - EXIT
  trap '' INT TERM
  local pid
  for pid in "${!NAME_OF[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for pid in "${!NAME_OF[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "${NAME_OF[$pid]} (pid $pid) did not stop within ${STOP_TIMEOUT}s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if ((OWN_PREFIX)); then
    # Only this run's prefix, which nobody else uses.
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null |
      xargs -r -n 100 -d '\n' redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 ||
      echo "could not delete Redis keys ${PREFIX}*" >&2
  fi
  if ((OWN_SCHEMA && SCHEMA_CREATED)); then
    psql "$POSTGRES_URL" -qc "drop schema if exists $PG_SCHEMA cascade" >/dev/null 2>&1 ||
      echo "could not drop schema $PG_SCHEMA" >&2
  fi
  # Logs outlive a failed start; a stop by signal removes them unless KEEP_RUN_DIR=1.
  if ((OWN_RUN_DIR)) && [[ "$KEEP_RUN_DIR" != 1 ]] && ((status == 130 || status == 143)); then
    rm -rf "$RUN_DIR"
  else
    echo "logs kept in $RUN_DIR"
  fi
  echo "cluster stopped"
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$POSTGRES_URL" -v ON_ERROR_STOP=1 -qc "create schema if not exists $PG_SCHEMA" >/dev/null
SCHEMA_CREATED=1
case "$POSTGRES_URL" in *\?*) sep='&' ;; *) sep='?' ;; esac
CHAT_URL="${POSTGRES_URL}${sep}options=-csearch_path%3D${PG_SCHEMA}"

(umask 077 && printf '%s\n' "$AUTH_SECRET" >"$RUN_DIR/auth-secret")
TURN_SECRET="$(random_hex 32)"

# --- nodes ----------------------------------------------------------------------------------------
http_port() { echo $((BASE_PORT + 10 * ($1 - 1))); }
turn_port() { echo $((BASE_PORT + 10 * ($1 - 1) + 1)); }
sfu_port() { echo $((BASE_PORT + 10 * ($1 - 1) + 2)); }

start_node() {
  local i=$1 http sfu turn relay
  http=$(http_port "$i")
  sfu=$(sfu_port "$i")
  turn=$(turn_port "$i")
  relay=$((RELAY_PORT_BASE + 100 * (i - 1)))
  local args=(serve --listen "$HOST:$http" --data-dir "$RUN_DIR/node-$i" --log-format pretty
    --log-level "$LOG_LEVEL")
  ((DEV)) && args+=(--dev)
  local set
  for set in \
    "cluster.redis_url=$REDIS_URL" \
    "cluster.node_id=node-$i" \
    "cluster.key_prefix=$PREFIX" \
    "cluster.advertise_url=http://$HOST:$http" \
    "chat.database_url=$CHAT_URL" \
    "sfu.udp_listen=$HOST:$sfu" \
    "sfu.workers=$SFU_WORKERS" \
    "sfu.tcp_listen=$HOST:$sfu" \
    "sfu.public_ips=$HOST" \
    "turn.udp_listen=$HOST:$turn" \
    "turn.tcp_listen=$HOST:$turn" \
    "turn.relay_ip=$HOST" \
    "turn.relay_port_min=$relay" \
    "turn.relay_port_max=$((relay + 99))" \
    "ice.turn_urls=turn:$HOST:$turn?transport=udp,turn:$HOST:$turn?transport=tcp"; do
    args+=(--set "$set")
  done
  # Clients and their TURN peers are on this machine too; production never allows loopback peers.
  [[ "$HOST" == 127.* ]] && args+=(--set "turn.allowed_peer_ranges=127.0.0.0/8")
  mkdir -p "$RUN_DIR/node-$i"
  # Secrets go through the environment, not the command line other users can read in ps.
  CHORUS_AUTH_SECRET="$AUTH_SECRET" CHORUS_ICE_TURN_SECRET="$TURN_SECRET" NO_COLOR=1 \
    "$CHORUS_BIN" "${args[@]}" >"$RUN_DIR/node-$i.log" 2>&1 &
  NAME_OF[$!]="node-$i"
  PID_OF_NODE[$i]=$!
}

declare -a PID_OF_NODE=()
for ((i = 1; i <= NODES; i++)); do start_node "$i"; done

# --- Prometheus -----------------------------------------------------------------------------------
if [[ -n "$PROMETHEUS_BIN" ]]; then
  {
    echo "# Written by scripts/cluster.sh; the same job as deploy/prometheus/prometheus.yml."
    echo "global:"
    echo "  scrape_interval: $SCRAPE_INTERVAL"
    echo "scrape_configs:"
    echo "  - job_name: chorus"
    echo "    metrics_path: /metrics"
    echo "    static_configs:"
    for ((i = 1; i <= NODES; i++)); do
      echo "      - targets: [\"$HOST:$(http_port "$i")\"]"
      echo "        labels: {node: node-$i}"
    done
  } >"$RUN_DIR/prometheus.yml"
  "$PROMETHEUS_BIN" --config.file="$RUN_DIR/prometheus.yml" \
    --storage.tsdb.path="$RUN_DIR/prometheus-data" \
    --web.listen-address="$HOST:$PROMETHEUS_PORT" \
    --log.level=warn >"$RUN_DIR/prometheus.log" 2>&1 &
  NAME_OF[$!]=prometheus
  PROMETHEUS_PID=$!
fi

# --- wait until everything answers ---------------------------------------------------------------
started_fine() { # name pid log: fails with the log's tail when the process is gone
  kill -0 "$2" 2>/dev/null && return 0
  echo "$1 exited during start; the end of $3:" >&2
  tail -n 20 "$3" >&2
  return 1
}
deadline=$((SECONDS + READY_TIMEOUT))
for ((i = 1; i <= NODES; i++)); do
  url="http://$HOST:$(http_port "$i")/ready"
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    started_fine "node-$i" "${PID_OF_NODE[$i]}" "$RUN_DIR/node-$i.log" || exit 1
    ((SECONDS < deadline)) || { echo "node-$i not ready at $url within ${READY_TIMEOUT}s" >&2; exit 1; }
    sleep 0.2
  done
done
if [[ -n "$PROMETHEUS_BIN" ]]; then
  until curl -fsS -o /dev/null --max-time 2 "http://$HOST:$PROMETHEUS_PORT/-/ready" 2>/dev/null; do
    started_fine prometheus "$PROMETHEUS_PID" "$RUN_DIR/prometheus.log" || exit 1
    ((SECONDS < deadline)) || { echo "Prometheus not ready within ${READY_TIMEOUT}s" >&2; exit 1; }
    sleep 0.2
  done
fi

echo "Chorus cluster: $NODES nodes, Redis $REDIS_URL prefix $PREFIX, chat schema $PG_SCHEMA"
for ((i = 1; i <= NODES; i++)); do
  printf '  node-%-3s http://%s:%s  sfu %s-%s udp, %s tcp  turn %s udp+tcp  pid %s  log %s\n' \
    "$i" "$HOST" "$(http_port "$i")" "$(sfu_port "$i")" "$(($(sfu_port "$i") + SFU_WORKERS - 1))" \
    "$(sfu_port "$i")" "$(turn_port "$i")" \
    "${PID_OF_NODE[$i]}" "$RUN_DIR/node-$i.log"
done
if [[ -n "$PROMETHEUS_BIN" ]]; then
  printf '  prometheus  http://%s:%s  pid %s  (targets: /targets)\n' "$HOST" "$PROMETHEUS_PORT" "$PROMETHEUS_PID"
fi
if ((DEV)); then
  echo "  tokens: curl -s -X POST http://$HOST:$(http_port 1)/api/v1/dev/token -H 'content-type: application/json' -d '{\"name\":\"Alice\"}'"
  echo "          (valid on every node; the demo page at each node's URL signs in by itself)"
else
  echo "  tokens: CHORUS_AUTH_SECRET=\$(cat $RUN_DIR/auth-secret) $CHORUS_BIN token --user alice --name Alice"
fi
echo "cluster ready; Ctrl-C stops it"

# --- foreground until a signal --------------------------------------------------------------------
while ((${#NAME_OF[@]} > 0)); do
  gone=""
  code=0
  wait -n -p gone "${!NAME_OF[@]}" || code=$?
  [[ -n "$gone" ]] || continue
  echo "${NAME_OF[$gone]} (pid $gone) exited with status $code; the others keep running" >&2
  unset "NAME_OF[$gone]"
done
echo "every process has exited" >&2
exit 1
