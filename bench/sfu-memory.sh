#!/usr/bin/env bash
# Chorus's SFU memory per client, A/B over `sfu.nack_history` (the retransmission history each
# subscribed video stream keeps), with the same chorus-load scenarios as bench/sfu-vs-janus.sh.
#
# Usage: bench/sfu-memory.sh
# Env:   SCENARIOS="a50 b8" (a50: 1 publisher, VP8 1.5 Mbit/s + Opus -> 50 subscribers; b8: an
#        8-person meeting; c300: audio only, 10 publishers -> 300 subscribers)
#        HISTORIES="1s 3s" (values of sfu.nack_history; 3s was str0m's default)
#        REPEAT=2 (rounds; each round runs every history once, in order)
#        DURATION=15 SETTLE=3 RAMP=25 PORT=18080 MEDIA_PORT=17882
#        MEDIA_IP=<this host's address on its default route>
#
# Every run starts a fresh release `chorus serve` (so one run's heap does not carry into the
# next), runs chorus-load against it with --server-pid, and prints the server's RSS growth per
# client over the load (chorus-load samples VmRSS before any client and once all are loaded),
# CPU-µs per forwarded packet, forwarded packets and loss. Then it stops that server.
set -euo pipefail

SCENARIOS=${SCENARIOS:-"a50 b8"}
HISTORIES=${HISTORIES:-"1s 3s"}
REPEAT=${REPEAT:-2}
DURATION=${DURATION:-15}
SETTLE=${SETTLE:-3}
RAMP=${RAMP:-25}
PORT=${PORT:-18080}
MEDIA_PORT=${MEDIA_PORT:-17882}
SECRET=bench-secret-bench-secret-bench-secret
MEDIA_IP=${MEDIA_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
[ -n "$MEDIA_IP" ] || { echo "no non-loopback IPv4 address: set MEDIA_IP" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/sfu-scenarios.sh
source "$root/bench/sfu-scenarios.sh"
echo "building chorus and chorus-load (release)..." >&2
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p chorus --bin chorus
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p chorus-loadtest
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
for scenario in $SCENARIOS; do
  args=$(scenario_args "$scenario")
  for i in $(seq 1 "$REPEAT"); do
    for history in $HISTORIES; do
      rm -rf "$work/data" && mkdir -p "$work/data"
      chorus_bench_flags "$PORT" "$work/data" "$MEDIA_IP" "$MEDIA_PORT"
      "$target_dir/release/chorus" serve "${CHORUS_FLAGS[@]}" --set log.level=error \
        --set "sfu.nack_history=$history" >"$work/chorus.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null || { echo "chorus did not start:" >&2; cat "$work/chorus.log" >&2; exit 1; }
      load=$(cut -d' ' -f1 /proc/loadavg)
      # shellcheck disable=SC2086
      "$target_dir/release/chorus-load" --url "http://127.0.0.1:$PORT" --room "mem-$scenario-$i" \
        --token-secret "$SECRET" --server-pid "$pid" $args --duration "$DURATION" --settle "$SETTLE" \
        --ramp-per-second "$RAMP" --bind-ip "$MEDIA_IP" --json >"$work/out.json" 2>"$work/load.err" ||
        { echo "chorus-load failed:" >&2; tail -5 "$work/load.err" >&2; }
      python3 - "$work/out.json" "$scenario" "$history" "$i" "$load" <<'PY'
import json, sys
path, scenario, history, i, load = sys.argv[1:]
try:
    s = json.load(open(path))
except Exception as e:
    print(f"{scenario:5} nack_history={history:4} #{i}: no summary ({e})"); sys.exit(0)
server = s.get("server") or {}
cpu = s.get("serverCpuUsPerPacket")
print(f"{scenario:5} nack_history={history:4} #{i}: RSS {s.get('serverRssKbPerClient') or 0:8.1f} kB/client "
      f"({server.get('rssBeforeKb')} -> {server.get('rssLoadedKb')} kB), "
      f"{cpu if cpu is not None else float('nan'):.2f} CPU-us/pkt, {s['windowPackets']} fwd, "
      f"lost {s['lost']}, failed {s['failed']}, load {load}")
PY
      kill "$pid"
      wait "$pid" 2>/dev/null || true
      pid=
      sleep 2
    done
  done
done
