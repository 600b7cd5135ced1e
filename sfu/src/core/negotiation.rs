//! SDP negotiation between a client and its server-side `Rtc`.
//!
//! # Who offers when
//!
//! - The **client offers first** (after `join`): its audio/video/screen m-lines. The server
//!   answers ([`Core::offer`]). Receiving m-lines become published tracks.
//! - The **server offers** when the set of tracks the participant receives changes (a
//!   track is published or unpublished, subscribe/unsubscribe). It adds one `sendonly`
//!   m-line per subscribed track (msid = `<publisher key as token> <track id>`) and stops m-lines of
//!   gone tracks. At most one server offer is outstanding per participant; further changes
//!   wait for the answer ([`Core::answer`]) and then go into the next offer.
//! - Clients should not pre-create `recvonly` transceivers; the server adds what they need.
//!
//! # Glare rule (deterministic)
//!
//! **The client's offer always wins; the server is the polite peer.**
//!
//! 1. If a client offer arrives while a server offer is outstanding, the server rolls its
//!    offer back (the m-lines it added return to "to open", stops to "to stop"), answers the
//!    client offer, and then immediately makes a fresh offer with everything still
//!    pending. That fresh offer is returned **in the same reply** as the answer
//!    ([`OfferReply::server_offer`]) so signaling can send answer-then-offer in order on
//!    the client's connection.
//! 2. A client that has its own offer outstanding must ignore a server offer (it is the
//!    impolite peer); rule 1 guarantees the server re-offers.
//! 3. An answer to a rolled-back offer is refused with [`Error::NoPendingOffer`] (or
//!    [`Error::BadSdp`] if a newer offer is outstanding and the answer does not match it);
//!    signaling may ignore both.
//!
//! Server offers made after a client offer are never emitted as [`crate::SfuEvent::Offer`]
//! events; only spontaneous ones (another participant's track came or went) are.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;

use crate::error::{Error, SdpFault};
use crate::event::TrackSource;
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};

use super::Core;
use super::participant::{SubState, Work, media_kind};
use super::routing::Ufrag;
use super::sdp_check::check_offer;

/// A server-initiated offer for one participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOffer {
    /// Room.
    pub room: RoomKey,
    /// Participant that must answer.
    pub participant: ParticipantKey,
    /// The offer SDP.
    pub sdp: String,
    /// Newly added tracks: (track id, the mid they get in this participant's session).
    pub tracks: Vec<(TrackId, String)>,
}

/// Result of a client offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferReply {
    /// The answer SDP to send to the client.
    pub answer: String,
    /// A server offer to send right after the answer (see the glare rule).
    pub server_offer: Option<ServerOffer>,
}

impl Core {
    /// Accepts a client offer and returns the answer (plus a follow-up server offer when
    /// the participant should receive tracks). `sources` names the source of some mids
    /// (`[("2", TrackSource::Screen)]`); others are inferred from their msid.
    ///
    /// Errors (the participant's state is unchanged): [`Error::TooManyMLines`],
    /// [`Error::NoUsableCodec`], [`Error::TooManyTracks`], [`Error::BadSdp`].
    pub fn offer(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        sdp: &str,
        sources: &[(String, TrackSource)],
    ) -> Result<OfferReply, Error> {
        let id = self.session_id(room, participant)?;
        let limits = self.config.limits.clone();
        let lines = check_offer(sdp, limits.max_mlines_per_offer)?;
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| refuse(room, participant, SdpFault::unparsable(e)))?;
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        if p.grants.can_publish {
            let sending = lines.iter().filter(|l| l.is_publishing()).count();
            if sending > limits.max_tracks_per_participant {
                return Err(Error::TooManyTracks {
                    count: sending,
                    limit: limits.max_tracks_per_participant,
                });
            }
        }
        for l in &lines {
            if let (Some(mid), Some(msid)) = (&l.mid, &l.msid) {
                p.msids.insert(mid.clone(), msid.clone());
            }
        }
        for (mid, source) in sources {
            p.source_hints.insert(mid.clone(), *source);
        }
        if p.pending.take().is_some() {
            // Glare: roll our offer back (str0m invalidates it in accept_offer too).
            for s in &mut p.subs {
                s.state = match s.state {
                    SubState::Negotiating(_) => SubState::ToOpen,
                    SubState::NegotiatingStop(m) => SubState::ToStop(m),
                    other => other,
                };
            }
        }
        let result = p.rtc.sdp_api().accept_offer(offer);
        p.drain(now, &mut self.out);
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                self.settle(now);
                return Err(refuse(room, participant, SdpFault::refused(e)));
            }
        };
        p.negotiated = true;
        // An ICE restart in the offer gives us new local credentials: route by them.
        let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
        if self.router.add_ufrag(ufrag, id) == Ufrag::Restarted {
            self.metrics.ice_restarts.inc();
            tracing::debug!(%room, %participant, "sfu participant restarted ICE");
        }
        // Process what the offer caused (new tracks → other participants' offers), but
        // keep this participant's own offer for the reply.
        self.settle(now);
        let server_offer = self.negotiate(now, id);
        self.dirty.retain(|d| *d != id);
        self.settle(now);
        Ok(OfferReply {
            answer: answer.to_sdp_string(),
            server_offer,
        })
    }

    /// Accepts the client's answer to the outstanding server offer.
    pub fn answer(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        sdp: &str,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| refuse(room, participant, SdpFault::unparsable(e)))?;
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        let Some(pending) = p.pending.take() else {
            return Err(Error::NoPendingOffer);
        };
        let result = p.rtc.sdp_api().accept_answer(pending, answer);
        p.drain(now, &mut self.out);
        let mut opened = Vec::new();
        let ok = result.is_ok();
        p.subs.retain_mut(|s| match s.state {
            SubState::Negotiating(m) if ok => {
                s.state = SubState::Open(m);
                opened.push(s.track.clone());
                true
            }
            SubState::Negotiating(_) => {
                s.state = SubState::ToOpen;
                true
            }
            SubState::NegotiatingStop(_) if ok => false,
            SubState::NegotiatingStop(m) => {
                s.state = SubState::ToStop(m);
                true
            }
            _ => true,
        });
        if let Err(e) = result {
            self.settle(now);
            return Err(refuse(room, participant, SdpFault::refused(e)));
        }
        if !opened.is_empty() {
            self.out.work.push_back(Work::Reallocate { session: id });
        }
        // Changes that queued up while the offer was out go into the next one.
        self.dirty.push(id);
        self.settle(now);
        Ok(())
    }

    /// Makes a server offer for `id` if it has changes and none is outstanding.
    pub(super) fn negotiate(&mut self, now: Instant, id: SessionId) -> Option<ServerOffer> {
        let p = self.sessions.get_mut(&id)?;
        if !p.negotiated || p.pending.is_some() || p.viewing.is_some() {
            return None;
        }
        // A stop for an m-line that never made it into the session (rolled back) needs
        // no SDP change.
        let rtc = &p.rtc;
        p.subs
            .retain(|s| !matches!(s.state, SubState::ToStop(m) if rtc.media(m).is_none()));
        let mut change = p.rtc.sdp_api();
        let mut tracks = Vec::new();
        for s in &mut p.subs {
            match s.state {
                SubState::ToOpen => {
                    let mid = change.add_media(
                        media_kind(s.kind),
                        Direction::SendOnly,
                        Some(msid_token(&s.publisher.to_string())),
                        Some(s.track.to_string()),
                        None,
                    );
                    s.state = SubState::Negotiating(mid);
                    tracks.push((s.track.clone(), mid.to_string()));
                }
                SubState::ToStop(m) => {
                    change.stop_media(m);
                    s.state = SubState::NegotiatingStop(m);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        p.pending = Some(pending);
        p.drain(now, &mut self.out);
        Some(ServerOffer {
            room: p.room.clone(),
            participant: p.key.clone(),
            sdp: offer.to_sdp_string(),
            tracks,
        })
    }
}

/// A refused SDP: the detail goes to the log with who sent it, the summary to the client.
fn refuse(room: &RoomKey, participant: &ParticipantKey, fault: SdpFault) -> Error {
    tracing::debug!(%room, %participant, detail = fault.detail(), "sdp refused: {fault}");
    Error::BadSdp(fault)
}

/// The publisher key as an msid stream id: RFC 8830 allows 1–64 token characters, and a
/// user id may contain anything. Unsafe characters become `_`; signaling maps tracks
/// exactly through the track id (the msid's second half) and [`ServerOffer::tracks`].
pub(crate) fn msid_token(key: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`{|}~".contains(c);
    let mut out: String = key
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::msid_token;

    #[test]
    fn msid_stream_ids_are_tokens() {
        assert_eq!(msid_token("alice"), "alice");
        assert_eq!(msid_token("Jane Doe <j@x>"), "Jane_Doe__j_x_");
        assert_eq!(msid_token(""), "_");
        assert_eq!(msid_token(&"é".repeat(100)).len(), 64);
    }
}
