#!/usr/bin/env bash
# Memory per idle signaling connection: N raw WebSocket connections (then N Socket.IO ones),
# each authenticated, each having made one request (so its read path was used), held open.
# Prints the server's VmRSS before and after, and the difference per connection.
#
# Usage: bench/connection-memory.sh [N]          (default 2000)
#   PROFILE=debug     measure the debug build instead of release
#   CHORUS_BIN=path   use this binary (no build)
# Needs Node.js 20 and the npm modules of tests/ (`cd tests && npm ci`).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
PROFILE="${PROFILE:-release}"
if [ -z "${CHORUS_BIN:-}" ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --release --bin chorus >&2
  else
    cargo build --bin chorus >&2
  fi
  CHORUS_BIN="$PWD/target/$PROFILE/chorus"
fi
[ -d tests/node_modules/ws ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error >&2)
ulimit -n "$((N * 2 + 1024))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$CHORUS_BIN" serve --dev --listen "127.0.0.1:$port" --data-dir "$data" \
  --set turn.enabled=false --set log.level=warn \
  --set server.max_connections_per_ip=$((N + 100)) \
  --set server.max_raw_connections_per_ip=$((N + 100)) \
  --set server.max_connections=$((N + 100)) \
  --set limits.max_connections_per_user=$((N + 100)) >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

cd tests
N="$N" PORT="$port" PID="$pid" node --input-type=module - <<'JS'
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { readFileSync } from 'node:fs';

const n = Number(process.env.N);
const base = `http://127.0.0.1:${process.env.PORT}`;
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${process.env.PID}/status`, 'utf8'))[1]);
const { token } = await (await fetch(`${base}/api/v1/dev/token`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench' }),
})).json();
const settle = () => new Promise((r) => setTimeout(r, 2000));

async function raw() {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?access_token=${token}`);
  await new Promise((ok, fail) => { ws.once('open', ok); ws.once('error', fail); });
  ws.send(JSON.stringify({ event: 'activity:ping', data: {}, id: 1 }));
  await new Promise((ok) => ws.on('message', (m) => { if (JSON.parse(m).ack === 1) ok(); }));
  return ws;
}
async function sio() {
  const s = io(base, { auth: { token }, transports: ['websocket'], reconnection: false });
  await new Promise((ok, fail) => { s.once('connect', ok); s.once('connect_error', fail); });
  await s.timeout(5000).emitWithAck('activity:ping', {});
  return s;
}

const rows = [];
for (const [name, open] of [['raw WebSocket', raw], ['Socket.IO', sio]]) {
  await settle();
  const before = rss();
  const held = [];
  for (let i = 0; i < n; i += 100) {
    held.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, open))));
  }
  await settle();
  const after = rss();
  rows.push({ transport: name, connections: n, 'VmRSS before kB': before, 'VmRSS after kB': after,
    'kB per connection': ((after - before) / n).toFixed(1) });
  // A goodbye (close frame, Socket.IO disconnect), not a dropped transport: a dropped session
  // is held for `session:resume` (`limits.resume_grace`) and would still count, and be freed,
  // during the next batch.
  for (const c of held) c.close();
}
console.table(rows);
JS
