//! Retention: old messages expire in the background; membership, cursors and numbering stay.

use std::time::Duration;

use chat::{HistoryQuery, SequenceNumber};

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
    assert_eq!(h.chat.sweep_expired().await.unwrap(), 0, "30 days are kept");
    h.clock.advance(Duration::from_millis(2));
    assert_eq!(h.chat.sweep_expired().await.unwrap(), 1);

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
    loop {
        let history = h
            .chat
            .history(&alice, &call, HistoryQuery::default())
            .await
            .unwrap();
        if history.messages.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeper did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("sweeper stops on shutdown")
        .unwrap();
}

crate::both_backends!(
    sweep_deletes_only_expired_messages,
    background_sweeper_runs_until_shutdown
);
