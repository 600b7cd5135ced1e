//! One participant: its `Rtc`, what it publishes and what it receives.
//!
//! Lifecycle: created by `join` (Rtc built, ufrag routed, not yet negotiated) → the client's
//! first offer is answered (now `negotiated`; server offers may follow) → media flows →
//! removed by `leave`, ICE timeout, an `Rtc` error or the room closing. Removal unpublishes
//! its tracks, drops its subscriptions and routes, and sends a DTLS close to the peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use str0m::bwe::BweKind;
use str0m::change::SdpPendingOffer;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::Transmit;
use str0m::rtp::{ExtensionValues, SeqNo, Ssrc};
use str0m::{Event, Input, Output, Rtc};

use crate::event::{FailureReason, SfuEvent, TrackKind, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};
use crate::settings::Grants;

use super::allocator::{Allocator, Wanted};
use super::capture::{CaptureClock, Report};
use super::data::DataWork;
use super::forward::{PtMapping, SeqRewriter, StreamRewriter};
use super::layers::LayerIndex;
use super::selector::LayerSelector;
use super::temporal::{FrameRate, TemporalFilter};

/// One incoming RTP packet, detached from the publisher's `Rtc` so it can be written to
/// many subscribers. The payload is shared, never copied per subscriber.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub ssrc: Ssrc,
    /// Simulcast layer name, for a track published with several.
    pub rid: Option<Rid>,
    pub seq_no: SeqNo,
    pub pt: Pt,
    pub time: u32,
    pub marker: bool,
    pub ext: ExtensionValues,
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
    /// When it was captured, on the server's clock ([`CaptureClock`]): the wallclock its
    /// forwarded copies are written with, from which sender reports are made.
    pub capture: Instant,
}

/// Work produced while draining an `Rtc` that touches other participants. Queued and
/// processed after the drain, so no two `Rtc`s are borrowed at once.
#[derive(Debug)]
// `Forward` is both the largest and by far the most common variant; boxing it would
// allocate once per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Forward {
        track: TrackId,
        packet: Forwarded,
    },
    Keyframe {
        track: TrackId,
        /// The layer asked for (`None`: the track's only or lowest layer).
        layer: Option<LayerIndex>,
        kind: KeyframeRequestKind,
    },
    Publish {
        session: SessionId,
        mid: Mid,
        kind: TrackKind,
    },
    Unpublish {
        track: TrackId,
    },
    Connected {
        session: SessionId,
    },
    Fail {
        session: SessionId,
        reason: FailureReason,
    },
    /// What this participant receives changed: choose its layers again.
    Reallocate {
        session: SessionId,
    },
    Data(super::data::DataWork),
}

/// Where an outgoing (server → subscriber) m-line is in negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubState {
    /// Needs an m-line in the next server offer.
    ToOpen,
    /// In an offer that is not answered yet.
    Negotiating(Mid),
    /// Negotiated: packets are forwarded.
    Open(Mid),
    /// Must be stopped in the next server offer.
    ToStop(Mid),
    /// Stop is in an offer that is not answered yet.
    NegotiatingStop(Mid),
}

/// A track this participant receives.
///
/// Lifecycle: `ToOpen` → `Negotiating` → `Open` → `ToStop` → `NegotiatingStop` → dropped;
/// glare (a client offer) rolls `Negotiating` back to `ToOpen` and `NegotiatingStop` back to
/// `ToStop`.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub track: TrackId,
    pub kind: TrackKind,
    pub publisher: ParticipantKey,
    pub state: SubState,
    pub seq: SeqRewriter,
    /// Timestamps and picture ids across layer switches (video).
    pub stream: StreamRewriter,
    /// Which layer is forwarded, and which one is wanted next (video).
    pub selector: LayerSelector,
    /// Which temporal layers of that layer are forwarded: its frame rate (video).
    pub temporal: TemporalFilter,
    /// What the subscriber asked for with `track:settings`.
    pub wanted: Wanted,
    /// The frame rate it asked for with `track:settings` (`None`: every frame).
    pub wanted_fps: Option<u32>,
    /// What that comes to on the layer the allocator chose: frames left out above it were
    /// asked to be, frames left out below it are dropped for congestion.
    pub asked_rate: FrameRate,
    /// The allocator paused the track for lack of bandwidth (not the subscriber's wish).
    pub congested: bool,
    /// Publisher PT → how this subscriber gets it; filled on first use.
    pub pts: Vec<(Pt, PtMapping)>,
    /// Whether the send stream's retransmission history was sized for this track.
    pub nack_history: NackHistory,
    /// What the last `track:layer` with a layer told the subscriber of the frame rate (video;
    /// `None` before the first and while paused): the tick announces again when the measured
    /// rate drifts from it (`Core::reannounce_drifted_rates`).
    pub announced: Option<Announced>,
}

/// A frame rate announced in `track:layer`, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Announced {
    /// Frames per second announced (`None`: not measured then).
    pub frame_rate: Option<u16>,
    /// When.
    pub at: Instant,
    /// Since when the measured rate has stayed near this figure, having drifted from the one
    /// announced; `None` while it has not drifted.
    pub drift: Option<(u16, Instant)>,
}

/// Whether a subscription's send stream has had its retransmission history sized
/// (`Settings::nack_history`): str0m's default keeps 3 s, and the stream exists only once its
/// m-line is negotiated, so it is sized at the first packet forwarded on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NackHistory {
    /// Not yet: str0m's default.
    Default,
    /// Sized.
    Sized,
}

impl Subscription {
    /// A subscription in `state`, receiving the best layer until told otherwise.
    pub fn new(
        track: TrackId,
        kind: TrackKind,
        publisher: ParticipantKey,
        state: SubState,
    ) -> Self {
        Subscription {
            track,
            kind,
            publisher,
            state,
            seq: SeqRewriter::default(),
            stream: StreamRewriter::default(),
            selector: LayerSelector::default(),
            temporal: TemporalFilter::default(),
            wanted: Wanted::Highest,
            wanted_fps: None,
            asked_rate: FrameRate::Full,
            congested: false,
            pts: Vec::new(),
            nack_history: NackHistory::Default,
            announced: None,
        }
    }

    /// Notes what `event`, a `LayerChanged` about to be sent for this subscription, announces,
    /// and returns it.
    pub fn announcing(&mut self, event: SfuEvent, now: Instant) -> SfuEvent {
        if let SfuEvent::LayerChanged { layer, .. } = &event {
            self.announced = layer.as_ref().map(|l| Announced {
                frame_rate: l.frame_rate,
                at: now,
                drift: None,
            });
        }
        event
    }
}

/// See the module docs.
pub(crate) struct Participant {
    pub id: SessionId,
    pub key: ParticipantKey,
    pub room: RoomKey,
    pub grants: Grants,
    pub rtc: Rtc,
    /// Incoming mids that are published tracks.
    pub published: HashMap<Mid, TrackId>,
    /// Hints from the last offer: mid → source (explicit) and mid → msid (for inference).
    pub source_hints: HashMap<String, TrackSource>,
    pub msids: HashMap<String, String>,
    pub subs: Vec<Subscription>,
    /// The server offer awaiting the client's answer.
    pub pending: Option<SdpPendingOffer>,
    /// A client offer has been accepted at least once (server offers are possible).
    pub negotiated: bool,
    pub next_timeout: Instant,
    /// Last packet received from the peer; drives the ICE timeout.
    pub last_rx: Instant,
    pub join_started: Instant,
    pub media_forwarded: bool,
    /// Cache of incoming SSRC → (mid, rid).
    pub ssrc_mid: HashMap<Ssrc, (Mid, Option<Rid>)>,
    /// Cumulative NACK count per outgoing mid, from egress stats (for the NACK counter).
    pub egress_nacks: HashMap<Mid, u64>,
    /// Set for a viewer (WHEP): whose tracks it receives, on which of its own m-lines.
    pub viewing: Option<super::viewer::Viewing>,
    /// The downlink estimate (bit/s) from str0m's TWCC estimator, once there is one.
    pub estimate: Option<u64>,
    /// Whether its estimate was formed without video (see `adaptive`'s module docs).
    pub link_use: super::adaptive::LinkUse,
    /// Shares the estimate among the video tracks this participant receives.
    pub allocator: Allocator,
    /// The most it wants to receive (`media:bandwidth`), bit/s.
    pub receive_cap: Option<u64>,
    /// The (minimum, desired) rates last given to str0m's estimator (bit/s).
    pub bandwidth_wish: (u64, u64),
    /// Puts the capture times of what it publishes on the server's clock.
    pub capture: CaptureClock,
    /// Its data channels and send budget.
    pub data: super::data::DataState,
}

/// How many already-due timeouts one [`Participant::drain`] feeds before leaving the rest to
/// the driver's next pass. Each releases one queued packet; a drain after one forwarded packet
/// needs one or two, and the bound keeps an `Rtc` that keeps asking for `now` from spinning.
const DUE_ROUNDS: usize = 16;

/// Packets and payload bytes counted since the core last added them to its shared counters,
/// which it does once per settle: an atomic add per packet on counters every worker shares
/// was 2–3 % of a worker's time.
#[derive(Default)]
pub(crate) struct Counted {
    packets: u64,
    bytes: u64,
}

impl Counted {
    /// Counts one packet of `bytes` payload bytes.
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    /// Adds what was counted to `packets` and `bytes`, and starts over.
    pub fn flush(&mut self, packets: &prometheus::IntCounter, bytes: &prometheus::IntCounter) {
        if self.packets > 0 {
            packets.inc_by(std::mem::take(&mut self.packets));
            bytes.inc_by(std::mem::take(&mut self.bytes));
        }
    }
}

/// What draining one `Rtc` produced for the rest of the core.
#[derive(Default)]
pub(crate) struct Outputs {
    pub transmits: std::collections::VecDeque<Transmit>,
    pub work: std::collections::VecDeque<Work>,
    /// NACKs seen in egress stats since the last look.
    pub nacks: u64,
    /// RTP packets received.
    pub received: Counted,
    /// RTP packets forwarded.
    pub forwarded: Counted,
    /// Downlink estimates reported since the last look (bit/s), for the histogram.
    pub estimates: Vec<u64>,
}

impl Participant {
    /// Polls the `Rtc` until `Timeout` (str0m's contract after every mutation), and while that
    /// timeout is already due, feeds it at once and polls again, up to [`DUE_ROUNDS`] times.
    ///
    /// Why: str0m timestamps a written packet and releases one queued packet per
    /// `Input::Timeout`. Left to the driver's next pass, a subscriber written several packets
    /// between passes (one `recvmmsg` batch of a busy room) sent one per pass and its send
    /// queue grew without bound: in the 300-subscriber audio benchmark, 4.8 MB per
    /// participant, 28 CPU-µs per packet and packets dropped in the worker's socket.
    pub fn drain(&mut self, now: Instant, out: &mut Outputs) {
        let mut rounds = 0;
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) if t <= now && rounds < DUE_ROUNDS => {
                    rounds += 1;
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                        return self.fail(e, out);
                    }
                }
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => out.transmits.push_back(t),
                Ok(Output::Event(e)) => self.on_event(e, out),
                Err(e) => return self.fail(e, out),
            }
        }
    }

    fn fail(&mut self, e: str0m::RtcError, out: &mut Outputs) {
        out.work.push_back(Work::Fail {
            session: self.id,
            reason: FailureReason::Rtc(e.to_string()),
        });
        // Never poll a failed Rtc again; removal follows.
        self.next_timeout = self.next_timeout.max(self.last_rx);
    }

    fn on_event(&mut self, e: Event, out: &mut Outputs) {
        match e {
            Event::Connected => out.work.push_back(Work::Connected { session: self.id }),
            Event::Closed => out.work.push_back(Work::Fail {
                session: self.id,
                reason: FailureReason::PeerClosed,
            }),
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                out.work.push_back(Work::Publish {
                    session: self.id,
                    mid: m.mid,
                    kind: kind_of(m.kind),
                });
            }
            Event::MediaChanged(c) if !c.direction.is_receiving() => {
                if let Some(track) = self.published.get(&c.mid) {
                    out.work.push_back(Work::Unpublish {
                        track: track.clone(),
                    });
                }
            }
            Event::RtpPacket(mut p) => {
                out.received.add(p.payload.len());
                let ssrc = p.header.ssrc;
                let stream = match self.ssrc_mid.get(&ssrc) {
                    Some(m) => Some(*m),
                    None => {
                        let m = self
                            .rtc
                            .direct_api()
                            .stream_rx(&ssrc)
                            .map(|s| (s.mid(), s.rid()));
                        if let Some(m) = m {
                            self.ssrc_mid.insert(ssrc, m);
                        }
                        m
                    }
                };
                let Some((mid, rid)) = stream else {
                    return;
                };
                let Some(track) = self.published.get(&mid) else {
                    return;
                };
                let h = &mut p.header;
                let ext = ExtensionValues {
                    audio_level: h.ext_vals.audio_level,
                    voice_activity: h.ext_vals.voice_activity,
                    video_orientation: h.ext_vals.video_orientation,
                    video_content_type: h.ext_vals.video_content_type,
                    abs_capture_time: h.ext_vals.abs_capture_time,
                    // The dependency descriptor (`dependency`), moved, not copied.
                    user_values: std::mem::take(&mut h.ext_vals.user_values),
                    ..ExtensionValues::default()
                };
                let report = p.last_sender_info.map(|i| Report {
                    ntp: i.ntp_time,
                    rtp_time: i.rtp_time.numer() as u32,
                });
                let capture = self.capture.wallclock(
                    p.timestamp,
                    h.timestamp,
                    p.time.frequency().get(),
                    report,
                );
                out.work.push_back(Work::Forward {
                    track: track.clone(),
                    packet: Forwarded {
                        ssrc,
                        rid,
                        seq_no: p.seq_no,
                        pt: h.payload_type,
                        time: h.timestamp,
                        marker: h.marker,
                        ext,
                        payload: p.payload,
                        arrival: p.timestamp,
                        capture,
                    },
                });
            }
            Event::KeyframeRequest(req) => {
                let track = self.subs.iter().find_map(|s| match s.state {
                    SubState::Open(m) if m == req.mid => Some((
                        s.track.clone(),
                        s.selector.current().or(s.selector.target()),
                    )),
                    _ => None,
                });
                if let Some((track, layer)) = track {
                    out.work.push_back(Work::Keyframe {
                        track,
                        layer,
                        kind: req.kind,
                    });
                }
            }
            Event::EgressBitrateEstimate(
                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
            ) => {
                let bps = estimate.as_u64();
                self.estimate = Some(bps);
                out.estimates.push(bps);
            }
            Event::ChannelOpen(id, label) => {
                if let Err(refusal) = self.data.opened(&mut self.rtc, id, &label) {
                    out.work.push_back(Work::Data(DataWork::Refused {
                        session: self.id,
                        refusal,
                    }));
                }
            }
            Event::ChannelClose(id) => self.data.closed(id),
            Event::ChannelData(d) => {
                if let Some(kind) = self.data.kind_of(d.id) {
                    out.work.push_back(Work::Data(DataWork::Message {
                        session: self.id,
                        kind,
                        binary: d.binary,
                        data: d.data,
                    }));
                }
            }
            Event::MediaEgressStats(s) => {
                let last = self.egress_nacks.entry(s.mid).or_insert(0);
                out.nacks += s.nacks.saturating_sub(*last);
                *last = s.nacks;
            }
            _ => {}
        }
    }

    /// The subscription for `track`, if any.
    pub fn sub_mut(&mut self, track: &TrackId) -> Option<&mut Subscription> {
        self.subs.iter_mut().find(|s| &s.track == track)
    }
}

pub(crate) fn kind_of(k: MediaKind) -> TrackKind {
    match k {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

pub(crate) fn media_kind(k: TrackKind) -> MediaKind {
    match k {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video => MediaKind::Video,
    }
}
