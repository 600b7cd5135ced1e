//! Retention: old messages expire in the background; membership, cursors and numbering stay.

use std::time::Duration;

use chat::{ErrorCode, HistoryQuery, MemberRole, SequenceNumber};

use crate::harness::{Backend, Harness, say, user};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn sweep_deletes_only_expired_messages(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let old = say(&h.chat, &alice, &call, "old").await.ack.message_id;
    h.chat.react(&bob, &old, "👍").await.unwrap();
    h.chat.mark_read(&bob, &call, &old).await.unwrap();
    h.clock.advance(20 * DAY);
    say(&h.chat, &bob, &call, "newer").await;

    h.clock.advance(10 * DAY - Duration::from_millis(1));
    assert_eq!(
        h.chat.sweep_expired().await.unwrap().messages,
        0,
        "30 days are kept"
    );
    h.clock.advance(Duration::from_millis(2));
    assert_eq!(h.chat.sweep_expired().await.unwrap().messages, 1);

    let history = h
        .chat
        .history(&bob, &call, HistoryQuery::default())
        .await
        .unwrap();
    let contents: Vec<&str> = history
        .messages
        .iter()
        .map(|m| m.message.content.as_str())
        .collect();
    assert_eq!(contents, ["newer"]);
    assert!(!history.has_more);
    // Members keep access and numbering continues where it was.
    let next = say(&h.chat, &alice, &call, "still here").await;
    assert_eq!(next.ack.sequence_number, SequenceNumber::new(3));
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 1);
}

async fn background_sweeper_runs_until_shutdown(backend: Backend) {
    let h = Harness::with(backend, |s| {
        s.retention = Some(Duration::from_secs(3600));
        s.retention_sweep_interval = Duration::from_millis(20);
    })
    .await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    for i in 0..3 {
        say(&h.chat, &alice, &call, &format!("{i}")).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = h.chat.spawn_retention_sweeper(async {
        let _ = stopped.await;
    });
    h.clock.advance(Duration::from_secs(3601));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The messages expire, and then the conversation, now empty and idle, goes too.
    while h.chat.is_member(&call, &alice.user_id).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeper did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("sweeper stops on shutdown")
        .unwrap();
}

/// Conversation and member rows are written for every call, chat or not; idle empty ones go.
async fn idle_empty_conversations_are_swept_with_their_members(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let silent = h.conversation("call-silent", &alice, &[&bob]).await;
    let rejoined = h.conversation("call-rejoined", &alice, &[&bob]).await;
    let chatty = h.conversation("call-chatty", &alice, &[&bob]).await;
    h.clock.advance(20 * DAY);
    // A join is activity: bob reconnects to one call, and writes in another.
    h.chat
        .add_member(&rejoined, &bob.user_id, MemberRole::Member)
        .await
        .unwrap();
    say(&h.chat, &bob, &chatty, "still talking").await;

    h.clock.advance(10 * DAY - Duration::from_millis(1));
    let swept = h.chat.sweep_expired().await.unwrap();
    assert_eq!(swept.conversations, 0, "idle for less than 30 days");
    h.clock.advance(Duration::from_millis(2));
    let swept = h.chat.sweep_expired().await.unwrap();
    assert_eq!((swept.messages, swept.conversations), (0, 1));
    assert!(!h.chat.is_member(&silent, &alice.user_id).await.unwrap());
    assert!(
        h.chat.members(&silent).await.unwrap().is_empty(),
        "members go too"
    );
    assert!(h.chat.is_member(&rejoined, &alice.user_id).await.unwrap());
    assert!(h.chat.is_member(&chatty, &bob.user_id).await.unwrap());

    // 30 days after the last activity the message expires, then its conversation goes.
    h.clock.advance(20 * DAY);
    let swept = h.chat.sweep_expired().await.unwrap();
    assert_eq!((swept.messages, swept.conversations), (1, 2));
    assert!(!h.chat.is_member(&chatty, &bob.user_id).await.unwrap());
    let error = h
        .chat
        .send(&bob, crate::harness::text(&chatty, "hello?", "late"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);

    // An id used again (a room name) starts a new conversation.
    let again = h.conversation("call-chatty", &alice, &[&bob]).await;
    let first = say(&h.chat, &alice, &again, "new start").await;
    assert_eq!(first.ack.sequence_number, SequenceNumber::new(1));
}

crate::both_backends!(
    sweep_deletes_only_expired_messages,
    background_sweeper_runs_until_shutdown,
    idle_empty_conversations_are_swept_with_their_members
);
