#!/usr/bin/env bash
# Memory of `chorus turn` under a flood of unauthenticated and forged TURN requests.
#
# Usage: bench/turn-flood-memory.sh         (from the repository root)
# Env:   IPS=50000 (distinct source addresses, from 127.1.0.0/16 upwards) PER_IP=4
#        (requests per address per round) ROUNDS=5 SOCKETS=64 PORT=34578 HTTP_PORT=34579
#
# Starts `chorus turn` (release build) on 127.0.0.1 with default limits and REST credentials,
# then runs ROUNDS rounds. In each, every source address sends PER_IP Allocate requests: half
# without credentials, half with a made-up USERNAME, REALM, NONCE and MESSAGE-INTEGRITY. The
# script sends from SOCKETS sockets bound to the wildcard address and picks each datagram's
# source address with IP_PKTINFO, so the number of addresses is not bounded by descriptors.
# After each round it prints the server's resident memory (VmRSS), the answers it got back by
# error code, and the server's own counters from /metrics. Flat VmRSS across rounds is what
# "an unauthenticated request creates no state" should look like. The script exits 1 if any
# Allocate succeeded.
set -euo pipefail

IPS=${IPS:-50000}
PER_IP=${PER_IP:-4}
ROUNDS=${ROUNDS:-5}
SOCKETS=${SOCKETS:-64}
PORT=${PORT:-34578}
HTTP_PORT=${HTTP_PORT:-34579}

root=$(cd "$(dirname "$0")/.." && pwd)
echo "building chorus (release)..." >&2
cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin chorus
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

work=$(mktemp -d)
"$target_dir/release/chorus" turn --set "server.listen=127.0.0.1:$HTTP_PORT" \
  --set "turn.udp_listen=127.0.0.1:$PORT" --set "turn.tcp_listen=127.0.0.1:$PORT" \
  --set turn.relay_ip=127.0.0.1 --set ice.turn_secret=flood-test-secret --set turn.realm=test \
  --set log.level=warn >"$work/chorus.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1; then
  echo "chorus turn did not start (ports $PORT, $HTTP_PORT in use?):" >&2
  cat "$work/chorus.log" >&2
  exit 1
fi

python3 - "$pid" "$PORT" "$HTTP_PORT" "$IPS" "$PER_IP" "$ROUNDS" "$SOCKETS" <<'PY'
import os, random, socket, struct, sys, urllib.request

pid, port, http_port, ips, per_ip, rounds, sockets = map(int, sys.argv[1:])
COOKIE = 0x2112A442
IP_PKTINFO = 8  # Linux; Python's socket module does not export it

def attr(kind, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad

def allocate(forged):
    attrs = attr(0x0019, bytes([17, 0, 0, 0]))  # REQUESTED-TRANSPORT: UDP
    if forged:
        attrs += attr(0x0006, b"%d:mallory" % random.randrange(1 << 40))  # USERNAME
        attrs += attr(0x0014, b"test")  # REALM
        attrs += attr(0x0015, os.urandom(24).hex().encode())  # NONCE
        attrs += attr(0x0008, os.urandom(20))  # MESSAGE-INTEGRITY
    return struct.pack("!HHI", 0x0003, len(attrs), COOKIE) + os.urandom(12) + attrs

def source(n):
    return socket.inet_aton(f"127.{1 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}")

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics").read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))

socks = []
for _ in range(sockets):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("0.0.0.0", 0))
    s.setblocking(False)
    socks.append(s)
target = ("127.0.0.1", port)
succeeded = 0

def drain(classes):
    global succeeded
    for s in socks:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == 0x0103:
                succeeded += 1
                classes["success"] = classes.get("success", 0) + 1
                continue
            code, at = None, 20
            while at + 4 <= len(data):
                t, n = struct.unpack("!HH", data[at:at + 4])
                if t == 0x0009 and n >= 4:
                    code = data[at + 6] * 100 + data[at + 7]
                at += 4 + n + (4 - n % 4) % 4
            classes[f"error {code}"] = classes.get(f"error {code}", 0) + 1

print(f"load: {ips} source addresses x {per_ip} requests x {rounds} rounds "
      f"(half without credentials, half forged), from {sockets} sockets")
print(f"before: VmRSS={rss_kib()} KiB")
for r in range(1, rounds + 1):
    classes, sent = {}, 0
    for i in range(per_ip):
        for n in range(ips):
            pktinfo = struct.pack("I4s4s", 0, source(n), b"\0" * 4)
            try:
                socks[n % sockets].sendmsg([allocate(forged=i % 2 == 1)],
                                           [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, target)
                sent += 1
            except BlockingIOError:
                pass
            if n % 1000 == 999:
                drain(classes)
    drain(classes)
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(classes.items()))
    print(f"round {r}: sent={sent} answers {{{answers}}} VmRSS={rss_kib()} KiB "
          f"rate_limited_total={metric('chorus_turn_rate_limited_total'):.0f} "
          f"auth_failures_total={metric('chorus_turn_auth_failures_total'):.0f} "
          f"allocations_active={metric('chorus_turn_allocations_active'):.0f}")
sys.exit(1 if succeeded else 0)
PY
