//! `message:send` → `message:ack` + `message:new`, and idempotent retries.

use chat::{Change, ErrorCode, MessageId, SequenceNumber};
use serde_json::json;

use crate::harness::{Backend, Harness, say, text, user};

async fn ack_then_new_for_every_member(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;

    let sent = h
        .chat
        .send(&alice, text(&call, "can you hear me?", "t-1"))
        .await
        .unwrap();
    assert_eq!(sent.ack.sequence_number, SequenceNumber::new(1));
    assert_eq!(sent.ack.message_id, sent.fanout.event.id);
    assert_eq!(sent.ack.created_at, sent.fanout.event.created_at);
    assert_eq!(sent.fanout.change, Change::Applied);
    // The sender's other devices get message:new too.
    assert_eq!(
        sent.fanout.recipients,
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );

    let ack = serde_json::to_value(&sent.ack).unwrap();
    assert_eq!(ack["tempId"], "t-1");
    assert_eq!(ack["sequenceNumber"], 1);
    assert!(ack["messageId"].is_string() && ack["createdAt"].is_string());

    let new = serde_json::to_value(&sent.fanout.event).unwrap();
    let expected = json!({
        "id": sent.ack.message_id.as_str(),
        "conversationId": "call-1",
        "senderId": "alice",
        "sender": {"id": "alice", "name": "Alice"},
        "type": "text",
        "content": "can you hear me?",
        "sequenceNumber": 1,
        "replyToId": null,
        "createdAt": ack["createdAt"],
    });
    assert_eq!(new, expected);

    let second = say(&h.chat, &bob, &call, "yes").await;
    assert_eq!(second.ack.sequence_number, SequenceNumber::new(2));
}

async fn retry_with_same_temp_id_returns_original_ack(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;

    let first = h
        .chat
        .send(&alice, text(&call, "hello", "t-1"))
        .await
        .unwrap();
    h.clock.advance(std::time::Duration::from_secs(3));
    // Even if the retry's content differs (a buggy client), the original stands.
    let retry = h
        .chat
        .send(&alice, text(&call, "hello again", "t-1"))
        .await
        .unwrap();
    assert_eq!(retry.ack, first.ack);
    assert_eq!(retry.fanout.change, Change::Unchanged);
    assert_eq!(retry.fanout.event.content, "hello");

    // Same tempId from another sender, or in another conversation, is a different message.
    let other = h.chat.send(&bob, text(&call, "hi", "t-1")).await.unwrap();
    assert_eq!(other.ack.sequence_number, SequenceNumber::new(2));

    // A retry from another server process finds the original too.
    let node2 = h.another_process().await;
    let again = node2
        .send(&alice, text(&call, "hello", "t-1"))
        .await
        .unwrap();
    assert_eq!(again.ack, first.ack);

    let history = h
        .chat
        .history(&alice, &call, Default::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 2);
}

async fn concurrent_retries_store_one_message(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let node2 = h.another_process().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let chat = if i % 2 == 0 {
            h.chat.clone()
        } else {
            node2.clone()
        };
        let (alice, call) = (alice.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            chat.send(&alice, text(&call, "once", "same"))
                .await
                .unwrap()
                .ack
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await.unwrap());
    }
    assert!(acks.iter().all(|ack| ack == &acks[0]), "{acks:?}");
    assert_eq!(acks[0].sequence_number, SequenceNumber::new(1));
    // No gap was left by the losers' rolled-back increments.
    let next = say(&h.chat, &alice, &call, "next").await;
    assert_eq!(next.ack.sequence_number, SequenceNumber::new(2));
}

async fn replies_must_name_a_message_of_the_conversation(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let room = h.conversation("room:other", &alice, &[]).await;
    let original = say(&h.chat, &alice, &call, "question?").await;
    let elsewhere = say(&h.chat, &alice, &room, "elsewhere").await;

    let mut reply = text(&call, "answer", "t-reply");
    reply.reply_to_id = Some(original.ack.message_id.clone());
    let sent = h.chat.send(&alice, reply).await.unwrap();
    assert_eq!(sent.fanout.event.reply_to_id, Some(original.ack.message_id));

    for target in [
        elsewhere.ack.message_id,
        MessageId::parse("00000000-0000-7000-8000-000000000000").unwrap(),
    ] {
        let mut reply = text(&call, "answer", "t-bad");
        reply.reply_to_id = Some(target);
        let error = h.chat.send(&alice, reply).await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::NotFound);
    }
}

async fn content_is_stored_as_given(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let raw = "  <script>alert('x')</script> \"quoted\" — ünïcødé 👍\n";
    say(&h.chat, &alice, &call, raw).await;
    let history = h
        .chat
        .history(&alice, &call, Default::default())
        .await
        .unwrap();
    assert_eq!(history.messages[0].message.content, raw);
}

crate::both_backends!(
    ack_then_new_for_every_member,
    retry_with_same_temp_id_returns_original_ack,
    concurrent_retries_store_one_message,
    replies_must_name_a_message_of_the_conversation,
    content_is_stored_as_given,
);
