//! A raw WebSocket text frame as the `/ws` reader sees it: the frame is decoded, its event typed
//! (call/room/presence events by `protocol::ClientEvent`, chat events by
//! `protocol::chat::ChatRequest`), routed, and any failure rendered as the `error` event the
//! client would get. Checked: nothing panics; a typed event parses back from its own name and
//! data (`ClientEvent::data` promises that for relaying to another node); every error frame is
//! JSON. Run: `cd fuzz && cargo +nightly fuzz run client_frame`.
#![no_main]

use chorus_fuzz::{rendered, typed};
use libfuzzer_sys::fuzz_target;
use signaling::transport::ws::decode_frame;

fuzz_target!(|text: &str| {
    match decode_frame(text) {
        Ok((name, data, id)) => typed(&name, data, id),
        Err((id, failure)) => rendered(&failure, None, id),
    }
});
