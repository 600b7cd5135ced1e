//! Test support for Chorus: the one webrtc-rs test peer, a raw WebSocket signaling client,
//! synthetic media, and the rule for tests whose tool is missing.
//!
//! This crate is a `[dev-dependencies]` entry only (of the `chorus` binary's end-to-end tests in
//! `tests/server/`, of `sfu`'s and of `turn`'s); no crate depends on it in a normal build, and it
//! depends on no Chorus crate, so any test suite can use it.
//!
//! # A participant in a room, in five lines
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr, token: &str) {
//! use testkit::{Capture, Kind, Participant};
//! let mut alice = Participant::join(addr, token, "stage", Capture::CountsOnly).await.unwrap();
//! let mic = alice.peer.publish(Kind::Audio, "mic", 0xA1).await;
//! alice.connect_media().await.unwrap(); // offer to the SFU, apply its answer, ICE+DTLS up
//! for _ in 0..50 { mic.send_next().await; }
//! let counts = alice.peer.counts();     // packets and frames received, per track id
//! # }
//! ```
//!
//! # Parts
//! - [`signal`]: [`WsClient`], a raw WebSocket client of `/ws` (requests with acks, buffered
//!   events, and [`WsClient::barrier`] for checking that something was *not* delivered);
//! - [`peer`]: [`Peer`], a webrtc-rs 0.21 `RTCPeerConnection` on 127.0.0.1 that publishes
//!   [`LocalTrack`]s of synthetic media and counts what it receives per track;
//! - [`media`]: the synthetic Opus and VP8 payloads, recognisable byte for byte;
//! - [`room`]: negotiation with the SFU over signaling (`room:join`, targetless `offer`,
//!   answering server offers) and [`Participant`], which bundles a [`WsClient`] and a [`Peer`];
//! - [`tool`]: what a test does when a tool it needs (coturn, io_uring, Chromium) is missing:
//!   [`prerequisite`] fails it under `CI=true` and skips it with a message otherwise.
//!
//! Feature `media` (default) builds everything; without it only [`tool`] is built, for suites
//! that need nothing else.

#[cfg(feature = "media")]
pub mod media;
#[cfg(feature = "media")]
pub mod peer;
#[cfg(feature = "media")]
pub mod room;
#[cfg(feature = "media")]
pub mod signal;
pub mod tool;

#[cfg(feature = "media")]
pub use peer::{Capture, LocalTrack, Peer, ReceivedPacket, SimulcastTrack, TrackCounts, mid_of};
#[cfg(feature = "media")]
pub use room::Participant;
/// Audio or video, as webrtc-rs names it.
#[cfg(feature = "media")]
pub use rtc::rtp_transceiver::rtp_sender::RtpCodecKind as Kind;
#[cfg(feature = "media")]
pub use signal::{Refusal, WAIT, WsClient};
pub use tool::prerequisite;
