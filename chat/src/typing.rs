//! Who is typing where. In memory and per node (typing is ephemeral; losing it on restart is
//! harmless). Sans-IO: every call takes `now`.
//!
//! Lifecycle of one indicator: [`Typing::start`] creates it with a deadline `now + timeout`;
//! another `start` refreshes the deadline; [`Typing::stop`] removes it; otherwise
//! [`Typing::expire`] removes it once the deadline has passed and reports it, so the wiring can
//! emit `typing {isTyping: false}`. Drive `expire` at [`Typing::next_deadline`] (or every second).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::id::{ConversationId, UserId};

/// Typing indicators with deadlines.
#[derive(Debug)]
pub struct Typing {
    timeout: Duration,
    deadlines: HashMap<(ConversationId, UserId), Instant>,
}

/// What a `start`/`stop` changed, so the wiring can skip redundant broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingChange {
    /// The user was not typing and now is.
    Started,
    /// The user was already typing; the deadline moved.
    Refreshed,
    /// The user was typing and now is not.
    Stopped,
    /// The user was not typing; nothing changed.
    AlreadyStopped,
}

impl Typing {
    /// An empty tracker; indicators last `timeout` without a refresh.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadlines: HashMap::new(),
        }
    }

    /// `typing:start`.
    pub fn start(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        now: Instant,
    ) -> TypingChange {
        let deadline = now + self.timeout;
        match self
            .deadlines
            .insert((conversation.clone(), user.clone()), deadline)
        {
            Some(previous) if previous > now => TypingChange::Refreshed,
            // A lapsed indicator that `expire` has not collected yet counts as stopped.
            _ => TypingChange::Started,
        }
    }

    /// `typing:stop`, or the user sent a message, or left.
    pub fn stop(
        &mut self,
        conversation: &ConversationId,
        user: &UserId,
        now: Instant,
    ) -> TypingChange {
        match self.deadlines.remove(&(conversation.clone(), user.clone())) {
            Some(deadline) if deadline > now => TypingChange::Stopped,
            _ => TypingChange::AlreadyStopped,
        }
    }

    /// Removes and returns every indicator whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(ConversationId, UserId)> {
        let mut expired = Vec::new();
        self.deadlines.retain(|key, deadline| {
            if *deadline <= now {
                expired.push(key.clone());
                false
            } else {
                true
            }
        });
        expired.sort();
        expired
    }

    /// The earliest deadline, when the wiring should call [`Typing::expire`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Users typing in `conversation` at `now`, sorted.
    pub fn typing_in(&self, conversation: &ConversationId, now: Instant) -> Vec<UserId> {
        let mut users: Vec<UserId> = self
            .deadlines
            .iter()
            .filter(|((c, _), deadline)| c == conversation && **deadline > now)
            .map(|((_, user), _)| user.clone())
            .collect();
        users.sort();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (ConversationId, UserId, UserId) {
        (
            ConversationId::parse("room:a").unwrap(),
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        )
    }

    #[test]
    fn expires_after_timeout_without_refresh() {
        let (room, alice, bob) = ids();
        let mut typing = Typing::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(typing.start(&room, &alice, t0), TypingChange::Started);
        assert_eq!(
            typing.start(&room, &bob, t0 + Duration::from_secs(5)),
            TypingChange::Started
        );
        assert_eq!(typing.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(typing.expire(t0 + Duration::from_millis(9_999)).is_empty());
        assert_eq!(
            typing.expire(t0 + Duration::from_secs(10)),
            vec![(room.clone(), alice.clone())]
        );
        assert_eq!(
            typing.typing_in(&room, t0 + Duration::from_secs(10)),
            vec![bob]
        );
    }

    #[test]
    fn refresh_moves_the_deadline_and_stop_clears() {
        let (room, alice, _) = ids();
        let mut typing = Typing::new(Duration::from_secs(10));
        let t0 = Instant::now();
        typing.start(&room, &alice, t0);
        assert_eq!(
            typing.start(&room, &alice, t0 + Duration::from_secs(8)),
            TypingChange::Refreshed
        );
        assert!(typing.expire(t0 + Duration::from_secs(12)).is_empty());
        assert_eq!(
            typing.stop(&room, &alice, t0 + Duration::from_secs(13)),
            TypingChange::Stopped
        );
        assert_eq!(
            typing.stop(&room, &alice, t0 + Duration::from_secs(13)),
            TypingChange::AlreadyStopped
        );
        assert_eq!(typing.next_deadline(), None);
    }
}
