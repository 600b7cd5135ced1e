//! Heap the hub holds for its bounded per-user records, measured with a counting allocator:
//! `lastSeenAt` of users who went offline (`presence.last_seen_capacity`) and invitation
//! budgets of users who were invited lately (ADR 0045). Run by `bench/hub-records-memory.sh`.
//!
//! Usage: `cargo run -p chorus-signaling --example hub_records_memory -- [USERS] [CAPACITY]`
//! (defaults 100000 and 50000). User ids are 36 characters, the length of a UUID.

use protocol::{CallInitiate, CallRef, CallType, ClientEvent, ConnectionId, UserId};
use signaling::auth::{Grants, Identity};
use signaling::hub::{Hub, HubSettings};
use signaling::ice::IceServers;
use signaling::metrics::Metrics;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: defers every call to the system allocator with the same arguments; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn user(i: usize) -> UserId {
    UserId(format!("{i:08}-0000-4000-8000-000000000000"))
}

fn identity(user_id: UserId) -> Identity {
    Identity {
        name: user_id.to_string(),
        user_id,
        grants: Grants::default(),
        contacts: Default::default(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("USERS"));
    let capacity: usize = args.next().map_or(50_000, |a| a.parse().expect("CAPACITY"));
    let mut config = config::Config::default();
    config.presence.last_seen_capacity = capacity;
    // Each connection queues an idle check; a short one lets it fire (and go) right away, so
    // what stays is the lastSeenAt record alone.
    config.presence.away_after = config::HumanDuration::secs(1);
    config.calls.max_participants = 50;
    let settings = HubSettings::from_config(&config);
    let t0 = Instant::now();
    let ice = IceServers::new(&config.ice);
    let mut hub = Hub::new(settings, ice, Metrics::unregistered(), t0);
    let drain = |hub: &mut Hub| while hub.poll_output().is_some() {};

    // Users who connect once and leave: only their lastSeenAt stays.
    let before = live();
    let mut now = t0;
    for i in 0..users {
        let conn = ConnectionId(i as u64);
        hub.connect(now, conn, &identity(user(i)));
        hub.disconnect(now, conn);
        now += Duration::from_secs(1);
        hub.handle_timeout(now);
        drain(&mut hub);
    }
    let held = live().saturating_sub(before);
    let records = hub.stats().last_seen;
    println!(
        "lastSeenAt: {users} users went offline; {records} records kept (capacity {capacity}); \
         {held} bytes held, {} bytes per record",
        held / records.max(1)
    );

    // One caller invites distinct users, 49 per call, cancelling each call at once.
    let caller = ConnectionId(u64::MAX);
    let t0 = now;
    hub.connect(t0, caller, &identity("caller".into()));
    drain(&mut hub);
    let before = live();
    for batch in 0..users.div_ceil(49) {
        let participants = (batch * 49..((batch + 1) * 49).min(users))
            .map(|i| user(users + i))
            .collect();
        let ack = hub
            .handle(
                t0,
                caller,
                ClientEvent::CallInitiate(CallInitiate {
                    conversation_id: "c".into(),
                    call_type: CallType::Audio,
                    participants,
                    mode: None,
                }),
            )
            .expect("call:initiate");
        let call_id = ack["callId"].as_str().expect("callId").into();
        hub.handle(t0, caller, ClientEvent::CallEnd(CallRef { call_id }))
            .expect("call:end");
        drain(&mut hub);
    }
    // Let the cancelled calls' timers fire, so only the invitation records remain.
    hub.handle_timeout(t0 + Duration::from_secs(7200));
    drain(&mut hub);
    let held = live().saturating_sub(before);
    let stats = hub.stats();
    println!(
        "invitations: {users} distinct users invited; {} budgets kept; {held} bytes held, {} \
         bytes per budget (calls left: {}, timers left: {})",
        stats.invited_users,
        held / stats.invited_users.max(1),
        stats.calls,
        stats.timers,
    );
}
