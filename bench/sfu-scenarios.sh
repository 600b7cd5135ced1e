# Sourced by bench/sfu-vs-janus.sh and bench/sfu-memory.sh: the chorus-load arguments of each
# SFU benchmark scenario, so both scripts load the servers the same way.
#   a50 / a150  1 publisher (VP8 1.5 Mbit/s + Opus) -> 50 / 150 subscribers
#   b8          an 8-person meeting: everyone publishes and receives everyone
#   c300        audio only: 10 publishers -> 300 subscribers
scenario_args() {
  case "$1" in
    a50) echo "--publishers 1 --subscribers 50 --video-bitrate 1.5M --audio" ;;
    a150) echo "--publishers 1 --subscribers 150 --video-bitrate 1.5M --audio" ;;
    b8) echo "--publishers 8 --subscribers 0 --video-bitrate 1.5M --audio" ;;
    c300) echo "--publishers 10 --subscribers 300 --video-bitrate 0 --audio" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
  esac
}
