# Sourced by bench/sfu-vs-janus.sh and bench/sfu-memory.sh: the chorus-load arguments of each
# SFU benchmark scenario and the `chorus serve` settings, so both scripts load the same server
# the same way.
#   a50 / a150  1 publisher (VP8 1.5 Mbit/s + Opus) -> 50 / 150 subscribers
#   b8          an 8-person meeting: everyone publishes and receives everyone
#   c300        audio only: 10 publishers -> 300 subscribers
# Other sizes of the same shapes: aN (1 publisher -> N subscribers), bN (an N-person meeting),
# cN (audio only, 10 publishers -> N subscribers), e.g. SCENARIOS="c100 c200".
scenario_args() {
  local n=${1:1}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "unknown scenario $1" >&2; exit 1; }
  case "$1" in
    a*) echo "--publishers 1 --subscribers $n --video-bitrate 1.5M --audio" ;;
    b*) echo "--publishers $n --subscribers 0 --video-bitrate 1.5M --audio" ;;
    c*) echo "--publishers 10 --subscribers $n --video-bitrate 0 --audio" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
  esac
}

# Sets CHORUS_FLAGS to the `chorus serve` flags of the benchmarks: HTTP on 127.0.0.1:$1, data
# in $2, media on $3:$4 (UDP only), rooms and per-IP limits raised for the largest scenario.
# Needs SECRET.
chorus_bench_flags() {
  CHORUS_FLAGS=(
    --set "server.listen=127.0.0.1:$1" --set "server.data_dir=$2"
    --set "auth.secret=$SECRET" --set rooms.auto_create=true --set rooms.max_participants=1000
    --set server.max_connections_per_ip=2000 --set server.max_raw_connections_per_ip=2000
    --set limits.max_connections_per_user=5
    --set "sfu.udp_listen=$3:$4" --set sfu.tcp_listen=
    --set "sfu.public_ips=$3" --set sfu.candidates=udp
  )
}
