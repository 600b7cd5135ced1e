#!/usr/bin/env bash
# Chorus's SFU beside Janus's VideoRoom under the same chorus-load, CPU per forwarded packet.
#
# Usage: bench/sfu-vs-janus.sh            (from anywhere; needs `janus` 1.1.x: apt-get install janus)
# Env:   REPEAT=3 (alternating pairs per scenario; the median is reported)
#        DURATION=15 (measured seconds per run) SETTLE=3 RAMP=25 (clients started per second)
#        SCENARIOS="a50 a150 b8 c300"   a50/a150: 1 publisher (VP8 1.5 Mbit/s + Opus) -> 50/150
#        subscribers; b8: 8-person meeting (all publish, all receive); c300: audio only,
#        10 publishers -> 300 subscribers. Other sizes of the same shapes: aN, bN, cN (e.g. c200;
#        see bench/sfu-scenarios.sh).
#        CHORUS_PORT=18080 CHORUS_MEDIA_PORT=17882 JANUS_PORT=18188 OUT=<dir for the JSON runs>
#        MEDIA_IP=<this host's address on its default route>
#
# Janus 1.1.x runs from a private config: the WebSocket transport on 127.0.0.1 only, the
# VideoRoom plugin only (no other plugin, transport, event handler or logger is loadable: the
# folders it reads hold only those two libraries), no sample rooms. Signaling stays on
# 127.0.0.1; media uses MEDIA_IP for both servers and for the clients, because libnice (Janus's
# ICE) never gathers loopback candidates. Datagrams to a local address still never leave the
# host (the kernel routes them through `lo`), so both servers see the same path.
# Chorus runs `chorus serve` (release build) on 127.0.0.1 with room and per-IP limits raised
# for the largest scenario. Both stay up for the whole run; every scenario runs REPEAT times
# against each, alternating which goes first. chorus-load (its own process) samples the
# server's CPU (user+system, /proc/PID/stat) and RSS over its measurement window and counts
# what subscribers received in it (= forwarded packets) and every sequence gap (= loss).
# Printed per scenario and server: CPU-µs per forwarded packet (median), forwarded packets/s,
# forwarded packets per CPU-second (per core), loss, server RSS growth per client; and the
# median of the pairwise ratios chorus/janus of CPU per packet.
set -euo pipefail

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-15}
SETTLE=${SETTLE:-3}
RAMP=${RAMP:-25}
SCENARIOS=${SCENARIOS:-"a50 a150 b8 c300"}
CHORUS_PORT=${CHORUS_PORT:-18080}
CHORUS_MEDIA_PORT=${CHORUS_MEDIA_PORT:-17882}
JANUS_PORT=${JANUS_PORT:-18188}
SECRET=bench-secret-bench-secret-bench-secret
MEDIA_IP=${MEDIA_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
[ -n "$MEDIA_IP" ] || { echo "no non-loopback IPv4 address: set MEDIA_IP" >&2; exit 1; }

command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/sfu-scenarios.sh
source "$root/bench/sfu-scenarios.sh"
echo "building chorus and chorus-load (release)..." >&2
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p chorus --bin chorus
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p chorus-loadtest
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
load="$target_dir/release/chorus-load"

work=$(mktemp -d)
OUT=${OUT:-$work/runs}
mkdir -p "$OUT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- Janus, private config ---
libdir=$(dirname "$(dpkg -L janus | grep -m1 '/janus/plugins/libjanus_videoroom.so$')")
libdir=$(dirname "$libdir")
mkdir -p "$work/janus/conf" "$work/janus/plugins" "$work/janus/transports" \
  "$work/janus/events" "$work/janus/loggers"
ln -s "$libdir/plugins/libjanus_videoroom.so" "$work/janus/plugins/"
ln -s "$libdir/transports/libjanus_websockets.so" "$work/janus/transports/"
cat >"$work/janus/conf/janus.jcfg" <<EOF
general: {
  configs_folder = "$work/janus/conf"
  plugins_folder = "$work/janus/plugins"
  transports_folder = "$work/janus/transports"
  events_folder = "$work/janus/events"
  loggers_folder = "$work/janus/loggers"
  debug_level = 3
  session_timeout = 60
}
media: {
  rtp_port_range = "30000-39999"
}
nat: {
  nice_debug = false
  ice_enforce_list = "$MEDIA_IP"
}
events: {
  broadcast = false
}
EOF
cat >"$work/janus/conf/janus.transport.websockets.jcfg" <<EOF
general: {
  json = "compact"
  ws = true
  ws_port = $JANUS_PORT
  ws_ip = "127.0.0.1"
  wss = false
}
admin: {
  admin_ws = false
  admin_wss = false
}
EOF
# No rooms defined: chorus-load creates (and destroys) its own.
cat >"$work/janus/conf/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
janus -C "$work/janus/conf/janus.jcfg" -F "$work/janus/conf" -o >"$work/janus.log" 2>&1 &
janus_pid=$!
pids+=("$janus_pid")

# --- Chorus, release ---
chorus_bench_flags "$CHORUS_PORT" "$work/chorus" "$MEDIA_IP" "$CHORUS_MEDIA_PORT"
"$target_dir/release/chorus" serve "${CHORUS_FLAGS[@]}" --set log.level=warn >"$work/chorus.log" 2>&1 &
chorus_pid=$!
pids+=("$chorus_pid")

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$CHORUS_PORT/health" >/dev/null 2>&1 &&
    (exec 3<>"/dev/tcp/127.0.0.1/$JANUS_PORT") 2>/dev/null && break
  sleep 0.1
done
if ! kill -0 "$janus_pid" 2>/dev/null || ! kill -0 "$chorus_pid" 2>/dev/null; then
  echo "a server did not start:" >&2
  tail -20 "$work/janus.log" "$work/chorus.log" >&2
  exit 1
fi

run_one() { # server scenario repeat
  local server=$1 scenario=$2 i=$3 args
  args=$(scenario_args "$scenario")
  local common="--duration $DURATION --settle $SETTLE --ramp-per-second $RAMP --bind-ip $MEDIA_IP --json"
  local out="$OUT/$scenario-$server-$i.json"
  if [ "$server" = chorus ]; then
    # shellcheck disable=SC2086
    "$load" --url "http://127.0.0.1:$CHORUS_PORT" --room "bench-$scenario-$i" \
      --token-secret "$SECRET" --server-pid "$chorus_pid" $args $common >"$out" || true
  else
    # shellcheck disable=SC2086
    "$load" --target janus --janus-url "ws://127.0.0.1:$JANUS_PORT" \
      --server-pid "$janus_pid" $args $common >"$out" || true
  fi
  python3 - "$out" "$server" "$scenario" "$i" <<'PY'
import json, sys
path, server, scenario, i = sys.argv[1:]
try:
    s = json.load(open(path))
except Exception as e:
    print(f"  {scenario} {server} #{i}: no summary ({e})", file=sys.stderr); sys.exit(0)
print(f"  {scenario} {server:6} #{i}: {s['windowPackets']} packets fwd in {s['windowSeconds']:.1f} s, "
      f"{s.get('serverCpuUsPerPacket') or float('nan'):.2f} CPU-us/pkt, lost {s['lost']}, "
      f"failed {s['failed']}", file=sys.stderr)
PY
  sleep 2
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "$(uname -r); janus $(dpkg-query -W -f='${Version}' janus)" >&2
for scenario in $SCENARIOS; do
  for i in $(seq 1 "$REPEAT"); do
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    if [ $((i % 2)) -eq 1 ]; then
      run_one janus "$scenario" "$i"; run_one chorus "$scenario" "$i"
    else
      run_one chorus "$scenario" "$i"; run_one janus "$scenario" "$i"
    fi
  done
done

python3 - "$OUT" "$REPEAT" $SCENARIOS <<'PY'
import json, os, statistics, sys
out, repeat, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(s, server, i):
    try:
        return json.load(open(os.path.join(out, f"{s}-{server}-{i}.json")))
    except Exception:
        return None
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"
print(f"{'scenario':8} {'server':6} {'CPU-us/pkt':>10} {'fwd pkt/s':>10} {'pkt/CPU-s':>10} "
      f"{'lost':>6} {'failed':>6} {'RSS kB/client':>13}")
for s in scenarios:
    runs = {srv: [load(s, srv, i) for i in range(1, repeat + 1)] for srv in ("chorus", "janus")}
    for srv, rs in runs.items():
        ok = [r for r in rs if r]
        cpu = med([r.get("serverCpuUsPerPacket") for r in ok])
        print(f"{s:8} {srv:6} {f(cpu):>10} {f(med([r['windowPacketsPerSecond'] for r in ok]), 0):>10} "
              f"{f(1e6 / cpu if cpu else None, 0):>10} {sum(r['lost'] for r in ok):>6} "
              f"{sum(r['failed'] for r in ok):>6} "
              f"{f(med([r.get('serverRssKbPerClient') for r in ok]), 1):>13}")
    ratios = [c["serverCpuUsPerPacket"] / j["serverCpuUsPerPacket"]
              for c, j in zip(runs["chorus"], runs["janus"])
              if c and j and c.get("serverCpuUsPerPacket") and j.get("serverCpuUsPerPacket")]
    print(f"{s:8} chorus/janus CPU per packet: median {f(med(ratios))} over {len(ratios)} pairs "
          f"({', '.join(f(r) for r in ratios)})")
PY
