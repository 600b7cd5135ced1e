//! Webhook events as receivers see them: `{"id", "type", "timestamp", "data"}`, with ids and
//! times only (no tokens, no SDP, no message text).

use serde_json::{Value, json};
use signaling::hub::rfc3339;
use signaling::lifecycle::{Happening, Lifecycle};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One event, before it is stored once per endpoint that wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    /// Unique; the `webhook-id` header, the same on every retry.
    pub id: String,
    /// `call.ended`, ...
    pub kind: &'static str,
    /// What it is ordered within: the room or call id, or `conversation:<id>`.
    pub key: String,
    /// Order within the key; see [`next_position`].
    pub pos: i64,
    pub at: SystemTime,
    pub data: Value,
}

impl WebhookEvent {
    /// A new event with a fresh id and the next position.
    pub fn new(kind: &'static str, key: String, at: SystemTime, data: Value) -> Self {
        Self::with_id(new_event_id(), kind, key, at, data)
    }

    /// An event whose id is derived from what it reports, so that reporting it twice (a chat
    /// send retried after a crash) stores it once.
    pub fn with_id(
        id: String,
        kind: &'static str,
        key: String,
        at: SystemTime,
        data: Value,
    ) -> Self {
        Self {
            id,
            kind,
            key,
            pos: next_position(),
            at,
            data,
        }
    }

    /// The request body: exactly these bytes are signed and sent.
    pub fn body(&self) -> String {
        json!({
            "id": self.id,
            "type": self.kind,
            "timestamp": rfc3339(self.at),
            "data": self.data,
        })
        .to_string()
    }

    /// Unix milliseconds of `at`.
    pub fn at_millis(&self) -> i64 {
        millis(self.at)
    }
}

/// The webhook event for a hub lifecycle event.
pub fn from_lifecycle(event: Lifecycle) -> WebhookEvent {
    let key = event.what.space().to_string();
    let (kind, data) = match event.what {
        Happening::RoomStarted { room } => ("room.started", json!({ "roomId": room })),
        Happening::RoomFinished { room, started_at } => (
            "room.finished",
            json!({
                "roomId": room,
                "startedAt": rfc3339(started_at),
                "durationMs": duration_ms(started_at, event.at),
            }),
        ),
        Happening::ParticipantJoined { space, user } => (
            "participant.joined",
            json!({ "callId": space, "userId": user }),
        ),
        Happening::ParticipantLeft {
            space,
            user,
            reason,
        } => (
            "participant.left",
            json!({ "callId": space, "userId": user, "reason": reason.as_str() }),
        ),
        Happening::CallStarted {
            call,
            conversation,
            call_type,
            initiator,
            invitees,
        } => (
            "call.started",
            json!({
                "callId": call,
                "conversationId": conversation,
                "callType": call_type,
                "initiatorId": initiator,
                "inviteeIds": invitees,
            }),
        ),
        Happening::CallAnswered { call, by } => {
            ("call.answered", json!({ "callId": call, "userId": by }))
        }
        Happening::CallEnded {
            call,
            reason,
            started_at,
            answered_at,
            participants,
        } => (
            "call.ended",
            json!({
                "callId": call,
                "reason": reason.as_str(),
                "startedAt": rfc3339(started_at),
                "answeredAt": answered_at.map(rfc3339),
                "endedAt": rfc3339(event.at),
                // Talk time: from the answer to the end; 0 for a call nobody answered.
                "durationMs": answered_at.map_or(0, |a| duration_ms(a, event.at)),
                "participantIds": participants,
            }),
        ),
    };
    WebhookEvent::new(kind, key, event.at, data)
}

/// A fresh event id: `evt_` and 96 random bits in hex.
pub fn new_event_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    format!("evt_{}", hex::encode(bytes))
}

/// Positions order the events of one key: strictly increasing in this process, and close to
/// the wall clock in microseconds, so that after a failover the new owner of a room (whose
/// clock is within NTP error of the old one's, seconds later) orders its events after the old
/// owner's.
pub fn next_position() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallId, EndReason};
    use std::time::Duration;

    #[test]
    fn positions_only_go_up() {
        let a = next_position();
        let b = next_position();
        assert!(b > a);
    }

    #[test]
    fn call_ended_reports_talk_time_and_everyone() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let event = from_lifecycle(Lifecycle {
            at: start + Duration::from_secs(70),
            what: Happening::CallEnded {
                call: CallId("c1".into()),
                reason: EndReason::Ended,
                started_at: start,
                answered_at: Some(start + Duration::from_secs(10)),
                participants: vec!["alice".into(), "bob".into()],
            },
        });
        assert_eq!(event.kind, "call.ended");
        assert_eq!(event.key, "c1");
        let body: Value = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(body["type"], "call.ended");
        assert_eq!(body["id"], event.id.as_str());
        assert_eq!(body["data"]["durationMs"], 60_000);
        assert_eq!(body["data"]["participantIds"], json!(["alice", "bob"]));
        assert_eq!(body["data"]["reason"], "ended");
        assert_eq!(body["timestamp"], "2023-11-14T22:14:30.000Z");
    }
}
