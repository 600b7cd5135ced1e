//! `typing:start|stop` → `typing {userId, conversationId, isTyping}`, and the 10 s expiry.

use std::time::Duration;

use chat::{Change, TypingAction};

use crate::harness::{Backend, Harness, say, user};

async fn typing_expires_without_refresh(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;

    let started = h
        .chat
        .typing(&alice, &call, TypingAction::Start)
        .await
        .unwrap();
    assert_eq!(started.change, Change::Applied);
    assert_eq!(started.recipients.len(), 2);
    assert_eq!(
        serde_json::to_value(&started.event).unwrap(),
        serde_json::json!({"userId": "alice", "conversationId": "call-1", "isTyping": true})
    );
    h.chat
        .typing(&bob, &call, TypingAction::Start)
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(6));
    let refreshed = h
        .chat
        .typing(&alice, &call, TypingAction::Start)
        .await
        .unwrap();
    assert_eq!(refreshed.change, Change::Unchanged);
    assert!(h.chat.expire_typing().await.unwrap().is_empty());

    // Bob never refreshed: gone at 10 s. Alice refreshed at 6 s: gone at 16 s.
    h.clock.advance(Duration::from_secs(4));
    let expired = h.chat.expire_typing().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        serde_json::to_value(&expired[0].event).unwrap(),
        serde_json::json!({"userId": "bob", "conversationId": "call-1", "isTyping": false})
    );
    assert_eq!(expired[0].recipients.len(), 2);
    assert!(h.chat.next_typing_deadline().is_some());
    h.clock.advance(Duration::from_secs(6));
    let expired = h.chat.expire_typing().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.user_id, alice.user_id);
    assert!(h.chat.next_typing_deadline().is_none());
}

async fn stop_and_send_end_typing(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    h.chat
        .typing(&alice, &call, TypingAction::Start)
        .await
        .unwrap();
    let stopped = h
        .chat
        .typing(&alice, &call, TypingAction::Stop)
        .await
        .unwrap();
    assert_eq!(stopped.change, Change::Applied);
    assert!(!stopped.event.is_typing);
    let again = h
        .chat
        .typing(&alice, &call, TypingAction::Stop)
        .await
        .unwrap();
    assert_eq!(again.change, Change::Unchanged);

    h.chat
        .typing(&alice, &call, TypingAction::Start)
        .await
        .unwrap();
    let sent = say(&h.chat, &alice, &call, "done typing").await;
    let typing = sent.typing_stopped.expect("sending clears the indicator");
    assert!(!typing.is_typing);
    h.clock.advance(Duration::from_secs(30));
    assert!(h.chat.expire_typing().await.unwrap().is_empty());
}

crate::both_backends!(typing_expires_without_refresh, stop_and_send_end_typing);
