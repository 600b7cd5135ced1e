//! One call's state machine.
//!
//! A [`Call`] knows its members (the initiator and the invitees), which of their devices are in
//! the call, and its phase. Every transition takes the current time and returns
//! [`Notice`]s: server events addressed to an [`Audience`]. The hub resolves audiences to
//! connections; the call never sees a socket. This keeps every rule testable with plain values.
//!
//! Lifecycle:
//! ```text
//!            initiate                 first accept
//!   (none) ───────────▶ Ringing ─────────────────────▶ Active
//!                          │  all rejected / cancelled     │ last participant leaves,
//!                          │  / ring timeout / max length  │ 1:1 hang-up, grace expiry,
//!                          ▼                               ▼ max duration
//!                        Ended ◀────────────────────────────
//! ```
//! Member states: `Ringing` → `Joined` (accept) or `Declined` (reject) or `Missed` (ring
//! timeout); `Joined` ↔ `Reconnecting` (last device dropped / came back within the grace period);
//! `Joined`/`Reconnecting` → `Left`.
//!
//! Hang-up rule: in a 1:1 call (one invitee) `call:end` from either side ends the call for both.
//! In a group call it means "I leave"; the call ends when nobody is left in it.

use protocol::{
    CallAccepted, CallEnded, CallId, CallIncoming, CallInitiated, CallMissed, CallMode,
    CallModeChanged, CallOnly, CallResumable, CallType, CallUser, ConnectionId, ConversationId,
    EndReason, ErrorCode, Failure, IceServer, MediaToggled, MediaType, ParticipantJoined,
    RelayedSignal, ServerEvent, UserId, UserRef,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Who a notice goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every connected device of the user.
    User(UserId),
    /// Every device of the user except one.
    UserExcept(UserId, ConnectionId),
    /// The user's devices that are in this call.
    InCall(UserId),
    /// One device.
    Device(ConnectionId),
}

/// A server event for an audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub to: Audience,
    pub event: ServerEvent,
}

/// Where the call is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Active,
    Ended(EndReason),
}

/// Is this a 1:1 call or a group call; decides what `call:end` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallShape {
    OneToOne,
    Group,
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Invitee,
}

/// A member's state in the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Ringing,
    Declined,
    Missed,
    Joined,
    /// Joined, but every device dropped; back in by `until` or gone.
    Reconnecting {
        until: Instant,
    },
    Left,
}

/// One member (initiator or invitee).
#[derive(Clone, Debug)]
pub struct Member {
    pub role: Role,
    pub state: MemberState,
    /// Devices in the call, with when each joined; non-empty exactly when `state` is `Joined`.
    pub devices: BTreeMap<ConnectionId, Instant>,
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
    /// A device confirmed it rings; the caller has been told once.
    pub ringing_confirmed: bool,
}

impl Member {
    fn new(role: Role, state: MemberState) -> Self {
        Self {
            role,
            state,
            devices: BTreeMap::new(),
            audio: true,
            video: true,
            screen: false,
            ringing_confirmed: false,
        }
    }

    /// In the call now or holding their place during the grace period.
    pub fn is_present(&self) -> bool {
        matches!(
            self.state,
            MemberState::Joined | MemberState::Reconnecting { .. }
        )
    }
}

/// Timing rules of a call, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct CallRules {
    pub ring_timeout: Duration,
    pub max_duration: Duration,
    pub reconnect_grace: Duration,
    /// Most participants present while the call stays peer-to-peer.
    pub p2p_max: usize,
}

/// What a call needs to know about users it does not own.
pub trait Directory {
    /// The display name shown to others.
    fn name_of(&self, user: &UserId) -> String;
    /// The `iceServers` list for the user (with fresh TURN credentials).
    fn ice_for(&self, user: &UserId) -> Vec<IceServer>;
}

/// What a transition needs besides the call: the time, its rules, and the user directory.
pub struct Context<'a> {
    pub now: Instant,
    pub rules: CallRules,
    pub dir: &'a dyn Directory,
}

impl<'a> Context<'a> {
    pub fn new(now: Instant, rules: CallRules, dir: &'a dyn Directory) -> Self {
        Self { now, rules, dir }
    }
}

/// A call; see the module docs for its lifecycle.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: CallId,
    pub conversation_id: ConversationId,
    pub call_type: CallType,
    pub initiator: UserId,
    pub shape: CallShape,
    /// Where media flows; switches from P2P to SFU once, when the call outgrows P2P.
    pub mode: CallMode,
    pub phase: Phase,
    pub members: BTreeMap<UserId, Member>,
    pub ring_deadline: Instant,
    pub end_deadline: Instant,
}

type Outcome = Result<Vec<Notice>, Failure>;

impl Call {
    /// Starts ringing `invitees` on behalf of `initiator`'s `device`. The caller has already
    /// removed the initiator from `invitees`, de-duplicated them and checked the limits.
    #[allow(clippy::too_many_arguments)]
    pub fn initiate(
        id: CallId,
        conversation_id: ConversationId,
        call_type: CallType,
        mode: Option<CallMode>,
        initiator: UserId,
        device: ConnectionId,
        invitees: Vec<UserId>,
        ctx: &Context<'_>,
    ) -> (Call, Vec<Notice>) {
        let mode = match mode {
            Some(m) => m,
            None if ctx.rules.p2p_max == 0 => CallMode::Sfu,
            None => CallMode::P2p,
        };
        let shape = if invitees.len() == 1 {
            CallShape::OneToOne
        } else {
            CallShape::Group
        };
        let mut members = BTreeMap::new();
        let mut me = Member::new(Role::Initiator, MemberState::Joined);
        me.devices.insert(device, ctx.now);
        members.insert(initiator.clone(), me);
        for invitee in &invitees {
            members.insert(
                invitee.clone(),
                Member::new(Role::Invitee, MemberState::Ringing),
            );
        }
        let call = Call {
            id,
            conversation_id,
            call_type,
            initiator,
            shape,
            mode,
            phase: Phase::Ringing,
            members,
            ring_deadline: ctx.now + ctx.rules.ring_timeout,
            end_deadline: ctx.now + ctx.rules.max_duration,
        };
        let mut notices = vec![Notice {
            to: Audience::Device(device),
            event: ServerEvent::CallInitiated(CallInitiated {
                call_id: call.id.clone(),
                ice_servers: ctx.dir.ice_for(&call.initiator),
            }),
        }];
        for invitee in invitees {
            notices.push(Notice {
                to: Audience::User(invitee),
                event: call.incoming(ctx),
            });
        }
        (call, notices)
    }

    /// `call:accept` from `user` on `device`.
    pub fn accept(&mut self, user: &UserId, device: ConnectionId, ctx: &Context<'_>) -> Outcome {
        self.check_live()?;
        let member = self.member(user)?;
        match (member.role, member.state) {
            (Role::Invitee, MemberState::Ringing) => {}
            // A second device of someone already in, or a return from a reload.
            (_, MemberState::Joined | MemberState::Reconnecting { .. }) => {
                return self.join(user, device, ctx);
            }
            (Role::Invitee, MemberState::Missed | MemberState::Left)
                if self.shape == CallShape::Group =>
            {
                return self.join(user, device, ctx);
            }
            (Role::Initiator, _) => {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    "the initiator cannot accept their own call",
                ));
            }
            (_, state) => {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    format!("cannot accept: you are {}", state_word(state)),
                ));
            }
        }
        let mut notices = vec![Notice {
            to: Audience::UserExcept(user.clone(), device),
            event: ServerEvent::CallAnsweredElsewhere(CallOnly {
                call_id: self.id.clone(),
            }),
        }];
        self.phase = Phase::Active;
        self.admit(user, device, ctx.now);
        for (other, m) in &self.members {
            if other == user || m.state != MemberState::Joined {
                continue;
            }
            notices.push(Notice {
                to: Audience::InCall(other.clone()),
                event: ServerEvent::CallAccepted(CallAccepted {
                    call_id: self.id.clone(),
                    user_id: user.clone(),
                    ice_servers: ctx.dir.ice_for(other),
                }),
            });
            notices.push(self.to_in_call(other, self.joined_event(user, ctx)));
        }
        notices.extend(self.grow(ctx));
        Ok(notices)
    }

    /// `call:join`: a member takes (back) their place in a live call with this device. Used
    /// after a reload, for a second device, and for a late joiner of a group call.
    pub fn join(&mut self, user: &UserId, device: ConnectionId, ctx: &Context<'_>) -> Outcome {
        self.check_live()?;
        let member = self.member(user)?;
        let announce = match member.state {
            MemberState::Joined => member.devices.is_empty(),
            MemberState::Reconnecting { .. } => true,
            MemberState::Left | MemberState::Missed if self.shape == CallShape::Group => true,
            MemberState::Ringing if self.phase == Phase::Active => {
                return self.accept(user, device, ctx);
            }
            state => {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    format!("cannot join: you are {}", state_word(state)),
                ));
            }
        };
        self.admit(user, device, ctx.now);
        let mut notices = Vec::new();
        if announce {
            // Peers learn of the (new) device so they negotiate with it afresh.
            for (other, m) in &self.members {
                if other != user && m.state == MemberState::Joined {
                    notices.push(self.to_in_call(other, self.joined_event(user, ctx)));
                }
            }
        }
        notices.extend(self.grow(ctx));
        Ok(notices)
    }

    /// Switches a P2P call that outgrew `p2p_max` to the SFU, telling everyone in it.
    fn grow(&mut self, ctx: &Context<'_>) -> Vec<Notice> {
        let present = self.members.values().filter(|m| m.is_present()).count();
        if self.mode != CallMode::P2p || present <= ctx.rules.p2p_max {
            return Vec::new();
        }
        self.mode = CallMode::Sfu;
        let event = ServerEvent::CallModeChanged(CallModeChanged {
            call_id: self.id.clone(),
            mode: CallMode::Sfu,
        });
        self.members
            .iter()
            .filter(|(_, m)| m.state == MemberState::Joined)
            .map(|(u, _)| self.to_in_call(u, event.clone()))
            .collect()
    }

    /// Whether `device` of `user` is in the call now.
    pub fn has_device(&self, user: &UserId, device: ConnectionId) -> bool {
        self.members
            .get(user)
            .is_some_and(|m| m.devices.contains_key(&device))
    }

    /// When `device` of `user` joined, if it is in the call now.
    pub fn joined_at(&self, user: &UserId, device: ConnectionId) -> Option<Instant> {
        self.members.get(user)?.devices.get(&device).copied()
    }

    /// Every device in the call now.
    pub fn devices(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.members
            .values()
            .flat_map(|m| m.devices.keys().copied())
    }

    /// Every device in the call now, with its user.
    pub fn seats(&self) -> impl Iterator<Item = (ConnectionId, &UserId)> + '_ {
        self.members
            .iter()
            .flat_map(|(u, m)| m.devices.keys().map(move |d| (*d, u)))
    }

    /// A device of ringing `user` confirms it rings: the caller hears `call:ringing` once.
    pub fn ringing(&mut self, user: &UserId) -> Outcome {
        self.check_live()?;
        let initiator = self.initiator.clone();
        let member = self.member_mut(user)?;
        if member.state != MemberState::Ringing || member.ringing_confirmed {
            return Ok(Vec::new());
        }
        member.ringing_confirmed = true;
        Ok(vec![self.to_in_call(
            &initiator,
            ServerEvent::CallRinging(CallUser {
                call_id: self.id.clone(),
                user_id: user.clone(),
            }),
        )])
    }

    /// `call:reject` from `user` on `device`.
    pub fn reject(&mut self, user: &UserId, ctx: &Context<'_>) -> Outcome {
        self.check_live()?;
        let member = self.member_mut(user)?;
        if member.state != MemberState::Ringing {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                format!("cannot reject: you are {}", state_word(member.state)),
            ));
        }
        member.state = MemberState::Declined;
        let rejected = ServerEvent::CallRejected(CallUser {
            call_id: self.id.clone(),
            user_id: user.clone(),
        });
        // The rejecting user's devices stop ringing; those in the call learn who declined.
        let mut notices = vec![Notice {
            to: Audience::User(user.clone()),
            event: rejected.clone(),
        }];
        for (other, m) in &self.members {
            if m.state == MemberState::Joined {
                notices.push(self.to_in_call(other, rejected.clone()));
            }
        }
        let anyone_ringing = self
            .members
            .values()
            .any(|m| m.state == MemberState::Ringing);
        if self.phase == Phase::Ringing && !anyone_ringing {
            notices.extend(self.end(EndReason::Rejected, ctx));
        }
        Ok(notices)
    }

    /// `call:end` from `user`: hang up (1:1), cancel (initiator while ringing), decline (an
    /// invitee still ringing) or leave (group call).
    pub fn hang_up(&mut self, user: &UserId, ctx: &Context<'_>) -> Outcome {
        self.check_live()?;
        let member = self.member(user)?;
        match (member.role, member.state, self.phase) {
            (Role::Invitee, MemberState::Ringing, _) => self.reject(user, ctx),
            (Role::Initiator, _, Phase::Ringing) => Ok(self.end(EndReason::Ended, ctx)),
            (_, MemberState::Joined | MemberState::Reconnecting { .. }, _) => {
                if self.shape == CallShape::OneToOne {
                    Ok(self.end(EndReason::Ended, ctx))
                } else {
                    Ok(self.leave(user, EndReason::Ended, ctx))
                }
            }
            (_, state, _) => Err(Failure::new(
                ErrorCode::InvalidState,
                format!("cannot end: you are {}", state_word(state)),
            )),
        }
    }

    /// The server API removes `user`: a present member leaves (their devices hear
    /// `call:ended` with reason `removed`), which ends a 1:1 call for everyone (`terminated`);
    /// a member still being rung stops ringing as if they had declined.
    pub fn remove(&mut self, user: &UserId, ctx: &Context<'_>) -> Outcome {
        self.check_live()?;
        let member = self.member(user)?;
        match member.state {
            MemberState::Ringing => self.reject(user, ctx),
            MemberState::Joined | MemberState::Reconnecting { .. } => {
                if self.shape == CallShape::OneToOne {
                    let mut notices = self.end(EndReason::Terminated, ctx);
                    for n in &mut notices {
                        if n.to == Audience::User(user.clone())
                            && let ServerEvent::CallEnded(e) = &mut n.event
                        {
                            e.reason = EndReason::Removed;
                        }
                    }
                    Ok(notices)
                } else {
                    Ok(self.leave_as(user, EndReason::Removed, EndReason::Terminated, ctx))
                }
            }
            state => Err(Failure::new(
                ErrorCode::InvalidState,
                format!("cannot remove: the participant is {}", state_word(state)),
            )),
        }
    }

    /// A device of `user` disconnected. Starts the grace period if it was their last device in
    /// the call.
    pub fn device_lost(&mut self, user: &UserId, device: ConnectionId, grace_until: Instant) {
        let Some(member) = self.members.get_mut(user) else {
            return;
        };
        if member.devices.remove(&device).is_some() && member.devices.is_empty() {
            member.state = MemberState::Reconnecting { until: grace_until };
        }
    }

    /// Runs the timers due at `ctx.now`: ring timeout, reconnect grace, maximum duration.
    pub fn tick(&mut self, ctx: &Context<'_>) -> Vec<Notice> {
        let mut notices = Vec::new();
        if matches!(self.phase, Phase::Ended(_)) {
            return notices;
        }
        if ctx.now >= self.end_deadline {
            return self.end(EndReason::Timeout, ctx);
        }
        if ctx.now >= self.ring_deadline {
            if self.phase == Phase::Ringing {
                return self.end(EndReason::Missed, ctx);
            }
            for (user, m) in self.members.iter_mut() {
                if m.state == MemberState::Ringing {
                    m.state = MemberState::Missed;
                    notices.push(Notice {
                        to: Audience::User(user.clone()),
                        event: ServerEvent::CallMissed(CallMissed {
                            call_id: self.id.clone(),
                            from: UserRef {
                                user_id: self.initiator.clone(),
                                name: ctx.dir.name_of(&self.initiator),
                            },
                        }),
                    });
                    // Stops the ringing UI; the call goes on for the others.
                    notices.push(Notice {
                        to: Audience::User(user.clone()),
                        event: ServerEvent::CallEnded(CallEnded {
                            call_id: self.id.clone(),
                            reason: EndReason::Missed,
                        }),
                    });
                }
            }
        }
        let expired: Vec<UserId> = self
            .members
            .iter()
            .filter(
                |(_, m)| matches!(m.state, MemberState::Reconnecting { until } if until <= ctx.now),
            )
            .map(|(u, _)| u.clone())
            .collect();
        for user in expired {
            if matches!(self.phase, Phase::Ended(_)) {
                break;
            }
            // A lost 1:1 peer, or a caller lost while ringing, ends the call; a group goes on.
            let fatal = (self.shape == CallShape::OneToOne && self.phase == Phase::Active)
                || (self.phase == Phase::Ringing && user == self.initiator);
            if fatal {
                notices.extend(self.end(EndReason::Failed, ctx));
            } else {
                notices.extend(self.leave(&user, EndReason::Failed, ctx));
            }
        }
        notices
    }

    /// The earliest instant at which [`Call::tick`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Ended(_)) {
            return None;
        }
        let mut next = self.end_deadline;
        if self
            .members
            .values()
            .any(|m| m.state == MemberState::Ringing)
        {
            next = next.min(self.ring_deadline);
        }
        for m in self.members.values() {
            if let MemberState::Reconnecting { until } = m.state {
                next = next.min(until);
            }
        }
        Some(next)
    }

    /// Checks that `user` on `device` may signal in this call, and returns the audience for a
    /// relayed `offer`/`answer`/`ice-candidate` to `target`.
    pub fn relay(
        &self,
        user: &UserId,
        device: ConnectionId,
        target: Option<&UserId>,
        kind: &str,
        payload: serde_json::Value,
    ) -> Outcome {
        self.check_live()?;
        self.check_in_call(user, device)?;
        let Some(target) = target else {
            return Err(Failure::new(
                ErrorCode::InvalidPayload,
                "`targetUserId` is required in a peer-to-peer call (without it, signals go to the SFU)",
            ));
        };
        if target == user {
            return Err(Failure::new(
                ErrorCode::InvalidPayload,
                "cannot signal yourself",
            ));
        }
        match self.members.get(target) {
            None => Err(Failure::new(
                ErrorCode::Forbidden,
                "the target is not a member of this call",
            )),
            Some(m) if m.state != MemberState::Joined => Err(Failure::new(
                ErrorCode::InvalidState,
                format!("the target is {}", state_word(m.state)),
            )),
            Some(_) => {
                let field = match kind {
                    "offer" => "offer",
                    "answer" => "answer",
                    _ => "candidate",
                };
                let mut map = serde_json::Map::new();
                map.insert(field.into(), payload);
                let signal = RelayedSignal {
                    call_id: self.id.clone(),
                    from: user.clone(),
                    payload: map,
                };
                let event = match field {
                    "offer" => ServerEvent::Offer(signal),
                    "answer" => ServerEvent::Answer(signal),
                    _ => ServerEvent::IceCandidate(signal),
                };
                Ok(vec![self.to_in_call(target, event)])
            }
        }
    }

    /// `call:media-toggle`.
    pub fn toggle_media(
        &mut self,
        user: &UserId,
        device: ConnectionId,
        media: MediaType,
        enabled: bool,
    ) -> Outcome {
        self.check_live()?;
        self.check_in_call(user, device)?;
        let member = self.member_mut(user)?;
        match media {
            MediaType::Audio => member.audio = enabled,
            MediaType::Video => member.video = enabled,
        }
        let event = ServerEvent::MediaToggled(MediaToggled {
            call_id: self.id.clone(),
            user_id: user.clone(),
            media_type: media,
            enabled,
        });
        Ok(self.to_everyone_in_call_but(device, event))
    }

    /// `screen:share-start` (`sharing = true`) and `screen:share-stop`.
    pub fn screen_share(&mut self, user: &UserId, device: ConnectionId, sharing: bool) -> Outcome {
        self.check_live()?;
        self.check_in_call(user, device)?;
        self.member_mut(user)?.screen = sharing;
        let body = CallUser {
            call_id: self.id.clone(),
            user_id: user.clone(),
        };
        let event = if sharing {
            ServerEvent::ScreenShareStarted(body)
        } else {
            ServerEvent::ScreenShareStopped(body)
        };
        Ok(self.to_everyone_in_call_but(device, event))
    }

    /// Ends the call for everyone still involved.
    pub fn end(&mut self, reason: EndReason, ctx: &Context<'_>) -> Vec<Notice> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Vec::new();
        }
        self.phase = Phase::Ended(reason);
        let mut notices = Vec::new();
        for (user, m) in self.members.iter_mut() {
            // A decliner's devices learn the outcome too when their "no" ended the call.
            let involved = m.is_present()
                || m.state == MemberState::Ringing
                || (reason == EndReason::Rejected && m.state == MemberState::Declined);
            if m.state == MemberState::Ringing {
                m.state = MemberState::Missed;
                if user != &self.initiator {
                    notices.push(Notice {
                        to: Audience::User(user.clone()),
                        event: ServerEvent::CallMissed(CallMissed {
                            call_id: self.id.clone(),
                            from: UserRef {
                                user_id: self.initiator.clone(),
                                name: ctx.dir.name_of(&self.initiator),
                            },
                        }),
                    });
                }
            }
            if involved {
                notices.push(Notice {
                    to: Audience::User(user.clone()),
                    event: ServerEvent::CallEnded(CallEnded {
                        call_id: self.id.clone(),
                        reason,
                    }),
                });
            }
            // Devices stay listed: notices queued before the end still resolve to them, and
            // the hub forgets the whole call right after.
        }
        notices
    }

    /// The `call:incoming` a ringing invitee's devices get.
    pub fn incoming(&self, ctx: &Context<'_>) -> ServerEvent {
        ServerEvent::CallIncoming(CallIncoming {
            call_id: self.id.clone(),
            from: UserRef {
                user_id: self.initiator.clone(),
                name: ctx.dir.name_of(&self.initiator),
            },
            conversation_id: self.conversation_id.clone(),
            call_type: self.call_type,
        })
    }

    /// The `call:resumable` a reconnecting member's new device gets.
    pub fn resumable(&self, ctx: &Context<'_>) -> ServerEvent {
        ServerEvent::CallResumable(CallResumable {
            call_id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            call_type: self.call_type,
            participants: self.present_refs(None, ctx),
        })
    }

    /// Members present in the call (joined or within grace), optionally leaving one out.
    pub fn present_refs(&self, except: Option<&UserId>, ctx: &Context<'_>) -> Vec<UserRef> {
        self.members
            .iter()
            .filter(|(u, m)| m.is_present() && Some(*u) != except)
            .map(|(u, _)| UserRef {
                user_id: u.clone(),
                name: ctx.dir.name_of(u),
            })
            .collect()
    }

    /// Users whose involvement in the call is not over (present or ringing).
    pub fn involved_users(&self) -> impl Iterator<Item = &UserId> {
        self.members
            .iter()
            .filter(|(_, m)| m.is_present() || m.state == MemberState::Ringing)
            .map(|(u, _)| u)
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    fn leave(
        &mut self,
        user: &UserId,
        reason_if_last: EndReason,
        ctx: &Context<'_>,
    ) -> Vec<Notice> {
        self.leave_as(user, EndReason::Ended, reason_if_last, ctx)
    }

    /// [`Call::leave`], telling the leaver's devices `own` as the reason.
    fn leave_as(
        &mut self,
        user: &UserId,
        own: EndReason,
        reason_if_last: EndReason,
        ctx: &Context<'_>,
    ) -> Vec<Notice> {
        let Some(member) = self.members.get_mut(user) else {
            return Vec::new();
        };
        member.state = MemberState::Left;
        member.devices.clear();
        let mut notices = Vec::new();
        let left = ServerEvent::ParticipantLeft(CallUser {
            call_id: self.id.clone(),
            user_id: user.clone(),
        });
        notices.push(Notice {
            to: Audience::User(user.clone()),
            event: ServerEvent::CallEnded(CallEnded {
                call_id: self.id.clone(),
                reason: own,
            }),
        });
        for (other, m) in &self.members {
            if m.state == MemberState::Joined {
                notices.push(self.to_in_call(other, left.clone()));
            }
        }
        if !self.members.values().any(Member::is_present) {
            notices.extend(self.end(reason_if_last, ctx));
        }
        notices
    }

    fn admit(&mut self, user: &UserId, device: ConnectionId, now: Instant) {
        if let Some(m) = self.members.get_mut(user) {
            m.state = MemberState::Joined;
            m.devices.entry(device).or_insert(now);
        }
    }

    fn joined_event(&self, user: &UserId, ctx: &Context<'_>) -> ServerEvent {
        ServerEvent::ParticipantJoined(ParticipantJoined {
            call_id: self.id.clone(),
            participant: UserRef {
                user_id: user.clone(),
                name: ctx.dir.name_of(user),
            },
        })
    }

    fn to_in_call(&self, user: &UserId, event: ServerEvent) -> Notice {
        Notice {
            to: Audience::InCall(user.clone()),
            event,
        }
    }

    fn to_everyone_in_call_but(&self, device: ConnectionId, event: ServerEvent) -> Vec<Notice> {
        self.members
            .values()
            .flat_map(|m| m.devices.keys())
            .filter(|d| **d != device)
            .map(|d| Notice {
                to: Audience::Device(*d),
                event: event.clone(),
            })
            .collect()
    }

    fn check_live(&self) -> Result<(), Failure> {
        match self.phase {
            Phase::Ended(_) => Err(Failure::new(ErrorCode::InvalidState, "the call has ended")),
            _ => Ok(()),
        }
    }

    fn check_in_call(&self, user: &UserId, device: ConnectionId) -> Result<(), Failure> {
        let member = self.member(user)?;
        if member.devices.contains_key(&device) {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::InvalidState,
                "this connection has not joined the call (call:accept or call:join first)",
            ))
        }
    }

    /// A non-member gets the answer for a call that does not exist (see `no_such_call`).
    fn member(&self, user: &UserId) -> Result<&Member, Failure> {
        self.members.get(user).ok_or_else(super::no_such_call)
    }

    fn member_mut(&mut self, user: &UserId) -> Result<&mut Member, Failure> {
        self.members.get_mut(user).ok_or_else(super::no_such_call)
    }
}

fn state_word(state: MemberState) -> &'static str {
    match state {
        MemberState::Ringing => "still ringing",
        MemberState::Declined => "a member who declined",
        MemberState::Missed => "a member who missed the call",
        MemberState::Joined => "already in the call",
        MemberState::Reconnecting { .. } => "reconnecting",
        MemberState::Left => "a member who left",
    }
}

#[cfg(test)]
mod tests;
