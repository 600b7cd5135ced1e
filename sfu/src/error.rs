//! Typed errors returned to the caller. Bad input from clients (SDP, packets) maps to one of
//! these; nothing a client sends panics the process.

use crate::ids::{ParticipantKey, RoomKey, TrackId};
use std::fmt;

/// Everything that can go wrong in an SFU call.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Binding a socket or starting the worker failed.
    #[error("sfu i/o error: {0}")]
    Io(String),
    /// The settings are inconsistent (for example no address to advertise).
    #[error("invalid sfu settings: {0}")]
    Settings(String),
    /// Registering a metric failed (usually: registered twice in one registry).
    #[error("metrics registration failed: {0}")]
    Metrics(String),
    /// The worker has stopped; the handle is useless.
    #[error("sfu worker is not running")]
    Stopped,
    /// [`crate::SfuHandle::events`] was already called once.
    #[error("the event receiver was already taken")]
    EventsTaken,
    /// The room does not exist (no participant ever joined it, or it closed).
    #[error("unknown room {0}")]
    UnknownRoom(RoomKey),
    /// No such participant in the room.
    #[error("unknown participant {participant} in room {room}")]
    UnknownParticipant {
        /// Room the call named.
        room: RoomKey,
        /// Participant the call named.
        participant: ParticipantKey,
    },
    /// `join` for a participant that is already in the room.
    #[error("participant {0} already joined")]
    AlreadyJoined(ParticipantKey),
    /// No such track (or it belongs to another room).
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    /// The room is full (`Limits::max_participants_per_room`).
    #[error("room is full ({limit} participants)")]
    RoomFull {
        /// The configured limit.
        limit: usize,
    },
    /// The SFU as a whole holds `Limits::max_rooms` rooms.
    #[error("too many rooms ({limit})")]
    TooManyRooms {
        /// The configured limit.
        limit: usize,
    },
    /// The offer has more m-lines than `Limits::max_mlines_per_offer`.
    #[error("offer has {count} m-lines, limit is {limit}")]
    TooManyMLines {
        /// m-lines in the offer.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Publishing would exceed `Limits::max_tracks_per_participant`.
    #[error("participant would publish {count} tracks, limit is {limit}")]
    TooManyTracks {
        /// Tracks the participant would have.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An audio/video m-line offers no codec the SFU forwards.
    #[error("no usable codec in m-line {mline} ({kind})")]
    NoUsableCodec {
        /// Index of the m-line in the offer.
        mline: usize,
        /// `audio` or `video`.
        kind: String,
    },
    /// The SDP could not be parsed or was refused by the WebRTC engine. Its message is fit for
    /// the client; [`SdpFault::detail`] has the engine's words, for the log.
    #[error("bad sdp: {0}")]
    BadSdp(SdpFault),
    /// An answer arrived while the server had no offer outstanding (for example the
    /// offer was rolled back by glare; see [`crate::core::negotiation`]). Safe to ignore.
    #[error("no server offer is outstanding")]
    NoPendingOffer,
    /// The grants do not allow the action (`can_subscribe`).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A remote ICE candidate line could not be parsed.
    #[error("bad ice candidate: {0}")]
    BadCandidate(String),
}

/// Why an SDP was refused, in two forms: a summary for the client that sent it (the
/// `Display`), and the full detail for the log. The split exists because str0m's parse errors
/// print parser internals, heap addresses included (`PointerOffset(0x7f…)`), which a client
/// must never see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpFault {
    summary: &'static str,
    detail: String,
}

impl SdpFault {
    /// The SDP is not valid SDP.
    pub(crate) fn unparsable(detail: impl fmt::Display) -> Self {
        Self {
            summary: "the SDP could not be parsed",
            detail: detail.to_string(),
        }
    }

    /// The SDP parsed but does not fit the session (str0m refused to apply it).
    pub(crate) fn refused(detail: impl fmt::Display) -> Self {
        Self {
            summary: "the SDP does not fit this session",
            detail: detail.to_string(),
        }
    }

    /// A refusal whose reason is ours and safe to show as it is.
    pub(crate) fn plain(summary: &'static str) -> Self {
        Self {
            summary,
            detail: summary.to_owned(),
        }
    }

    /// A refusal shown as `summary`, with `detail` for the log.
    pub(crate) fn explained(summary: &'static str, detail: String) -> Self {
        Self { summary, detail }
    }

    /// Everything known about the refusal, for the log.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for SdpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::change::SdpOffer;

    #[test]
    fn a_client_sees_the_summary_and_the_log_gets_the_parser_detail() {
        let malformed = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n\
            a=fingerprint:sha-256 zz\r\n";
        let e = SdpOffer::from_sdp_string(malformed).unwrap_err();
        let error = Error::BadSdp(SdpFault::unparsable(&e));
        assert_eq!(error.to_string(), "bad sdp: the SDP could not be parsed");
        let Error::BadSdp(fault) = &error else {
            unreachable!()
        };
        // str0m's own text names a heap address: it stays in the log.
        assert!(
            fault.detail().contains("PointerOffset(0x"),
            "{}",
            fault.detail()
        );
    }
}
