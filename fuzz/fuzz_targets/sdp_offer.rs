//! A client's SDP offer as the SFU takes it (`sfu::core::Core::offer`): the cheap scan
//! (`sdp_check::check_offer`), str0m's parser, and str0m applying the offer to a participant
//! that shares its room with a second, already negotiated one (so tracks the offer publishes
//! are forwarded and re-offered to it). Checked: nothing panics; the answer and any follow-up
//! server offer are SDP str0m parses back; what a client is told about a refused offer never
//! carries parser internals (the detail goes to the log only). Run:
//! `cd fuzz && cargo +nightly fuzz run sdp_offer`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sfu::core::sdp_check::check_offer;
use sfu::core::{Core, CoreConfig};
use sfu::metrics::Metrics;
use sfu::{
    AutoSubscribe, CongestionControl, DataLimits, Error, Grants, Limits, ParticipantKey, RoomKey,
};
use str0m::Candidate;
use str0m::change::{SdpAnswer, SdpOffer};

/// A Chromium-like audio+video offer for the second participant.
const OTHER: &str = include_str!("../corpus-seed/sdp_offer/chromium-audio-video.sdp");

/// An m-line limit a Chromium offer with audio and video exceeds, for the scan's limit path.
const FEW_MLINES: usize = 1;

fuzz_target!(|sdp: &str| {
    let _ = check_offer(sdp, FEW_MLINES);

    let now = Instant::now();
    let config = CoreConfig {
        candidates: vec![Candidate::host(([127, 0, 0, 1], 7882).into(), "udp").unwrap()],
        ice_timeout: Duration::from_secs(15),
        keyframe_request_interval: Duration::from_millis(500),
        auto_subscribe: AutoSubscribe::All,
        limits: Limits::default(),
        data: DataLimits::default(),
        congestion_control: CongestionControl::Enabled,
        nack_history: Duration::from_secs(1),
    };
    let mut core = Core::new(config, Metrics::unregistered().expect("fresh registry"));
    let room = RoomKey::new("room");
    let (fuzzed, other) = (
        ParticipantKey::from("fuzzed"),
        ParticipantKey::from("other"),
    );
    for who in [&other, &fuzzed] {
        core.join(now, room.clone(), who.clone(), Grants::default(), now)
            .expect("an empty room has space");
    }
    core.offer(now, &room, &other, OTHER, &[])
        .expect("the seed offer is valid");
    match core.offer(now, &room, &fuzzed, sdp, &[]) {
        Ok(reply) => {
            SdpAnswer::from_sdp_string(&reply.answer).expect("our answer parses");
            if let Some(offer) = reply.server_offer {
                SdpOffer::from_sdp_string(&offer.sdp).expect("our offer parses");
            }
        }
        Err(e @ Error::BadSdp(_)) => {
            let told = e.to_string();
            assert!(
                !told.contains("0x"),
                "client-facing SDP error leaks detail: {told}"
            );
        }
        Err(_) => {}
    }
    while core.poll_event().is_some() {}
    core.handle_timeout(now + Duration::from_secs(1));
    core.leave(now, &room, &fuzzed).ok();
    core.handle_timeout(now + Duration::from_secs(30));
});
