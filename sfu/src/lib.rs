//! # chorus-sfu: selective forwarding for Chorus group calls
//!
//! Each participant sends its media to the server once; the SFU forwards every packet to
//! the other participants of the room without decoding it.
//!
//! ## Shape
//!
//! - [`core`] is **sans-IO**: rooms, participants, tracks, subscriptions and forwarding
//!   over one [`str0m::Rtc`] per participant (ICE-lite, RTP mode). It takes `now` as input,
//!   never reads the clock, never touches a socket.
//! - [`driver`](crate::Sfu) (private module) runs the media workers, by default one thread per
//!   core, each owning a core (its rooms) and a UDP port (7882, 7883, … by default), and one
//!   ICE-TCP front (passive, RFC 4571 framing, default TCP 7882) that hands each connection to
//!   its worker. A room lives on one worker ([`core::shard`]); ADR 0081.
//! - [`SfuHandle`] is what the signaling layer holds: methods that queue a command for the
//!   room's worker at once (in call order) and return its reply, plus a stream of [`SfuEvent`]s.
//!   Participants are keyed by the caller's connection id, with the user id beside it
//!   ([`ParticipantKey`]); [`SfuHandle::offer_joining`] seats one on its first offer.
//!
//! ## Using it
//!
//! ```no_run
//! # async fn demo() -> Result<(), sfu::Error> {
//! use std::time::Instant;
//! use sfu::{Grants, Sfu, Settings, SfuEvent};
//!
//! let registry = prometheus::Registry::new();
//! let sfu = Sfu::start(Settings::default(), &registry)?;
//! let mut events = sfu.events()?;
//!
//! // Connection 7 of user alice; its first offer seats it in the room.
//! let alice = sfu::ParticipantKey::new(7, "alice");
//! # let client_offer = String::new();
//! let reply = sfu
//!     .offer_joining("room-1".into(), alice, Grants::default(), Instant::now(), client_offer)
//!     .await?;
//! // send reply.answer, then reply.server_offer (if any), to alice
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         SfuEvent::Offer { participant, sdp, .. } => { /* relay, then sfu.answer(..) */ }
//!         SfuEvent::TrackPublished { .. } => { /* track:published */ }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Negotiation and glare
//!
//! The client offers first; the server answers and then offers the tracks the client
//! should receive. The client's offer always wins glare; see [`core::negotiation`] for
//! the exact rule.
//!
//! ## Forwarding
//!
//! Opus (with RED when negotiated, else RED is reduced to its primary block), VP8, VP9,
//! H264 and AV1 are forwarded as RTP; payload types are mapped per subscriber and sequence
//! numbers rebased (see [`core::forward`]). Payloads are `Arc<[u8]>` shared by all
//! subscribers. NACKs are answered from str0m's send buffers (RTX when negotiated); PLI/FIR
//! from subscribers reach the publisher at most once per 500 ms per track
//! ([`core::throttle`]); a new video subscription triggers one on its behalf.
//!
//! ## Lifecycle
//!
//! A participant exists from `join` until `leave`, its room closing, an `Rtc` error or
//! [`Settings::ice_timeout`] without a packet. Removal frees its `Rtc`, tracks,
//! subscriptions and routes; [`SfuHandle::snapshot`] counts them (all zero once everyone
//! left).
//!
//! ## Metrics
//!
//! Registered into the registry given to [`Sfu::start`]; see [`metrics::Metrics`]. No
//! label names a room or participant.

#![warn(missing_docs)]

pub mod core;
mod driver;
mod error;
mod event;
mod handle;
mod ids;
pub mod metrics;
mod settings;

pub use core::allocator::Wanted;
pub use core::data::{DataKind, DataRefusal, LOSSY_LABEL, RELIABLE_LABEL};
pub use core::{OfferReply, ServerOffer, TrackInfo, Viewed};
pub use driver::{FIRST_FRAME_TIMEOUT, MAX_ICE_TCP_CONNECTIONS};
pub use error::{Error, SdpFault};
pub use event::{
    AudioLevel, FailureReason, LayerActivity, LayerInfo, Muted, SfuEvent, Stats, TrackKind,
    TrackSource,
};
pub use handle::{Reply, Sfu, SfuHandle};
pub use ids::{ParticipantKey, RoomKey, SessionId, TrackId};
pub use settings::{
    AutoSubscribe, CandidateTransports, CongestionControl, DataLimits, Grants, Limits, Settings,
    detect_public_ips,
};
