# Sourced by bench/chat.sh and bench/chat-ab.sh: how both start the server they measure, and
# read what it spent.
#
# chat_serve BINARY ADDR DATA_DIR LOG [DATABASE_URL] starts `BINARY serve` in the background
# (its pid in CHAT_SERVER_PID) with the benchmark's settings, the only ones tuned: chat rate
# limit off, per-connection event limit 1e6/s, 1000 connections per IP (the many-senders run
# opens 400 from 127.0.0.1), log level warn; CHAT_SECRET is the JWT secret. An empty
# DATABASE_URL means SQLite under DATA_DIR.
chat_serve() {
  CHORUS_AUTH_SECRET="$CHAT_SECRET" \
  CHORUS_CHAT_DATABASE_URL="${5:-}" \
  CHORUS_CHAT_MESSAGES_PER_SECOND=0 \
  CHORUS_LIMITS_EVENTS_PER_SECOND=1000000 \
  CHORUS_LIMITS_EVENT_BURST=1000000 \
  CHORUS_SERVER_MAX_CONNECTIONS_PER_IP=1000 \
  CHORUS_SERVER_MAX_RAW_CONNECTIONS_PER_IP=1000 \
  CHORUS_LOG_LEVEL=warn \
    "$1" serve --listen "$2" --data-dir "$3" >"$4" 2>&1 &
  CHAT_SERVER_PID=$!
}

# commits ADDR: "<groups> <messages>" committed so far by the server's chat writer.
commits() {
  curl -sf "http://$1/metrics" | awk '
    $1 == "chorus_chat_commit_groups_total" { g = $2 }
    $1 == "chorus_chat_commit_messages_total" { m = $2 }
    END { print g + 0, m + 0 }'
}

# cpu_ticks PID: its utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat")
  awk '{print $12 + $13}' <<<"$rest"
}
