//! Data channels through the SFU: what a participant sends on one of its channels is relayed
//! to every other participant of its room on the same kind of channel, with the sender's
//! identity stamped by the server ([`envelope`]).
//!
//! # Channels
//!
//! The client opens (in-band, DCEP) up to two channels, identified by label:
//!
//! | label | kind | client options |
//! |---|---|---|
//! | [`RELIABLE_LABEL`] (`chorus-reliable`) | [`DataKind::Reliable`] | ordered, retransmitted (the default) |
//! | [`LOSSY_LABEL`] (`chorus-lossy`) | [`DataKind::Lossy`] | `ordered: false, maxRetransmits: 0` |
//!
//! The label alone decides the kind: the server relays on the receiver's channel of the same
//! label, with whatever reliability that receiver opened it with. A channel with another label,
//! or a second channel with a label already open, is closed at once and counted as refused
//! (`unknown_channel`), so a client cannot make the server hold more than two channels.
//! Channels must be in the client's offer (create them before the first `createOffer`), since
//! the SCTP association rides on that offer's `m=application` line.
//!
//! # Limits (see [`crate::DataLimits`])
//!
//! Checked on every message, in this order: the `can_publish_data` grant, the size limit,
//! then the participant's message and byte token buckets (time passed in; refused messages
//! take no tokens). A refused message is dropped and its sender gets
//! [`crate::SfuEvent::DataRefused`] — at most one per reason per second, so a flood of bad
//! messages does not become a flood of events; the refusal metric counts each one.
//!
//! Receivers are never slowed by a sender: a receiver without `can_subscribe` gets nothing;
//! a lossy message is skipped for a receiver whose SCTP send buffer already holds half of
//! `max_buffered_bytes`, and a reliable one when the buffer cannot take it
//! (`chorus_sfu_data_dropped_total{reason="receiver_busy"}`). str0m's buffer for each
//! receiver is capped at `max_buffered_bytes`, so a receiver that stops reading pins at most
//! that much.

mod bucket;
pub mod envelope;

use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::channel::ChannelId;

use crate::event::SfuEvent;
use crate::ids::SessionId;
use crate::settings::{DataLimits, Grants};

use super::Core;
use bucket::TokenBucket;

/// Label of the reliable (ordered, retransmitted) channel.
pub const RELIABLE_LABEL: &str = "chorus-reliable";
/// Label of the lossy (unordered, no retransmission) channel.
pub const LOSSY_LABEL: &str = "chorus-lossy";

/// Shortest spacing of two [`SfuEvent::DataRefused`] for one participant and reason.
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// Which of the two channels a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// Ordered and retransmitted: chat-like messages, state.
    Reliable,
    /// Unordered, never retransmitted: reactions, cursors, anything that is stale when late.
    Lossy,
}

impl DataKind {
    /// The channel label clients open for this kind.
    pub fn label(self) -> &'static str {
        match self {
            DataKind::Reliable => RELIABLE_LABEL,
            DataKind::Lossy => LOSSY_LABEL,
        }
    }

    /// `"reliable"` or `"lossy"` (metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Reliable => "reliable",
            DataKind::Lossy => "lossy",
        }
    }

    /// The kind a channel label names, if any.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            RELIABLE_LABEL => Some(DataKind::Reliable),
            LOSSY_LABEL => Some(DataKind::Lossy),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            DataKind::Reliable => 0,
            DataKind::Lossy => 1,
        }
    }
}

/// Why a data channel message (or channel) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataRefusal {
    /// The token lacks `canPublishData`.
    NoGrant,
    /// The message is larger than `limit` bytes.
    TooLarge {
        /// [`DataLimits::max_message_bytes`].
        limit: usize,
    },
    /// The participant sent more messages or bytes per second than its limits allow.
    RateLimited,
    /// A text message that is not UTF-8.
    Malformed,
    /// A channel with a label the server does not relay, or a second one with the same label;
    /// it was closed.
    UnknownChannel {
        /// The label the client gave it.
        label: String,
    },
}

impl DataRefusal {
    /// Metric label: `no_grant`, `too_large`, `rate_limited`, `malformed`, `unknown_channel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DataRefusal::NoGrant => "no_grant",
            DataRefusal::TooLarge { .. } => "too_large",
            DataRefusal::RateLimited => "rate_limited",
            DataRefusal::Malformed => "malformed",
            DataRefusal::UnknownChannel { .. } => "unknown_channel",
        }
    }

    fn index(&self) -> usize {
        match self {
            DataRefusal::NoGrant => 0,
            DataRefusal::TooLarge { .. } => 1,
            DataRefusal::RateLimited => 2,
            DataRefusal::Malformed => 3,
            DataRefusal::UnknownChannel { .. } => 4,
        }
    }
}

/// One participant's data channels and send budget.
///
/// Lifecycle: created with its participant (no channels, full buckets); a channel is recorded
/// on `ChannelOpen` and forgotten on `ChannelClose`; dropped with the participant (its `Rtc`
/// goes with it, closing the association).
#[derive(Debug)]
pub(crate) struct DataState {
    channels: [Option<ChannelId>; 2],
    messages: TokenBucket,
    bytes: TokenBucket,
    /// When each refusal reason was last reported to the participant.
    notices: [Option<Instant>; 5],
}

/// What draining an `Rtc` hands to the core about data channels.
#[derive(Debug)]
pub(crate) enum DataWork {
    /// A message to check and relay.
    Message {
        session: SessionId,
        kind: DataKind,
        binary: bool,
        data: Vec<u8>,
    },
    /// A channel was refused (and closed).
    Refused {
        session: SessionId,
        refusal: DataRefusal,
    },
}

impl DataState {
    pub fn new(limits: &DataLimits, now: Instant) -> Self {
        Self {
            channels: [None, None],
            messages: TokenBucket::new(limits.messages_per_second, now),
            bytes: TokenBucket::new(limits.bytes_per_second, now),
            notices: [None; 5],
        }
    }

    /// The receiving-side channel of `kind`, when open.
    pub fn channel(&self, kind: DataKind) -> Option<ChannelId> {
        self.channels[kind.index()]
    }

    /// The kind of an open channel.
    pub fn kind_of(&self, id: ChannelId) -> Option<DataKind> {
        [DataKind::Reliable, DataKind::Lossy]
            .into_iter()
            .find(|k| self.channels[k.index()] == Some(id))
    }

    /// `ChannelOpen`: records a known label, or closes the channel and says why.
    pub fn opened(&mut self, rtc: &mut Rtc, id: ChannelId, label: &str) -> Result<(), DataRefusal> {
        match DataKind::from_label(label) {
            Some(kind) if self.channels[kind.index()].is_none() => {
                self.channels[kind.index()] = Some(id);
                Ok(())
            }
            _ => {
                rtc.direct_api().close_data_channel(id);
                Err(DataRefusal::UnknownChannel {
                    label: label.chars().take(64).collect(),
                })
            }
        }
    }

    /// `ChannelClose`.
    pub fn closed(&mut self, id: ChannelId) {
        for c in &mut self.channels {
            if *c == Some(id) {
                *c = None;
            }
        }
    }

    /// Whether a message of `len` bytes may be sent now; takes its tokens when it may.
    pub fn admit(
        &mut self,
        now: Instant,
        grants: &Grants,
        limits: &DataLimits,
        len: usize,
    ) -> Result<(), DataRefusal> {
        if !grants.can_publish_data {
            return Err(DataRefusal::NoGrant);
        }
        if len > limits.max_message_bytes {
            return Err(DataRefusal::TooLarge {
                limit: limits.max_message_bytes,
            });
        }
        let len = len as u64;
        if !(self.messages.fits(now, 1) && self.bytes.fits(now, len)) {
            return Err(DataRefusal::RateLimited);
        }
        self.messages.take(now, 1);
        self.bytes.take(now, len);
        Ok(())
    }

    /// Whether the sender should hear of this refusal now (one notice per reason per
    /// [`NOTICE_INTERVAL`]).
    fn notice_due(&mut self, now: Instant, refusal: &DataRefusal) -> bool {
        let last = &mut self.notices[refusal.index()];
        if last.is_some_and(|t| now < t + NOTICE_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Core {
    /// Handles data channel work queued while draining an `Rtc`.
    pub(super) fn data_work(&mut self, now: Instant, work: DataWork) {
        match work {
            DataWork::Message {
                session,
                kind,
                binary,
                data,
            } => self.relay_data(now, session, kind, binary, &data),
            DataWork::Refused { session, refusal } => self.refuse_data(now, session, None, refusal),
        }
    }

    /// Checks one message against the sender's grant and limits, then writes it, in its
    /// envelope, to every other participant of the room that has the same kind of channel open.
    fn relay_data(
        &mut self,
        now: Instant,
        session: SessionId,
        kind: DataKind,
        binary: bool,
        data: &[u8],
    ) {
        let limits = self.config.data;
        let Some(p) = self.sessions.get_mut(&session) else {
            return;
        };
        let channel = kind.as_str();
        self.metrics
            .data_messages
            .with_label_values(&["in", channel])
            .inc();
        self.metrics
            .data_bytes
            .with_label_values(&["in", channel])
            .inc_by(data.len() as u64);
        let admitted = p.data.admit(now, &p.grants, &limits, data.len());
        let envelope = admitted.and_then(|()| {
            envelope::wrap(p.key.user(), binary, data).ok_or(DataRefusal::Malformed)
        });
        let envelope = match envelope {
            Ok(e) => e,
            Err(refusal) => {
                self.refuse_data(now, session, Some(kind), refusal);
                return;
            }
        };
        let Some(room) = self.rooms.get(&p.room) else {
            return;
        };
        let mut receivers: Vec<SessionId> = room
            .members
            .values()
            .copied()
            .filter(|id| *id != session)
            .collect();
        receivers.sort();
        let (mut sent, mut busy) = (0u64, 0u64);
        for id in receivers {
            let Some(r) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !r.grants.can_subscribe {
                continue;
            }
            let Some(ch) = r.data.channel(kind) else {
                continue;
            };
            let buffered: usize = r
                .data
                .channels
                .iter()
                .flatten()
                .filter_map(|c| r.rtc.channel(*c).map(|mut c| c.buffered_amount()))
                .sum();
            let room_left = match kind {
                DataKind::Reliable => limits.max_buffered_bytes,
                DataKind::Lossy => limits.max_buffered_bytes / 2,
            };
            let written = buffered + envelope.len() <= room_left
                && r.rtc
                    .channel(ch)
                    .is_some_and(|mut c| c.write(binary, &envelope).unwrap_or(false));
            if written {
                sent += 1;
                r.drain(now, &mut self.out);
            } else {
                busy += 1;
            }
        }
        if sent > 0 {
            self.metrics
                .data_messages
                .with_label_values(&["out", channel])
                .inc_by(sent);
            self.metrics
                .data_bytes
                .with_label_values(&["out", channel])
                .inc_by(sent * data.len() as u64);
        }
        if busy > 0 {
            self.metrics
                .data_dropped
                .with_label_values(&["receiver_busy"])
                .inc_by(busy);
        }
    }

    /// Counts a refusal and tells the sender, unless it was told of this reason within the
    /// last [`NOTICE_INTERVAL`].
    fn refuse_data(
        &mut self,
        now: Instant,
        session: SessionId,
        kind: Option<DataKind>,
        refusal: DataRefusal,
    ) {
        self.metrics
            .data_refused
            .with_label_values(&[refusal.as_str()])
            .inc();
        let Some(p) = self.sessions.get_mut(&session) else {
            return;
        };
        if p.data.notice_due(now, &refusal) {
            self.events.push_back(SfuEvent::DataRefused {
                room: p.room.clone(),
                participant: p.key.clone(),
                kind,
                refusal,
            });
        }
    }
}

#[cfg(test)]
mod tests;
