//! Every limit a client can hit, and the refusal of non-members.

use std::time::Duration;

use chat::{ErrorCode, HistoryQuery, RateLimit, TypingAction};

use crate::harness::{Backend, Harness, say, text, user};

async fn content_length_default_and_configured(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    assert_eq!(h.settings.max_content_chars, 4000);
    // Characters, not bytes: 4000 two-byte characters are fine.
    h.chat
        .send(&alice, text(&call, &"é".repeat(4000), "ok"))
        .await
        .unwrap();
    let error = h
        .chat
        .send(&alice, text(&call, &"x".repeat(4001), "long"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ContentTooLong);
    assert_eq!(error.code().as_str(), "content_too_long");
    assert_eq!(error.to_string(), "content is longer than 4000 characters");

    for (content, code) in [
        ("", ErrorCode::InvalidPayload),
        (" \n\t", ErrorCode::InvalidPayload),
        ("nul\0", ErrorCode::InvalidPayload),
    ] {
        let error = h
            .chat
            .send(&alice, text(&call, content, "bad"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{content:?}");
    }

    let small = Harness::with(backend, |s| s.max_content_chars = 10).await;
    let call = small.conversation("call-1", &alice, &[]).await;
    small
        .chat
        .send(&alice, text(&call, "0123456789", "a"))
        .await
        .unwrap();
    let error = small
        .chat
        .send(&alice, text(&call, "0123456789!", "b"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::ContentTooLong);
}

async fn rate_limit_per_user_with_burst(backend: Backend) {
    let h = Harness::with(backend, |s| {
        s.message_rate = Some(RateLimit {
            per_second: 10,
            burst: 5,
        })
    })
    .await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let first = h
        .chat
        .send(&alice, text(&call, "burst 0", "b0"))
        .await
        .unwrap();
    for i in 1..5 {
        say(&h.chat, &alice, &call, &format!("burst {i}")).await;
    }
    let error = h
        .chat
        .send(&alice, text(&call, "one too many", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::RateLimited);
    assert!(error.to_string().contains("100 ms"), "{error}");
    // A retry of a stored message still gets its ack while over the limit.
    let retry = h
        .chat
        .send(&alice, text(&call, "burst 0", "b0"))
        .await
        .unwrap();
    assert_eq!(retry.ack, first.ack);
    assert_eq!(retry.fanout.change, chat::Change::Unchanged);
    // Others are unaffected.
    say(&h.chat, &bob, &call, "me too").await;
    // 10 per second once the burst is spent.
    h.clock.advance(Duration::from_millis(100));
    say(&h.chat, &alice, &call, "refilled").await;
    let error = h
        .chat
        .send(&alice, text(&call, "again", "y"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::RateLimited);
    // The refused message was not stored.
    let history = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 7);
}

async fn default_rate_is_ten_per_second(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let burst = h.settings.message_rate.unwrap().burst;
    for i in 0..burst {
        say(&h.chat, &alice, &call, &format!("{i}")).await;
    }
    let mut accepted = 0;
    for second in 0..3 {
        for i in 0..10 {
            h.clock.advance(Duration::from_millis(100));
            let sent = h
                .chat
                .send(&alice, text(&call, "steady", &format!("s{second}-{i}")))
                .await;
            accepted += usize::from(sent.is_ok());
        }
    }
    assert_eq!(accepted, 30, "10/s sustained");
    let error = h
        .chat
        .send(&alice, text(&call, "extra", "extra"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::RateLimited);
}

async fn non_members_are_refused_everywhere(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, eve) = (user("alice"), user("eve"));
    let call = h.conversation("call-1", &alice, &[]).await;
    let id = say(&h.chat, &alice, &call, "private").await.ack.message_id;
    let codes = [
        h.chat
            .send(&eve, text(&call, "hi", "e1"))
            .await
            .unwrap_err()
            .code(),
        h.chat
            .history(&eve, &call, HistoryQuery::default())
            .await
            .unwrap_err()
            .code(),
        h.chat.edit(&eve, &id, "x".into()).await.unwrap_err().code(),
        h.chat.delete(&eve, &id).await.unwrap_err().code(),
        h.chat.react(&eve, &id, "👍").await.unwrap_err().code(),
        h.chat.unreact(&eve, &id, "👍").await.unwrap_err().code(),
        h.chat.mark_read(&eve, &call, &id).await.unwrap_err().code(),
        h.chat.unread_count(&eve, &call).await.unwrap_err().code(),
        h.chat.reads(&eve, &call, &id).await.unwrap_err().code(),
        h.chat
            .typing(&eve, &call, TypingAction::Start)
            .await
            .unwrap_err()
            .code(),
    ];
    assert!(
        codes.iter().all(|code| *code == ErrorCode::NotMember),
        "{codes:?}"
    );
    // A conversation nobody joined does not exist for sending either.
    let nowhere = chat::ConversationId::parse("never-started").unwrap();
    let error = h
        .chat
        .send(&eve, text(&nowhere, "hi", "e2"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);
    assert!(h.chat.members(&nowhere).await.unwrap().is_empty());
    assert!(!h.chat.is_member(&call, &eve.user_id).await.unwrap());
}

#[test]
fn malformed_fields_are_invalid_payloads() {
    for error in [
        chat::ConversationId::parse("").unwrap_err(),
        chat::ConversationId::parse("x".repeat(201)).unwrap_err(),
        chat::TempId::parse("t".repeat(101)).unwrap_err(),
        chat::MessageId::parse("../../etc/passwd").unwrap_err(),
        chat::MessageKind::parse("html").unwrap_err(),
        chat::UserId::parse("a\u{0}").unwrap_err(),
    ] {
        assert_eq!(error.code, ErrorCode::InvalidPayload);
    }
}

crate::both_backends!(
    content_length_default_and_configured,
    rate_limit_per_user_with_burst,
    default_rate_is_ten_per_second,
    non_members_are_refused_everywhere,
);
