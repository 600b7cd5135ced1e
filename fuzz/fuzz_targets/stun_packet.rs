//! Feeds arbitrary bytes to the codec and to a core with one live allocation, as client input,
//! as peer input and as stream frames. Run: `cd fuzz && cargo +nightly fuzz run stun_packet`.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use turn::{
    Settings,
    core::{Core, Event, FiveTuple, RelayId, Shared, Transport},
    wire,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(wire::Packet::Stun(m)) = wire::classify(data) {
        let _ = wire::Attrs::parse(&m);
    }
    if data.len() >= 4 {
        let _ = wire::stream_frame_len([data[0], data[1], data[2], data[3]]);
    }
    let settings = Settings {
        static_users: vec!["u:p".parse().unwrap()],
        allowed_peer_ranges: vec!["0.0.0.0/0".parse().unwrap()],
        ..Settings::default()
    };
    let now = Instant::now();
    let shared = Shared::new(
        settings,
        &prometheus::Registry::new(),
        [1; 32],
        now,
        1_700_000_000,
    )
    .expect("valid settings");
    let mut core = Core::new(shared, now);
    let five = FiveTuple {
        client: "192.0.2.7:5000".parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
        transport: Transport::Udp,
    };
    let _ = core.handle_client(now, five, data);
    while let Some(ev) = core.poll_event() {
        if let Event::OpenRelay { relay, .. } = ev {
            let _ = core.relay_opened(now, relay, Ok("192.0.2.1:50000".parse().unwrap()));
        }
    }
    let _ = core.handle_peer(now, RelayId(0), "8.8.8.8:1".parse().unwrap(), data);
    core.handle_timeout(now + std::time::Duration::from_secs(3600));
});
