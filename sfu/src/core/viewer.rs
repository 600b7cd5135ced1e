//! Viewers (WHEP playback): participants that receive one publisher's tracks on the m-lines of
//! their own offer and are never made an offer, because a WHEP client cannot renegotiate.
//!
//! A viewer joins with neither grant, so the paths that subscribe ordinary participants (at
//! join, at publish, `subscribe`) pass it by. Instead [`Core::bind_viewer`] gives each of the
//! publisher's tracks it does not receive yet a free receive-only m-line of the viewer's offer
//! of the track's kind; str0m already declared a send stream on every m-line it answered as
//! sending, so the subscription is open at once. A track that goes away frees its m-line
//! (no offer: the m-line just goes quiet), and the publisher's next track of that kind takes
//! it. Tracks beyond the viewer's m-lines are not received.

use std::time::Instant;

use str0m::media::Mid;

use crate::error::Error;
use crate::event::TrackKind;
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};
use crate::settings::Grants;

use super::Core;
use super::negotiation::OfferReply;
use super::participant::{SubState, Subscription, Work};
use super::sdp_check::check_offer;

/// What a viewer receives: `publisher`'s tracks, on `mids` (its receive-only m-lines).
#[derive(Clone, Debug)]
pub(crate) struct Viewing {
    /// The user whose tracks the viewer receives.
    pub publisher: String,
    /// The viewer's receive-only audio and video m-lines, in offer order.
    pub mids: Vec<(Mid, TrackKind)>,
}

impl Core {
    /// A viewer's offer (it joins on the first): the answer binds `publisher`'s tracks in the
    /// room to the offer's receive-only m-lines; there is never a server offer. A viewer this
    /// call seated is removed again when its offer is refused.
    pub fn offer_viewing(
        &mut self,
        now: Instant,
        room: RoomKey,
        participant: ParticipantKey,
        publisher: &str,
        started: Instant,
        sdp: &str,
    ) -> Result<OfferReply, Error> {
        let present = self
            .rooms
            .get(&room)
            .is_some_and(|r| r.members.contains_key(&participant));
        if !present {
            let grants = Grants {
                can_publish: false,
                can_subscribe: false,
            };
            self.join(now, room.clone(), participant.clone(), grants, started)?;
        }
        let reply = self.view(now, &room, &participant, publisher, sdp);
        if reply.is_err() && !present {
            let _ = self.leave(now, &room, &participant);
        }
        reply
    }

    fn view(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        publisher: &str,
        sdp: &str,
    ) -> Result<OfferReply, Error> {
        let lines = check_offer(sdp, self.config.limits.max_mlines_per_offer)?;
        let mids: Vec<(Mid, TrackKind)> = lines
            .iter()
            .filter(|l| !l.stopped && !l.sends)
            .filter_map(|l| {
                let kind = match l.kind.as_str() {
                    "audio" => TrackKind::Audio,
                    "video" => TrackKind::Video,
                    _ => return None,
                };
                Some((Mid::from(l.mid.as_deref()?), kind))
            })
            .collect();
        let id = self.session_id(room, participant)?;
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        // Set before the offer so the offer's own processing never queues an offer for it.
        p.viewing = Some(Viewing {
            publisher: publisher.to_owned(),
            mids,
        });
        // A re-offer (an ICE restart) keeps what is bound where it was.
        let reply = self.offer(now, room, participant, sdp, &[])?;
        self.bind_viewer(id);
        self.settle(now);
        Ok(OfferReply {
            answer: reply.answer,
            server_offer: None,
        })
    }

    /// Gives each of the viewer's publisher's tracks it does not receive yet a free m-line of
    /// its kind (see the module docs).
    pub(super) fn bind_viewer(&mut self, id: SessionId) {
        let Some(p) = self.sessions.get(&id) else {
            return;
        };
        let Some(viewing) = p.viewing.clone() else {
            return;
        };
        if !p.negotiated {
            return;
        }
        let mut wanted: Vec<(TrackId, TrackKind)> = self
            .tracks
            .iter()
            .filter(|(k, t)| {
                t.room == p.room
                    && t.publisher_key.user() == viewing.publisher
                    && !p.subs.iter().any(|s| &s.track == *k)
            })
            .map(|(k, t)| (k.clone(), t.kind))
            .collect();
        // Oldest first (`TR_<n>`, n rising), so the first track of a kind takes the first
        // m-line of that kind.
        wanted.sort_by_key(|(k, _)| {
            k.as_str()
                .trim_start_matches("TR_")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        for (track, kind) in wanted {
            let p = self.sessions.get_mut(&id).expect("looked up above");
            let used: Vec<Mid> = p
                .subs
                .iter()
                .filter_map(|s| match s.state {
                    SubState::Open(m)
                    | SubState::Negotiating(m)
                    | SubState::ToStop(m)
                    | SubState::NegotiatingStop(m) => Some(m),
                    SubState::ToOpen => None,
                })
                .collect();
            let Some((mid, _)) = viewing
                .mids
                .iter()
                .find(|(m, k)| *k == kind && !used.contains(m))
            else {
                continue;
            };
            let Some(t) = self.tracks.get_mut(&track) else {
                continue;
            };
            p.subs.push(Subscription::new(
                track.clone(),
                kind,
                t.publisher_key.clone(),
                SubState::Open(*mid),
            ));
            t.subscribers.push(id);
            self.out.work.push_back(Work::Reallocate { session: id });
        }
    }
}
