//! `message:history`: late joiners, paging with `beforeSequence` and `hasMore`, limits, and the
//! state history carries (edits, deletes, reactions).

use std::time::Duration;

use chat::{ErrorCode, HistoryQuery, MemberRole, SequenceNumber};

use crate::harness::{Backend, Harness, say, user};

async fn late_joiner_pages_through_everything(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    for i in 1..=25 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        say(&h.chat, who, &call, &format!("message {i}")).await;
    }
    // Carol cannot read before she joins…
    let refused = h.chat.history(&carol, &call, HistoryQuery::default()).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::NotMember);
    // …and sees everything once she does.
    h.chat
        .add_member(&call, &carol.user_id, MemberRole::Member)
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = h
            .chat
            .history(
                &carol,
                &call,
                HistoryQuery {
                    before,
                    limit: Some(10),
                },
            )
            .await
            .unwrap();
        let seqs: Vec<u64> = page
            .messages
            .iter()
            .map(|m| m.message.sequence_number.value())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "ascending: {seqs:?}"
        );
        seen.splice(0..0, seqs);
        if !page.has_more {
            break;
        }
        before = Some(page.messages[0].message.sequence_number);
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());

    let newest = h
        .chat
        .history(
            &carol,
            &call,
            HistoryQuery {
                before: None,
                limit: Some(5),
            },
        )
        .await
        .unwrap();
    assert!(newest.has_more);
    assert_eq!(
        newest.messages[0].message.sequence_number,
        SequenceNumber::new(21)
    );
    assert_eq!(newest.messages[4].message.content, "message 25");

    let exact = h
        .chat
        .history(
            &carol,
            &call,
            HistoryQuery {
                before: Some(SequenceNumber::new(11)),
                limit: Some(10),
            },
        )
        .await
        .unwrap();
    assert_eq!(exact.messages.len(), 10);
    assert!(!exact.has_more, "exactly the first ten: nothing older");
}

async fn members_keep_access_after_the_call(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    say(&h.chat, &alice, &call, "notes").await;
    // The call ends (nothing to tell chat), a day passes, and the app restarts.
    h.clock.advance(Duration::from_secs(24 * 3600));
    let restarted = h.another_process().await;
    let history = restarted
        .history(&bob, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
}

async fn limit_is_clamped_and_zero_refused(backend: Backend) {
    let h = Harness::with(backend, |s| s.message_rate = None).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    for i in 0..120 {
        say(&h.chat, &alice, &call, &format!("m{i}")).await;
    }
    let page = h
        .chat
        .history(
            &alice,
            &call,
            HistoryQuery {
                before: None,
                limit: Some(1000),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 100);
    assert!(page.has_more);
    let default = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(default.messages.len(), 50);
    let zero = h
        .chat
        .history(
            &alice,
            &call,
            HistoryQuery {
                before: None,
                limit: Some(0),
            },
        )
        .await;
    assert_eq!(zero.unwrap_err().code(), ErrorCode::InvalidPayload);
}

async fn history_shows_edits_deletes_and_reactions(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let edited = say(&h.chat, &alice, &call, "helo").await.ack.message_id;
    let deleted = say(&h.chat, &bob, &call, "oops").await.ack.message_id;
    let liked = say(&h.chat, &bob, &call, "nice").await.ack.message_id;
    h.chat.edit(&alice, &edited, "hello".into()).await.unwrap();
    h.chat.delete(&bob, &deleted).await.unwrap();
    for (who, emoji) in [(&bob, "👍"), (&alice, "👍"), (&bob, "🎉")] {
        h.chat.react(who, &liked, emoji).await.unwrap();
        h.clock.advance(Duration::from_millis(5));
    }

    let history = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    let json = serde_json::to_value(&history).unwrap();
    assert_eq!(json["hasMore"], false);
    let messages = json["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "hello");
    assert!(messages[0]["editedAt"].is_string());
    assert!(messages[0]["deletedAt"].is_null());
    assert_eq!(messages[1]["content"], "");
    assert!(messages[1]["deletedAt"].is_string());
    assert_eq!(
        messages[1]["sequenceNumber"], 2,
        "deleted messages keep their place"
    );
    assert_eq!(messages[1]["senderId"], "bob", "and their metadata");
    assert_eq!(
        messages[2]["reactions"],
        serde_json::json!([
            {"emoji": "👍", "count": 2, "userIds": ["bob", "alice"]},
            {"emoji": "🎉", "count": 1, "userIds": ["bob"]},
        ])
    );
    assert_eq!(messages[0]["reactions"], serde_json::json!([]));
}

crate::both_backends!(
    late_joiner_pages_through_everything,
    members_keep_access_after_the_call,
    limit_is_clamped_and_zero_refused,
    history_shows_edits_deletes_and_reactions,
);
