//! Group commit (issue 10): messages that arrive while a commit is in flight share the next
//! transaction, and every guarantee of one-commit-per-message still holds per message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::harness::{Backend, Harness, all_messages, text, user};
use chat::store::{self, Inserted, NewMessage};
use chat::{
    Actor, ConversationId, ErrorCode, MessageId, MessageKind, SequenceNumber, TempId, Timestamp,
};

fn new_message(conversation: &str, sender: &str, content: &str, temp_id: &str) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        sender_id: chat::UserId::parse(sender).unwrap(),
        sender_name: sender.to_owned(),
        kind: MessageKind::Text,
        content: content.to_owned(),
        reply_to_id: None,
        temp_id: Some(TempId::parse(temp_id).unwrap()),
        created_at: Timestamp::from_unix_millis(1_800_000_000_000),
    }
}

fn seq_of(inserted: &Inserted) -> Option<u64> {
    match inserted {
        Inserted::Created(m) => Some(m.seq.value()),
        Inserted::Duplicate(_) | Inserted::NotMember => None,
    }
}

/// 40 senders fire at once, into one conversation and into 20: all acked, gap-free per
/// conversation, no number twice, and fewer commits than messages.
async fn burst_from_many_senders_is_gap_free_in_few_commits(backend: Backend) {
    let h = Harness::with(backend, |s| s.message_rate = None).await;
    let senders: Vec<Actor> = (0..40).map(|i| user(&format!("user{i}"))).collect();
    let others: Vec<&Actor> = senders.iter().skip(1).collect();
    let busy = h.conversation("busy", &senders[0], &others).await;
    let mut pairs = Vec::new();
    for (i, pair) in senders.chunks(2).enumerate() {
        pairs.push(
            h.conversation(&format!("pair-{i}"), &pair[0], &[&pair[1]])
                .await,
        );
    }
    const ROUNDS: usize = 10;
    let before = h.chat.write_stats();
    let mut tasks = Vec::new();
    for (i, sender) in senders.iter().cloned().enumerate() {
        let chat = h.chat.clone();
        let (busy, pair) = (busy.clone(), pairs[i / 2].clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for round in 0..ROUNDS {
                for conversation in [&busy, &pair] {
                    let temp = format!("{}-{conversation}-{round}", sender.user_id);
                    let sent = chat
                        .send(&sender, text(conversation, &temp, &temp))
                        .await
                        .expect("burst send");
                    acks.push((conversation.clone(), sent.ack.sequence_number, temp));
                }
            }
            acks
        }));
    }
    let mut by_conversation: HashMap<ConversationId, BTreeMap<SequenceNumber, String>> =
        HashMap::new();
    for task in tasks {
        for (conversation, seq, temp) in task.await.unwrap() {
            let previous = by_conversation
                .entry(conversation)
                .or_default()
                .insert(seq, temp);
            assert!(previous.is_none(), "sequence number handed out twice");
        }
    }
    let expect_numbers = |count: usize| {
        (1..=count as u64)
            .map(SequenceNumber::new)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by_conversation[&busy].keys().copied().collect::<Vec<_>>(),
        expect_numbers(40 * ROUNDS)
    );
    for pair in &pairs {
        assert_eq!(
            by_conversation[pair].keys().copied().collect::<Vec<_>>(),
            expect_numbers(2 * ROUNDS)
        );
    }
    // Storage agrees with the acks.
    let stored = all_messages(&h.chat, &senders[0], &busy).await;
    assert_eq!(stored.len(), 40 * ROUNDS);
    for message in &stored {
        assert_eq!(
            by_conversation[&busy][&message.sequence_number],
            message.content
        );
    }
    let stats = h.chat.write_stats();
    let (groups, messages) = (
        stats.groups - before.groups,
        stats.messages - before.messages,
    );
    assert_eq!(messages, 2 * 40 * ROUNDS as u64);
    assert!(
        groups < messages / 2,
        "40 concurrent senders should share commits: {groups} groups for {messages} messages"
    );
}

/// One group with a refused message among good ones: only the refused one fails.
async fn a_refused_message_does_not_fail_its_group(backend: Backend) {
    let h = Harness::new(backend).await;
    let (alice, bob) = (user("alice"), user("bob"));
    h.conversation("call-1", &alice, &[&bob]).await;
    let store = store::connect(&h.settings).await.unwrap();
    let group = [
        new_message("call-1", "alice", "one", "a1"),
        new_message("call-1", "mallory", "let me in", "m1"),
        new_message("call-1", "bob", "two", "b1"),
        new_message("no-such-call", "alice", "lost", "a2"),
        new_message("call-1", "alice", "three", "a3"),
    ];
    let committed = store.insert_messages(&group).await.unwrap();
    let seqs: Vec<Option<u64>> = committed.outcomes.iter().map(seq_of).collect();
    assert_eq!(seqs, [Some(1), None, Some(2), None, Some(3)]);
    assert!(matches!(committed.outcomes[1], Inserted::NotMember));
    assert!(matches!(committed.outcomes[3], Inserted::NotMember));
    let members = &committed.members[&ConversationId::parse("call-1").unwrap()];
    assert_eq!(members.len(), 2, "members read in the same transaction");

    // And through the service, with concurrent sends: the outsider is refused, the rest acked.
    let eve = user("eve");
    let call = ConversationId::parse("call-1").unwrap();
    let (a, e, b) = tokio::join!(
        h.chat.send(&alice, text(&call, "four", "a4")),
        h.chat.send(&eve, text(&call, "hi", "e1")),
        h.chat.send(&bob, text(&call, "five", "b2")),
    );
    assert_eq!(e.unwrap_err().code(), ErrorCode::NotMember);
    let mut numbers = [
        a.unwrap().ack.sequence_number.value(),
        b.unwrap().ack.sequence_number.value(),
    ];
    numbers.sort_unstable();
    assert_eq!(numbers, [4, 5]);
}

/// Two copies of one tempId in a group store one message; a tempId stored by an earlier group
/// is found too. Concurrent retries through the service get the same ack.
async fn temp_id_retries_inside_one_group(backend: Backend) {
    let h = Harness::with(backend, |s| s.message_rate = None).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let call = h.conversation("call-1", &alice, &[&bob]).await;
    let store = store::connect(&h.settings).await.unwrap();
    let first = store
        .insert_messages(&[new_message("call-1", "alice", "earlier", "t0")])
        .await
        .unwrap();
    let Inserted::Created(earlier) = &first.outcomes[0] else {
        panic!("stored");
    };
    let group = [
        new_message("call-1", "alice", "hello", "t1"),
        new_message("call-1", "alice", "hello (retry)", "t1"),
        new_message("call-1", "bob", "same tempId, other sender", "t1"),
        new_message("call-1", "alice", "earlier (retry)", "t0"),
        new_message("call-1", "alice", "after", "t2"),
    ];
    let committed = store.insert_messages(&group).await.unwrap();
    let outcomes = &committed.outcomes;
    let Inserted::Created(hello) = &outcomes[0] else {
        panic!("first copy is stored: {:?}", outcomes[0]);
    };
    assert_eq!(hello.seq.value(), 2);
    assert!(matches!(&outcomes[1], Inserted::Duplicate(m) if m == hello));
    assert_eq!(seq_of(&outcomes[2]), Some(3));
    assert!(matches!(&outcomes[3], Inserted::Duplicate(m) if m == earlier));
    assert_eq!(seq_of(&outcomes[4]), Some(4), "no gap after the duplicates");
    let stored = all_messages(&h.chat, &alice, &call).await;
    let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        ["earlier", "hello", "same tempId, other sender", "after"]
    );

    // Ten concurrent copies of one send: one message, one ack.
    let sends = (0..10).map(|_| h.chat.send(&alice, text(&call, "once", "t9")));
    let acks: Vec<_> = futures_util::future::join_all(sends).await;
    let first = acks[0].as_ref().unwrap().ack.clone();
    for sent in &acks {
        assert_eq!(sent.as_ref().unwrap().ack, first);
    }
    let applied = acks
        .iter()
        .filter(|s| s.as_ref().unwrap().fanout.change == chat::Change::Applied)
        .count();
    assert_eq!(applied, 1, "only one copy is broadcast");
    assert_eq!(all_messages(&h.chat, &alice, &call).await.len(), 5);
}

/// A storage failure in the middle of a group fails all of it: nothing stored, no number used.
async fn a_storage_failure_fails_the_whole_group_and_stores_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    // A trigger refuses one particular content, as a full disk or a constraint would refuse a
    // row: the INSERT of the group's rows fails after the counters were taken.
    h.execute_behind_the_back(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON chat_messages \
         WHEN NEW.content = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
        &[
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.content = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON chat_messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
        ],
    )
    .await;
    let store = store::connect(&h.settings).await.unwrap();
    let group = [
        new_message("call-1", "alice", "fine", "t1"),
        new_message("call-1", "alice", "boom", "t2"),
        new_message("call-1", "alice", "also fine", "t3"),
    ];
    let error = store.insert_messages(&group).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::StorageUnavailable);
    assert!(all_messages(&h.chat, &alice, &call).await.is_empty());

    // Through the service: every message of the failing group hears storage_unavailable.
    let chat = Arc::new(h.chat.clone());
    let (a, b) = tokio::join!(
        chat.send(&alice, text(&call, "boom", "t4")),
        chat.send(&alice, text(&call, "fine", "t5")),
    );
    assert_eq!(a.unwrap_err().code(), ErrorCode::StorageUnavailable);
    if let Err(error) = &b {
        // It shared the failing group; had it committed alone it would be number 1.
        assert_eq!(error.code(), ErrorCode::StorageUnavailable);
    }
    // The numbering has no hole: the next message follows whatever was really stored.
    let next = chat.send(&alice, text(&call, "after", "t6")).await.unwrap();
    let stored = all_messages(&h.chat, &alice, &call).await;
    assert_eq!(next.ack.sequence_number.value(), stored.len() as u64);
    let seqs: Vec<u64> = stored.iter().map(|m| m.sequence_number.value()).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    assert!(stored.iter().all(|m| m.content != "boom"));
}

crate::both_backends!(
    burst_from_many_senders_is_gap_free_in_few_commits,
    a_refused_message_does_not_fail_its_group,
    temp_id_retries_inside_one_group,
    a_storage_failure_fails_the_whole_group_and_stores_nothing,
);
