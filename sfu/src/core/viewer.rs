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
//!
//! A viewer of the room's **active speaker** ([`Viewed::ActiveSpeaker`]) starts with the room's
//! current speaker (or, in a quiet room, the first publisher), and moves to whoever the
//! speaker detector next puts first: its subscriptions are dropped and the new speaker's
//! tracks bound to the same m-lines, each carrying on the rewriters of the one it replaces,
//! so the viewer's streams continue (sequence numbers without a jump, timestamps by the time
//! that passed; video resumes at the new speaker's next keyframe, which is asked for).

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::Mid;

use crate::error::Error;
use crate::event::TrackKind;
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};
use crate::settings::Grants;

use super::Core;
use super::forward::{SeqRewriter, StreamRewriter};
use super::negotiation::OfferReply;
use super::participant::{SubState, Subscription, Work};
use super::sdp_check::check_offer;

/// Whose tracks a viewer receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewed {
    /// One user's.
    User(String),
    /// The room's active speaker's, following it as it changes.
    ActiveSpeaker,
}

/// What a viewer receives: `publisher`'s tracks, on `mids` (its receive-only m-lines).
#[derive(Clone, Debug)]
pub(crate) struct Viewing {
    /// Whom it follows.
    pub viewed: Viewed,
    /// The user whose tracks it receives now (`None`: nobody to follow yet).
    pub publisher: Option<String>,
    /// The viewer's receive-only audio and video m-lines, in offer order.
    pub mids: Vec<(Mid, TrackKind)>,
    /// Rewriters of subscriptions dropped when the followed speaker changed, by m-line, for
    /// the next track bound there.
    pub carried: HashMap<Mid, (SeqRewriter, StreamRewriter)>,
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
        viewed: Viewed,
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
                can_publish_data: false,
            };
            self.join(now, room.clone(), participant.clone(), grants, started)?;
        }
        let reply = self.view(now, &room, &participant, viewed, sdp);
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
        viewed: Viewed,
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
        // A re-offer (an ICE restart) keeps whom it follows now.
        let publisher = match (&viewed, p.viewing.take()) {
            (Viewed::User(user), _) => Some(user.clone()),
            (Viewed::ActiveSpeaker, Some(before)) => before.publisher,
            (Viewed::ActiveSpeaker, None) => None,
        };
        p.viewing = Some(Viewing {
            viewed,
            publisher,
            mids,
            carried: HashMap::new(),
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
        let room = p.room.clone();
        let publisher = match viewing.publisher.clone() {
            Some(user) => user,
            None => match self.speaker_to_follow(&room, &p.key) {
                Some(user) => {
                    let p = self.sessions.get_mut(&id).expect("looked up above");
                    if let Some(v) = p.viewing.as_mut() {
                        v.publisher = Some(user.clone());
                    }
                    user
                }
                None => return,
            },
        };
        let p = self.sessions.get(&id).expect("looked up above");
        let mut wanted: Vec<(TrackId, TrackKind)> = self
            .tracks
            .iter()
            .filter(|(k, t)| {
                t.room == p.room
                    && t.publisher_key.user() == publisher
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
            let mut sub = Subscription::new(
                track.clone(),
                kind,
                t.publisher_key.clone(),
                SubState::Open(*mid),
            );
            if let Some((seq, stream)) = p.viewing.as_mut().and_then(|v| v.carried.remove(mid)) {
                sub.seq = seq;
                sub.stream = stream;
            }
            p.subs.push(sub);
            t.subscribers.push(id);
            self.out.work.push_back(Work::Reallocate { session: id });
        }
    }

    /// Whom a viewer of the active speaker in `room` should follow: the detector's current
    /// first speaker, else the publisher of the room's oldest track (never the viewer).
    fn speaker_to_follow(&self, room: &RoomKey, viewer: &ParticipantKey) -> Option<String> {
        let speaking = self
            .rooms
            .get(room)
            .and_then(|r| r.speakers.dominant())
            .filter(|k| *k != viewer)
            .map(|k| k.user().to_owned());
        speaking.or_else(|| {
            self.tracks
                .iter()
                .filter(|(_, t)| &t.room == room && &t.publisher_key != viewer)
                .min_by_key(|(k, _)| {
                    k.as_str()
                        .trim_start_matches("TR_")
                        .parse::<u64>()
                        .unwrap_or(u64::MAX)
                })
                .map(|(_, t)| t.publisher_key.user().to_owned())
        })
    }

    /// The room's active speaker changed: viewers following it move to the new one.
    pub(super) fn follow_speaker(&mut self, room: &RoomKey) {
        let Some(speaker) = self
            .rooms
            .get(room)
            .and_then(|r| r.speakers.dominant())
            .cloned()
        else {
            // Nobody speaks: viewers stay with the last speaker.
            return;
        };
        let viewers: Vec<SessionId> = self.rooms[room]
            .members
            .values()
            .copied()
            .filter(|s| {
                self.sessions[s].viewing.as_ref().is_some_and(|v| {
                    v.viewed == Viewed::ActiveSpeaker
                        && v.publisher.as_deref() != Some(speaker.user())
                        && self.sessions[s].key != speaker
                })
            })
            .collect();
        for id in viewers {
            let p = self.sessions.get_mut(&id).expect("room members exist");
            let subs = std::mem::take(&mut p.subs);
            let Some(viewing) = p.viewing.as_mut() else {
                continue;
            };
            for mut sub in subs {
                if let SubState::Open(mid) = sub.state {
                    sub.stream.expect_new_source();
                    viewing.carried.insert(mid, (sub.seq, sub.stream));
                }
                if let Some(t) = self.tracks.get_mut(&sub.track) {
                    t.subscribers.retain(|s| *s != id);
                }
            }
            viewing.publisher = Some(speaker.user().to_owned());
            self.bind_viewer(id);
        }
    }
}
