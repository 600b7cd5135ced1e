//! `message:edit` (own, within the window) and `message:delete` (own, owner, admin; soft).

use std::time::Duration;

use chat::{Change, ErrorCode, HistoryQuery, MemberRole};

use crate::harness::{Backend, Harness, admin, say, user};

async fn edit_own_message_within_window(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let id = say(&h.chat, &alice, &call, "helo").await.ack.message_id;

    h.clock.advance(Duration::from_secs(60));
    let updated = h.chat.edit(&alice, &id, "hello".into()).await.unwrap();
    assert_eq!(
        updated.recipients,
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );
    let json = serde_json::to_value(&updated.event).unwrap();
    assert_eq!(json["messageId"], id.as_str());
    assert_eq!(json["content"], "hello");
    assert_eq!(
        json["editedAt"],
        serde_json::to_value(h.clock_now()).unwrap()
    );

    // Not bob's to edit, not even for an owner or an admin.
    let error = h.chat.edit(&bob, &id, "hijack".into()).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Forbidden);
    let error = h
        .chat
        .edit(&admin("root"), &id, "hijack".into())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);

    // Content rules apply to edits too.
    let too_long = "x".repeat(h.settings.max_content_chars + 1);
    let error = h.chat.edit(&alice, &id, too_long).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::ContentTooLong);
}

async fn edit_window_closes(backend: Backend) {
    let h = Harness::with(backend, |s| s.edit_window = Duration::from_secs(600)).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let id = say(&h.chat, &alice, &call, "typo").await.ack.message_id;
    h.clock.advance(Duration::from_secs(600));
    h.chat
        .edit(&alice, &id, "at the edge".into())
        .await
        .unwrap();
    h.clock.advance(Duration::from_millis(1));
    let error = h
        .chat
        .edit(&alice, &id, "too late".into())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::EditWindowPassed);
    let history = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.messages[0].message.content, "at the edge");
}

async fn delete_is_soft_and_limited_to_author_owner_admin(backend: Backend) {
    let h = Harness::new(backend).await;
    let (owner, bob, carol) = (user("owner"), user("bob"), user("carol"));
    let call = h.conversation("call-1", &owner, &[&bob, &carol]).await;
    let by_bob = say(&h.chat, &bob, &call, "bob's").await.ack.message_id;
    let by_carol = say(&h.chat, &carol, &call, "carol's").await.ack.message_id;
    let by_owner = say(&h.chat, &owner, &call, "owner's").await.ack.message_id;
    let spare = say(&h.chat, &bob, &call, "spare").await.ack.message_id;

    // A plain member cannot delete someone else's message; an outsider is not a member.
    let error = h.chat.delete(&carol, &by_bob).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Forbidden);
    let error = h.chat.delete(&user("mallory"), &by_bob).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);

    // Own message.
    let deleted = h.chat.delete(&bob, &by_bob).await.unwrap();
    assert_eq!(deleted.change, Change::Applied);
    assert_eq!(
        serde_json::to_value(&deleted.event).unwrap(),
        serde_json::json!({"messageId": by_bob.as_str()})
    );
    // Twice is fine and changes nothing.
    assert_eq!(
        h.chat.delete(&bob, &by_bob).await.unwrap().change,
        Change::Unchanged
    );
    // The call's initiator deletes anyone's.
    h.chat.delete(&owner, &by_carol).await.unwrap();
    // An admin deletes any message, member or not.
    h.chat.delete(&admin("root"), &by_owner).await.unwrap();
    // Being promoted to owner later (e.g. initiating the next call in a room) grants it.
    h.chat
        .add_member(&call, &carol.user_id, MemberRole::Owner)
        .await
        .unwrap();
    h.chat.delete(&carol, &spare).await.unwrap();
    // Rejoining as a member never demotes.
    h.chat
        .add_member(&call, &owner.user_id, MemberRole::Member)
        .await
        .unwrap();

    let history = h
        .chat
        .history(&bob, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 4, "metadata kept");
    for message in &history.messages {
        assert_eq!(message.message.content, "");
        assert!(message.deleted_at.is_some());
    }
    // A deleted message can no longer be edited or reacted to.
    let error = h.chat.edit(&bob, &by_bob, "undo".into()).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotFound);
    let error = h.chat.react(&bob, &by_bob, "👍").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotFound);
}

async fn unknown_messages_are_not_found(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    h.conversation("call-1", &alice, &[]).await;
    let ghost = chat::MessageId::parse("01890000-0000-7000-8000-000000000001").unwrap();
    for error in [
        h.chat.edit(&alice, &ghost, "x".into()).await.unwrap_err(),
        h.chat.delete(&alice, &ghost).await.unwrap_err(),
        h.chat.react(&alice, &ghost, "👍").await.unwrap_err(),
        h.chat.unreact(&alice, &ghost, "👍").await.unwrap_err(),
    ] {
        assert_eq!(error.code(), ErrorCode::NotFound);
    }
}

impl Harness {
    fn clock_now(&self) -> chat::Timestamp {
        chat::Clock::timestamp(self.clock.as_ref())
    }
}

crate::both_backends!(
    edit_own_message_within_window,
    edit_window_closes,
    delete_is_soft_and_limited_to_author_owner_admin,
    unknown_messages_are_not_found,
);
