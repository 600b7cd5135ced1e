#!/usr/bin/env bash
# Heap the signaling hub holds for its bounded per-user records: lastSeenAt of users who went
# offline (presence.last_seen_capacity) and invitation budgets (limits.invites_per_minute).
#
# Usage: bench/hub-records-memory.sh [USERS] [CAPACITY]      (defaults 100000 and 50000)
#
# Runs signaling/examples/hub_records_memory.rs, which drives a Hub directly (no sockets) under
# a counting allocator: USERS distinct users (36-character ids) connect once and leave, then
# USERS distinct users are invited, 49 per call. It prints how many records the hub kept, the
# heap they hold, and the bytes per record. The records kept never exceed CAPACITY (lastSeenAt)
# or 65536 (invitation budgets), whatever USERS is. Allocation sizes do not depend on the
# optimisation level, so a debug build is used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo run --quiet --manifest-path "$root/Cargo.toml" -p chorus-signaling \
  --example hub_records_memory -- "${1:-100000}" "${2:-50000}"
