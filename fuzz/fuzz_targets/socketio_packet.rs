//! Client bytes as socketioxide decodes them before our handlers see an event: an Engine.IO
//! HTTP long-polling body (packets separated by 0x1e) or one WebSocket frame, then the
//! Socket.IO packets inside (with binary attachments), then, for each event, the same typing,
//! routing and error rendering as the raw WebSocket (`chorus_fuzz::typed`), with the event name
//! and first argument taken the way `transport::socketio` takes them. Checked: nothing panics.
//! Run: `cd fuzz && cargo +nightly fuzz run socketio_packet`.
#![no_main]

use bytes::Bytes;
use engineioxide_core::{Packet as EnginePacket, ProtocolVersion};
use futures_util::StreamExt;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_parser_common::CommonParser;

/// The polling body limit socketioxide applies by default (`max_payload`, 100 kB).
const MAX_PAYLOAD: u64 = 100_000;

fuzz_target!(|input: (bool, &[u8])| {
    let (polling, bytes) = input;
    let packets: Vec<EnginePacket> = if polling {
        let body = Full::new(Bytes::copy_from_slice(bytes));
        let decoder =
            engineioxide_core::payload::decoder(body, None, ProtocolVersion::V4, MAX_PAYLOAD);
        futures_executor::block_on(decoder.collect::<Vec<_>>())
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => EnginePacket::parse(ProtocolVersion::V4, text.to_owned())
                .into_iter()
                .collect(),
            // A binary WebSocket frame carries one attachment as is.
            Err(_) => vec![EnginePacket::Binary(Bytes::copy_from_slice(bytes))],
        }
    };
    // One connection's parser state across its packets, as socketioxide keeps it.
    let state = ParserState::default();
    let config = ParseConfig::default();
    for packet in packets {
        let decoded = match packet {
            EnginePacket::Message(text) => CommonParser.decode_str(&config, &state, text),
            EnginePacket::Binary(data) | EnginePacket::BinaryV3(data) => {
                CommonParser.decode_bin(&config, &state, data)
            }
            _ => continue,
        };
        if let Ok(packet) = decoded {
            handled(packet);
        }
    }
});

/// What `transport::socketio`'s extractor does with a packet: events only, the name by
/// `read_event`, the data as its first argument (`Value::Null` when it has none or it fails).
fn handled(packet: Packet) {
    let (PacketData::Event(mut value, ack) | PacketData::BinaryEvent(mut value, ack)) =
        packet.inner
    else {
        return;
    };
    let Ok(name) = CommonParser.read_event(&value).map(str::to_owned) else {
        return;
    };
    let data = CommonParser
        .decode_value::<Value>(&mut value, true)
        .unwrap_or(Value::Null);
    chorus_fuzz::typed(&name, data, ack.and_then(|a| u64::try_from(a).ok()));
}
