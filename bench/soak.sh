#!/usr/bin/env bash
# Soak benchmark (issue 10, item 9): one Chorus node under a steady, moderate mix of 1:1 calls,
# rooms with real webrtc-rs media through the SFU, chat and presence churn for MINUTES, with
# users continuously coming and going; then the load stops and the node must hold nothing.
#
# It builds `chorus` and examples/soak_load.rs in release, starts `chorus serve` on 127.0.0.1
# (SQLite in a temp dir, SFU on, TURN on with REST credentials handed out in iceServers) and
# runs soak_load (see its module docs for the scenarios; default 3 call workers, 2 room workers,
# 4 presence workers). Every SAMPLE seconds (default 30) it prints one table row: the server's
# RSS (VmRSS, and RssAnon), open fds (/proc/PID/fd), threads, tokio tasks (chorus_runtime_tasks) and the
# gauges of /metrics: HTTP and signaling connections, signaling sessions, the hub's records
# (connections, users, calls, rooms, watched users, timers), SFU rooms, participants and tracks,
# TURN allocations.
#
# At the end, after the load driver exits, it waits (at most SETTLE seconds, default 90) for
# the gauges to return to zero, and checks, printing PASS or FAIL for each:
#   load      the load driver finished without a failed iteration
#   gauges    every gauge above is 0 (chorus_http_connections 1: the scrape's own connection)
#   tasks     tokio tasks are back to their count before the load
#   fds       open fds other than the chat database's are back to their count before the
#             load; the database's are at most 13: the SQLite store keeps up to 6 pooled
#             connections (1 writer, 1 checkpointer, 4 readers, opened on demand and closed
#             after sqlx's 10 min idle timeout), each holding the database and its WAL, plus
#             the shared-memory file
#   rss       RSS (VmRSS) grew less than 5 % over the last half of the load (from the first
#             sample at or after half time to the last sample under load); the anonymous part
#             (RssAnon: heap and stacks) is printed beside it, as most of the rest is the
#             executable's own pages, faulted in as code paths first run
# and exits 1 if any check failed.
#
# Usage: bench/soak.sh [MINUTES]                          (default 60)
#        SAMPLE=10 bench/soak.sh 3
#        LOAD_ARGS="--calls 4 --rooms 3 --presence 6" bench/soak.sh 60
#        HEAP_PROFILE=/tmp/soak-heap bench/soak.sh 20
# HEAP_PROFILE=PATH attaches heaptrack (Debian package `heaptrack`) to the server at half time,
# so the profile holds only what the second half allocated, and at the end kills the server with
# SIGKILL instead of SIGTERM (a graceful exit would free everything first): the profile's
# "leaked" memory is then what the second half allocated and the idle server still held, by call
# site (`heaptrack_print --print-leaks 1 PATH.zst`, or heaptrack_gui). heaptrack adds its own
# memory and descriptors to the server's, so a profiled run's rss and fds checks do not count.
# Server settings that differ from the defaults: presence.away_after = 20s (idle → away happens
# inside the load's sessions, and stale idle timers are gone 20 s after the last disconnect),
# rooms.auto_create = true, per-IP connection caps 1000 (every client is on 127.0.0.1), log
# level warn. Environment: CARGO_TARGET_DIR; CHORUS_BIN and SOAK_LOAD_BIN (both) to run
# binaries built before instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-60}"
SAMPLE="${SAMPLE:-30}"
SETTLE="${SETTLE:-90}"
LOAD_ARGS="${LOAD_ARGS:-}"
SECRET="soak-secret-$(date +%s)-0123456789abcdef0123"
TURN_SECRET="soak-turn-$(date +%s)-0123456789abcdef"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"

if [ -n "${CHORUS_BIN:-}" ] && [ -n "${SOAK_LOAD_BIN:-}" ]; then
  BIN="$CHORUS_BIN"
  LOAD="$SOAK_LOAD_BIN"
else
  cargo build --release --bin chorus --example soak_load >&2
  BIN="$CARGO_TARGET_DIR/release/chorus"
  LOAD="$CARGO_TARGET_DIR/release/examples/soak_load"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chorus-soak.XXXXXX")
SERVER_PID=""
LOAD_PID=""
cleanup() {
  for pid in $LOAD_PID $SERVER_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() { # a port free for both TCP and UDP
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Htuln "sport = :$p" | grep -q .; then echo "$p"; return; fi
  done
  echo "no free port" >&2; return 1
}

HTTP_PORT=$(free_port)
SFU_PORT=$(free_port)
TURN_PORT=$(free_port)
ADDR="127.0.0.1:$HTTP_PORT"
mkdir -p "$WORK/data"
CHORUS_AUTH_SECRET="$SECRET" \
  "$BIN" serve --listen "$ADDR" --data-dir "$WORK/data" \
  --set "log.level=warn" \
  --set "rooms.auto_create=true" \
  --set "presence.away_after=20s" \
  --set "server.max_connections_per_ip=1000" \
  --set "server.max_raw_connections_per_ip=1000" \
  --set "sfu.enabled=true" \
  --set "sfu.udp_listen=127.0.0.1:$SFU_PORT" \
  --set "sfu.tcp_listen=127.0.0.1:$SFU_PORT" \
  --set "sfu.public_ips=127.0.0.1" \
  --set "turn.enabled=true" \
  --set "turn.udp_listen=127.0.0.1:$TURN_PORT" \
  --set "turn.tcp_listen=127.0.0.1:$TURN_PORT" \
  --set "turn.relay_ip=127.0.0.1" \
  --set "ice.turn_secret=$TURN_SECRET" \
  --set "ice.turn_urls=turn:127.0.0.1:$TURN_PORT?transport=udp" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  curl -sf "http://$ADDR/ready" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if ! curl -sf "http://$ADDR/ready" >/dev/null 2>&1; then
  echo "the server did not become ready; log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

# One sample: prints "rss_kb fds threads tasks http sig sessions hub_conn hub_users calls rooms
# watched timers sfu_rooms sfu_parts sfu_tracks turn_allocs anon_kb db_kb".
sample() {
  local m rss fds threads
  m=$(curl -sf "http://$ADDR/metrics")
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$SERVER_PID/status")
  threads=$(awk '/^Threads:/{print $2}' "/proc/$SERVER_PID/status")
  fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
  # Sums every sample of a metric name (all label values), or one labelled sample exactly.
  g() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d", s}' <<<"$m"; }
  h() { awk -v n="chorus_hub_records{kind=\"$1\"}" '$1 == n {s += $2} END {printf "%d", s}' <<<"$m"; }
  echo "$rss $fds $threads $(g chorus_runtime_tasks) $(g chorus_http_connections)" \
    "$(g chorus_signaling_connections) $(g chorus_signaling_sessions)" \
    "$(h connections) $(h users) $(h calls) $(h rooms) $(h watched) $(h timers)" \
    "$(g chorus_sfu_rooms) $(g chorus_sfu_participants) $(g chorus_sfu_tracks)" \
    "$(g chorus_turn_allocations_active)" \
    "$(awk '/^RssAnon:/{print $2}' "/proc/$SERVER_PID/status")" \
    "$(du -ck "$WORK/data"/chat.db* | awk 'END{print $1}')"
}
HEADER=$(printf '%6s %8s %7s %6s %5s %4s %6s %5s %4s %5s | %5s %5s %5s %5s %5s %6s | %4s %5s %6s | %5s' \
  t_s rss_MB anon_MB db_MB fds thr tasks http sig sess conns users calls rooms watch timers \
  rooms parts tracks alloc)
row() { # $1 = seconds, rest = a sample
  local t=$1; shift
  # shellcheck disable=SC2046
  printf '%6s %8.1f %7.1f %6.1f %5s %4s %6s %5s %4s %5s | %5s %5s %5s %5s %5s %6s | %4s %5s %6s | %5s\n' \
    "$t" "$(awk -v k="$1" 'BEGIN{print k/1024}')" "$(awk -v k="${18}" 'BEGIN{print k/1024}')" \
    "$(awk -v k="${19}" 'BEGIN{print k/1024}')" \
    "${@:2:16}"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ); ${MINUTES} min of load, a sample every ${SAMPLE} s"
echo "load:    soak_load ${LOAD_ARGS:-(defaults: --calls 3 --rooms 2 --presence 4)}; machine load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "columns: rss = VmRSS, anon = RssAnon (heap and stacks; the rest is mostly the executable's pages),"
echo "         db = the chat database and its WAL on disk"
echo "         hub = chorus_hub_records{kind}; sfu = chorus_sfu_{rooms,participants,tracks}; alloc = chorus_turn_allocations_active"
echo "         http = chorus_http_connections (the scrape itself is one), sig = chorus_signaling_connections, sess = chorus_signaling_sessions"
printf '%69s%s\n' "" "hub                                     sfu                 turn"
echo "$HEADER"

# "other db": open fds that are not / are the chat database's files.
fd_split() {
  local links
  links=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 -printf '%l\n')
  echo "$(grep -vc "^$WORK/data/chat.db" <<<"$links") $(grep -c "^$WORK/data/chat.db" <<<"$links")"
}
DB_FDS_MAX=13

BASE=($(sample))
BASE_FDS=($(fd_split))
row 0 "${BASE[@]}"
START=$(date +%s)
# shellcheck disable=SC2086
"$LOAD" "$ADDR" "$SECRET" "127.0.0.1:$TURN_PORT" $((MINUTES * 60)) $LOAD_ARGS \
  >"$WORK/load.out" 2>"$WORK/load.err" &
LOAD_PID=$!

HALF=$((MINUTES * 30))
RSS_HALF=""
RSS_LAST=""
ANON_HALF=""
ANON_LAST=""
next=$SAMPLE
while kill -0 "$LOAD_PID" 2>/dev/null; do
  now=$(( $(date +%s) - START ))
  if [ "$now" -lt "$next" ]; then sleep 1; continue; fi
  next=$((next + SAMPLE))
  S=($(sample))
  row "$now" "${S[@]}"
  # Under load: only samples taken before the load's duration ended count for RSS growth.
  if [ "$now" -le $((MINUTES * 60)) ]; then
    if [ -z "$RSS_HALF" ] && [ "$now" -ge "$HALF" ]; then
      RSS_HALF=${S[0]}
      ANON_HALF=${S[17]}
      if [ -n "${HEAP_PROFILE:-}" ]; then
        setsid heaptrack -o "$HEAP_PROFILE" -p "$SERVER_PID" >"$WORK/heaptrack.log" 2>&1 &
        echo "heaptrack attached at ${now} s, writing $HEAP_PROFILE.zst"
      fi
    fi
    RSS_LAST=${S[0]}
    ANON_LAST=${S[17]}
  fi
done
LOAD_STATUS=0
wait "$LOAD_PID" || LOAD_STATUS=$?
LOAD_PID=""
echo "load stopped at $(( $(date +%s) - START )) s: $(grep '^RESULT ' "$WORK/load.out" || echo 'no RESULT line')"
if [ "$LOAD_STATUS" -ne 0 ]; then
  echo "load driver exit status $LOAD_STATUS; its failures:"
  grep -E 'FAILED|panicked' "$WORK/load.err" | head -20 || true
fi

# Settle: every gauge back to zero (the scrape's own HTTP connection excepted).
zero() { # $@ = a sample
  [ "$5" -le 1 ] || return 1
  for v in "${@:6:12}"; do [ "$v" -eq 0 ] || return 1; done
}
settled=0
for _ in $(seq $((SETTLE / 5))); do
  S=($(sample))
  if zero "${S[@]}" && [ "${S[3]}" -le "${BASE[3]}" ]; then settled=1; break; fi
  sleep 5
done
row "$(( $(date +%s) - START ))" "${S[@]}"
END_FDS=($(fd_split))

echo
FAILED=0
check() { # $1 = name, $2 = 0 for pass, $3 = detail
  if [ "$2" -eq 0 ]; then echo "PASS  $1: $3"; else echo "FAIL  $1: $3"; FAILED=1; fi
}
check load "$LOAD_STATUS" "$(grep '^RESULT ' "$WORK/load.out" | sed 's/^RESULT //' || true)"
z=0; zero "${S[@]}" || z=1
check gauges "$z" "after the load (waited up to ${SETTLE} s, settled=$settled): http=${S[4]} sig=${S[5]} sess=${S[6]} hub conns=${S[7]} users=${S[8]} calls=${S[9]} rooms=${S[10]} watched=${S[11]} timers=${S[12]} sfu rooms=${S[13]} parts=${S[14]} tracks=${S[15]} turn allocs=${S[16]}"
t=0; [ "${S[3]}" -le "${BASE[3]}" ] || t=1
check tasks "$t" "${S[3]} tokio tasks now, ${BASE[3]} before the load"
f=0
[ "${END_FDS[0]}" -le "${BASE_FDS[0]}" ] && [ "${END_FDS[1]}" -le "$DB_FDS_MAX" ] || f=1
check fds "$f" "${END_FDS[0]} open fds other than the chat database's now, ${BASE_FDS[0]} before the load; the database's: ${END_FDS[1]} now (at most $DB_FDS_MAX), ${BASE_FDS[1]} before"
if [ -n "$RSS_HALF" ] && [ -n "$RSS_LAST" ]; then
  growth=$(awk -v a="$RSS_HALF" -v b="$RSS_LAST" 'BEGIN{printf "%.2f", (b-a)*100/a}')
  ok=$(awk -v g="$growth" 'BEGIN{print (g < 5) ? 0 : 1}')
  check rss "$ok" "$(awk -v a="$RSS_HALF" -v b="$RSS_LAST" 'BEGIN{printf "%.1f MB at half time -> %.1f MB at the end of the load", a/1024, b/1024}'): ${growth} % (limit 5 %); $(awk -v k="${S[0]}" 'BEGIN{printf "%.1f", k/1024}') MB after settling, $(awk -v k="${BASE[0]}" 'BEGIN{printf "%.1f", k/1024}') MB before the load; anon $(awk -v a="$ANON_HALF" -v b="$ANON_LAST" 'BEGIN{printf "%.1f MB -> %.1f MB (%.2f %%)", a/1024, b/1024, (b-a)*100/a}')"
else
  check rss 1 "too few samples under load to compare half time with the end (run longer or lower SAMPLE)"
fi
if grep -qiE 'panic' "$WORK/server.log"; then
  check "server log" 1 "$(grep -iE 'panic' "$WORK/server.log" | head -3)"
else
  echo "      server log: $(grep -c . "$WORK/server.log" || true) lines at level warn and above, no panic"
fi
if [ -n "${HEAP_PROFILE:-}" ]; then
  kill -KILL "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true # heaptrack finishing its file
  echo "      server killed (SIGKILL) for the heap profile: heaptrack_print --print-leaks 1 $HEAP_PROFILE.zst"
  SERVER_PID=""
  exit "$FAILED"
fi
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then
  echo "      server exited 0 on SIGTERM"
else
  check shutdown 1 "the server did not exit 0 on SIGTERM"
fi
SERVER_PID=""
exit "$FAILED"
