//! `message:read` (forward-only cursor), `message:unread-count` and read receipts.

use std::time::Duration;

use chat::{Change, ErrorCode};

use crate::harness::{Backend, Harness, say, user};

async fn read_cursor_never_moves_back(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let first = say(&h.chat, &alice, &call, "one").await.ack.message_id;
    let second = say(&h.chat, &alice, &call, "two").await.ack.message_id;
    let third = say(&h.chat, &alice, &call, "three").await.ack.message_id;

    h.clock.advance(Duration::from_secs(1));
    let read = h.chat.mark_read(&bob, &call, &second).await.unwrap();
    assert_eq!(read.change, Change::Applied);
    let read_at = read.event.read_at;
    assert_eq!(
        serde_json::to_value(&read.event).unwrap(),
        serde_json::json!({
            "conversationId": "call-1",
            "messageId": second.as_str(),
            "userId": "bob",
            "readAt": serde_json::to_value(read_at).unwrap(),
        })
    );
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 1);

    h.clock.advance(Duration::from_secs(1));
    let back = h.chat.mark_read(&bob, &call, &first).await.unwrap();
    assert_eq!(back.change, Change::Unchanged);
    assert_eq!(back.event.read_at, read_at, "the time the cursor passed it");
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 1);

    let again = h.chat.mark_read(&bob, &call, &second).await.unwrap();
    assert_eq!(again.change, Change::Unchanged);

    h.chat.mark_read(&bob, &call, &third).await.unwrap();
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 0);

    // The message must belong to the named conversation.
    let room = h.conversation("room:x", &alice, &[&bob]).await;
    let error = h.chat.mark_read(&bob, &room, &third).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotFound);
}

async fn unread_count_skips_own_and_deleted(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 0);
    say(&h.chat, &alice, &call, "a").await;
    say(&h.chat, &bob, &call, "mine").await;
    let doomed = say(&h.chat, &alice, &call, "b").await.ack.message_id;
    say(&h.chat, &alice, &call, "c").await;
    let count = h.chat.unread_count(&bob, &call).await.unwrap();
    assert_eq!(count.count, 3);
    assert_eq!(
        serde_json::to_value(&count).unwrap(),
        serde_json::json!({"conversationId": "call-1", "count": 3})
    );
    h.chat.delete(&alice, &doomed).await.unwrap();
    assert_eq!(h.chat.unread_count(&bob, &call).await.unwrap().count, 2);
    assert_eq!(
        h.chat.unread_count(&alice, &call).await.unwrap().count,
        1,
        "bob's message"
    );
    let error = h.chat.unread_count(&user("eve"), &call).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);
}

async fn receipts_list_who_read_up_to_a_message(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let call = h.conversation("call-1", &alice, &[&bob, &carol]).await;
    let first = say(&h.chat, &alice, &call, "one").await.ack.message_id;
    let second = say(&h.chat, &alice, &call, "two").await.ack.message_id;

    h.clock.advance(Duration::from_secs(1));
    h.chat.mark_read(&carol, &call, &second).await.unwrap();
    h.clock.advance(Duration::from_secs(1));
    let bob_read = h
        .chat
        .mark_read(&bob, &call, &first)
        .await
        .unwrap()
        .event
        .read_at;

    let receipts = h.chat.reads(&alice, &call, &first).await.unwrap();
    let readers: Vec<&str> = receipts.reads.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(readers, ["carol", "bob"], "earliest first");
    assert_eq!(receipts.reads[1].read_at, bob_read);
    let receipts = h.chat.reads(&alice, &call, &second).await.unwrap();
    let json = serde_json::to_value(&receipts).unwrap();
    assert_eq!(json["messageId"], second.as_str());
    assert_eq!(json["reads"].as_array().unwrap().len(), 1);
    assert_eq!(json["reads"][0]["userId"], "carol");
    assert!(json["reads"][0]["readAt"].is_string());

    let error = h.chat.reads(&user("eve"), &call, &first).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotMember);
}

crate::both_backends!(
    read_cursor_never_moves_back,
    unread_count_skips_own_and_deleted,
    receipts_list_who_read_up_to_a_message,
);
