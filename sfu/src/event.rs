//! What the SFU tells the signaling layer, and the small enums shared with it.

use crate::core::data::{DataKind, DataRefusal};
use crate::ids::{ParticipantKey, RoomKey, TrackId};

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// An audio m-line.
    Audio,
    /// A video m-line.
    Video,
}

impl TrackKind {
    /// `"audio"` or `"video"`, as in the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

/// Where a track comes from. An input from the signaling layer (per mid), or inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackSource {
    /// A camera (default for video).
    Camera,
    /// A microphone (default for audio).
    Microphone,
    /// Screen share video (its own track).
    Screen,
    /// Audio captured with a screen share.
    ScreenAudio,
}

impl TrackSource {
    /// `"camera"`, `"microphone"`, `"screen"` or `"screen_audio"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen_audio",
        }
    }
}

/// Mute state of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Muted {
    /// Media flows (or is expected to).
    No,
    /// The publisher muted it. The SFU keeps forwarding whatever arrives (browsers send
    /// silence/black), so unmuting needs no keyframe round trip.
    Yes,
}

/// A smoothed audio level: the linear amplitude relative to full scale, 0.0 (silence) to 1.0
/// (full scale), kept in steps of 1/10 000 so events stay `Eq`. -20 dBov is 0.1, -40 dBov 0.01.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AudioLevel(u16);

impl AudioLevel {
    /// From a linear amplitude (clamped to 0.0–1.0).
    pub fn from_linear(amplitude: f32) -> Self {
        Self((amplitude.clamp(0.0, 1.0) * 10_000.0).round() as u16)
    }

    /// The linear amplitude, 0.0–1.0.
    pub fn linear(self) -> f32 {
        f32::from(self.0) / 10_000.0
    }
}

/// Why a participant was removed without calling `leave`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// No packet from the peer for `Settings::ice_timeout` (ICE never connected or the
    /// peer vanished).
    IceTimeout,
    /// The WebRTC engine reported a fatal error (DTLS failure, SRTP setup…).
    Rtc(String),
    /// The peer closed the connection (DTLS close_notify), e.g. the page was closed.
    PeerClosed,
}

/// Events for the signaling layer, in order, from [`crate::SfuHandle::events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SfuEvent {
    /// A participant started publishing a track. Announce as `track:published`.
    TrackPublished {
        /// Room of the publisher.
        room: RoomKey,
        /// The publisher.
        participant: ParticipantKey,
        /// Id to use in `track:subscribe` etc.
        track_id: TrackId,
        /// Audio or video.
        kind: TrackKind,
        /// Camera, microphone or screen.
        source: TrackSource,
        /// The publisher's mid for the track.
        mid: String,
        /// Mute state when published.
        muted: Muted,
    },
    /// A track is gone (publisher left, failed, or stopped the m-line).
    TrackUnpublished {
        /// Room of the publisher.
        room: RoomKey,
        /// The publisher.
        participant: ParticipantKey,
        /// The track.
        track_id: TrackId,
    },
    /// A track's mute state changed through [`crate::SfuHandle::set_track_muted`].
    TrackMuted {
        /// Room of the publisher.
        room: RoomKey,
        /// The publisher.
        participant: ParticipantKey,
        /// The track.
        track_id: TrackId,
        /// New state.
        muted: Muted,
    },
    /// The server renegotiates: send this offer to the participant (`offer {callId,
    /// from: "sfu"}`) and pass its answer to [`crate::SfuHandle::answer`].
    Offer {
        /// Room of the participant.
        room: RoomKey,
        /// The participant that must answer.
        participant: ParticipantKey,
        /// The SDP offer.
        sdp: String,
        /// Which outgoing tracks the offer carries: the subscriber's mid for each
        /// track id, so a client can map transceivers to publishers.
        tracks: Vec<(TrackId, String)>,
    },
    /// ICE and DTLS are up for this participant.
    Connected {
        /// Room.
        room: RoomKey,
        /// Participant.
        participant: ParticipantKey,
    },
    /// The first media packet was forwarded to this participant (join is complete from the
    /// user's point of view; the join-time histogram is observed at this point).
    FirstMediaForwarded {
        /// Room.
        room: RoomKey,
        /// The receiving participant.
        participant: ParticipantKey,
    },
    /// The participant was removed because of a failure; its tracks were unpublished.
    ParticipantFailed {
        /// Room.
        room: RoomKey,
        /// Participant.
        participant: ParticipantKey,
        /// Why.
        reason: FailureReason,
    },
    /// The room's active speakers changed: who is speaking, or in which order. Loudest first
    /// (with hysteresis, see `docs/sfu.md`); empty when nobody speaks any more. At most one
    /// per room every 300 ms. Announce as `room:speakers`.
    Speakers {
        /// Room.
        room: RoomKey,
        /// Speaking participants and their smoothed levels, most active first.
        speakers: Vec<(ParticipantKey, AudioLevel)>,
    },
    /// What a subscriber receives of a video track changed: another simulcast layer, or
    /// (`layer: None`) nothing, because it paused the track or its bandwidth ran short.
    /// Announce as `track:layer` to that subscriber.
    LayerChanged {
        /// Room.
        room: RoomKey,
        /// The subscriber.
        participant: ParticipantKey,
        /// The track.
        track_id: TrackId,
        /// The layer now forwarded.
        layer: Option<LayerInfo>,
    },
    /// The publisher of a simulcast track should start or stop sending layers (dynacast).
    /// Announce as `track:quality` to that publisher.
    TrackQuality {
        /// Room.
        room: RoomKey,
        /// The publisher.
        participant: ParticipantKey,
        /// The track.
        track_id: TrackId,
        /// Every layer of the track, lowest first.
        layers: Vec<LayerActivity>,
    },
    /// A data channel message (or channel) of this participant was refused and dropped; tell
    /// the sender (`error` event). At most one per participant and reason per second.
    DataRefused {
        /// Room.
        room: RoomKey,
        /// The sender.
        participant: ParticipantKey,
        /// The channel the message came on (`None`: the channel itself was refused).
        kind: Option<DataKind>,
        /// Why.
        refusal: DataRefusal,
    },
    /// The last participant left: the room no longer exists in the SFU.
    RoomClosed {
        /// Room.
        room: RoomKey,
    },
}

/// A layer a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The publisher's rid for it (`None` for a track without simulcast).
    pub rid: Option<String>,
    /// Frame width of its last keyframe (or nominal for its rank when the codec does not
    /// tell).
    pub width: u16,
    /// Frame height, likewise.
    pub height: u16,
    /// Frames per second forwarded: the layer's, or its temporal layers' that are forwarded,
    /// as measured from the publisher (rounded; `None` until measured).
    pub frame_rate: Option<u16>,
}

/// Whether a publisher should send one simulcast layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerActivity {
    /// The layer's rid.
    pub rid: String,
    /// Send it.
    pub active: bool,
}

/// Counters of what the SFU holds, for tests and `/debug`. After everyone leaves all
/// are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rooms with at least one participant.
    pub rooms: usize,
    /// Participants (one `Rtc` each).
    pub participants: usize,
    /// Published tracks.
    pub tracks: usize,
    /// Subscriptions (track → subscriber pairs).
    pub subscriptions: usize,
    /// Routing entries (ICE ufrags + 5-tuples).
    pub routes: usize,
}

/// The whole SFU's counts are the sums over its media workers.
impl std::iter::Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), |a, b| Stats {
            rooms: a.rooms + b.rooms,
            participants: a.participants + b.participants,
            tracks: a.tracks + b.tracks,
            subscriptions: a.subscriptions + b.subscriptions,
            routes: a.routes + b.routes,
        })
    }
}
