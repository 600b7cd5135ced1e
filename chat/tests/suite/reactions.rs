//! `message:react` / `message:unreact`: events, idempotence, emoji validation, the bound on
//! distinct emoji.

use chat::{Change, ErrorCode, HistoryQuery};

use crate::harness::{Backend, Harness, say, user};

async fn react_and_unreact(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let id = say(&h.chat, &alice, &call, "ship it?").await.ack.message_id;

    let added = h.chat.react(&bob, &id, "👍🏽").await.unwrap();
    assert_eq!(added.change, Change::Applied);
    assert_eq!(added.recipients.len(), 2);
    assert_eq!(
        serde_json::to_value(&added.event).unwrap(),
        serde_json::json!({"messageId": id.as_str(), "userId": "bob", "emoji": "👍🏽"})
    );
    assert_eq!(
        h.chat.react(&bob, &id, "👍🏽").await.unwrap().change,
        Change::Unchanged
    );

    let removed = h.chat.unreact(&bob, &id, "👍🏽").await.unwrap();
    assert_eq!(removed.change, Change::Applied);
    assert_eq!(removed.event, added.event);
    assert_eq!(
        h.chat.unreact(&bob, &id, "👍🏽").await.unwrap().change,
        Change::Unchanged
    );
    let history = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert!(history.messages[0].reactions.is_empty());

    let error = h.chat.react(&user("mallory"), &id, "👍").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);
}

async fn emoji_are_validated(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let id = say(&h.chat, &alice, &call, "x").await.ack.message_id;
    let too_long = "😀".repeat(h.settings.max_emoji_chars + 1);
    for bad in ["", "lol", "<img src=x>", "👍 ", too_long.as_str()] {
        let error = h.chat.react(&alice, &id, bad).await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidPayload, "{bad:?}");
    }
    h.chat.react(&alice, &id, "👨‍👩‍👧‍👦").await.unwrap();
}

async fn distinct_emoji_per_message_are_bounded(backend: Backend) {
    let h = Harness::with(backend, |s| s.max_reactions_per_message = 3).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let id = say(&h.chat, &alice, &call, "vote").await.ack.message_id;
    for emoji in ["1️⃣", "2️⃣", "3️⃣"] {
        h.chat.react(&alice, &id, emoji).await.unwrap();
    }
    let error = h.chat.react(&bob, &id, "4️⃣").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::TooManyReactions);
    // Joining an existing emoji is always possible.
    h.chat.react(&bob, &id, "2️⃣").await.unwrap();
    // Freeing a slot makes room.
    h.chat.unreact(&alice, &id, "3️⃣").await.unwrap();
    h.chat.react(&bob, &id, "4️⃣").await.unwrap();
}

crate::both_backends!(
    react_and_unreact,
    emoji_are_validated,
    distinct_emoji_per_message_are_bounded
);
