#!/usr/bin/env bash
# Relayed packets per server CPU-second: Chorus TURN vs coturn, same turnutils_uclient load.
#
# Usage: bench/turn-vs-coturn.sh            (from the repository root)
# Env:   CLIENTS=100 MESSAGES=2000 LENGTH=1000 INTERVAL=1 TRANSPORTS="udp tcp"
#        CHORUS_PORT=34478 COTURN_PORT=35478 PEER_PORT=34480 HTTP_PORT=34479
#        WORKERS=0 (0 = one per core) RELAY_IO=auto (auto | io_uring | epoll)
#        REPEAT=3 (pairs of runs per transport; the ratio printed is the median over pairs)
# Needs: coturn (turnserver, turnutils_uclient, turnutils_peer) from Debian's `coturn` package.
#
# Chorus runs as the product does, `chorus turn` (release build), configured with --set.
# For each server and transport, the script starts the server fresh, runs
#   turnutils_uclient -c -n MESSAGES -m CLIENTS -l LENGTH -z INTERVAL [-t]
# against it with turnutils_peer echoing, reads the server's user+system CPU time from
# /proc/PID/stat before and after, and prints messages sent/received, loss, CPU-seconds and
# relayed packets per CPU-second (sent + received: each echoed message crosses the relay twice).
# Both servers relay on 127.0.0.1, allow loopback peers, use the static user u:p, realm `test`.
set -euo pipefail

CLIENTS=${CLIENTS:-100}
MESSAGES=${MESSAGES:-2000}
LENGTH=${LENGTH:-1000}
INTERVAL=${INTERVAL:-1}
TRANSPORTS=${TRANSPORTS:-"udp tcp"}
CHORUS_PORT=${CHORUS_PORT:-34478}
COTURN_PORT=${COTURN_PORT:-35478}
PEER_PORT=${PEER_PORT:-34480}
WORKERS=${WORKERS:-0}
RELAY_IO=${RELAY_IO:-auto}
REPEAT=${REPEAT:-3}
HTTP_PORT=${HTTP_PORT:-34479}

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in turnserver turnutils_uclient turnutils_peer; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y coturn" >&2; exit 1; }
done

echo "building chorus (release)..." >&2
cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin chorus
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
chorus_bin="$target_dir/release/chorus"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >"$work/peer.log" 2>&1 &
pids+=($!)

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server() { # name port -> pid on stdout
  local name=$1 port=$2
  case $name in
    chorus)
      "$chorus_bin" turn --set "server.listen=127.0.0.1:$HTTP_PORT" \
        --set "turn.udp_listen=127.0.0.1:$port" --set "turn.tcp_listen=127.0.0.1:$port" \
        --set turn.relay_ip=127.0.0.1 --set turn.static_users=u:p --set turn.realm=test \
        --set turn.allowed_peer_ranges=127.0.0.0/8 --set turn.max_allocations_per_user=100000 \
        --set turn.max_allocation_bytes_per_second=0 --set "turn.workers=$WORKERS" \
        --set "turn.relay_io=$RELAY_IO" --set log.level=warn >"$work/$name.log" 2>&1 &
      ;;
    coturn)
      turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --allow-loopback-peers \
        --lt-cred-mech --user=u:p --realm=test --fingerprint --no-tls --no-dtls --no-cli \
        -p "$port" --min-port=49152 --max-port=65535 --log-file="$work/coturn-file.log" \
        --simple-log --pidfile="$work/coturn.pid" >"$work/$name.log" 2>&1 &
      ;;
  esac
  echo $!
}

run() { # name port transport
  local name=$1 port=$2 transport=$3 flags=()
  [[ $transport == tcp ]] && flags=(-t)
  local pid
  pid=$(start_server "$name" "$port")
  pids+=("$pid")
  sleep 1.5
  local before after
  before=$(cpu_ticks "$pid")
  turnutils_uclient "${flags[@]}" -u u -w p -e 127.0.0.1 -r "$PEER_PORT" -p "$port" -c \
    -n "$MESSAGES" -m "$CLIENTS" -l "$LENGTH" -z "$INTERVAL" 127.0.0.1 >"$work/uclient-$name-$transport.log" 2>&1 || true
  after=$(cpu_ticks "$pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local totals sent recv
  totals=$(grep 'tot_send_msgs=' "$work/uclient-$name-$transport.log" | grep -v 'msz=' | tail -1)
  sent=$(sed -E 's/.*tot_send_msgs=([0-9]+).*/\1/' <<<"$totals")
  recv=$(sed -E 's/.*tot_recv_msgs=([0-9]+).*/\1/' <<<"$totals")
  sent=${sent:-0}
  recv=${recv:-0}
  python3 - "$name" "$transport" "$sent" "$recv" "$before" "$after" "$clk" <<'PY'
import sys
name, transport, sent, recv, before, after, clk = sys.argv[1:]
sent, recv = int(sent), int(recv)
cpu = (int(after) - int(before)) / int(clk)
loss = 100.0 * (sent - recv) / sent if sent else 100.0
rate = (sent + recv) / cpu if cpu > 0 else float("inf")
print(f"{name:7} {transport:4} sent={sent:8d} received={recv:8d} loss={loss:6.2f}% "
      f"cpu_s={cpu:7.2f} relayed_pkts_per_cpu_s={rate:10.0f}")
PY
}

echo "load: turnutils_uclient -c -n $MESSAGES -m $CLIENTS -l $LENGTH -z $INTERVAL (+ -t for tcp)," \
  "$REPEAT pair(s) per transport"
results=()
for transport in $TRANSPORTS; do
  for pair in $(seq 1 "$REPEAT"); do
    line_c=$(run chorus "$CHORUS_PORT" "$transport"); echo "$line_c pair=$pair"
    line_t=$(run coturn "$COTURN_PORT" "$transport"); echo "$line_t pair=$pair"
    results+=("$line_c pair=$pair" "$line_t pair=$pair")
  done
done
# Each pair runs both servers back to back, so a pair's ratio sees one machine state; the
# median over pairs is the figure to quote, min and max show the spread.
printf '%s\n' "${results[@]}" | python3 -c '
import sys, re, statistics
rows = {}
for line in sys.stdin:
    rate = re.search(r"relayed_pkts_per_cpu_s=\s*(\S+)", line)
    pair = re.search(r"pair=(\d+)", line)
    if not (rate and pair): continue
    name, transport = line.split()[:2]
    rows[(name, transport, pair.group(1))] = float(rate.group(1))
for t in sorted({t for (_, t, _) in rows}):
    ratios = [rows[("chorus", t, p)] / rows[("coturn", t, p)]
              for (n, tt, p) in rows
              if n == "chorus" and tt == t and rows.get(("coturn", t, p))]
    if ratios:
        print(f"ratio {t}: chorus/coturn relayed packets per CPU-second = "
              f"{statistics.median(ratios):.2f}x median of {len(ratios)} pair(s) "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
'
