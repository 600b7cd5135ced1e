//! Several server processes (services with their own connection pools) sending into one
//! conversation at once: every acked sequence number is unique and together they are 1..=N.

use std::collections::{BTreeMap, HashSet};

use chat::SequenceNumber;

use crate::harness::{Backend, Harness, all_messages, text, user};

async fn many_processes_one_conversation_no_duplicate_or_missing_sequence(backend: Backend) {
    // SQLite is single-node by design (one file, one writer); two processes still must not clash.
    let (processes, tasks_per_process, sends_per_task) = match backend {
        Backend::Postgres => (8, 3, 20),
        Backend::Sqlite => (2, 3, 20),
    };
    let h = Harness::with(backend, |s| {
        s.message_rate = None;
        s.max_connections = 2;
    })
    .await;
    let senders: Vec<_> = (0..6).map(|i| user(&format!("user{i}"))).collect();
    let refs: Vec<_> = senders.iter().skip(1).collect();
    let call = h.conversation("call-busy", &senders[0], &refs).await;

    let mut handles = Vec::new();
    for p in 0..processes {
        let service = h.another_process().await;
        for t in 0..tasks_per_process {
            let (service, call) = (service.clone(), call.clone());
            let sender = senders[(p * tasks_per_process + t) % senders.len()].clone();
            handles.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for i in 0..sends_per_task {
                    let temp = format!("p{p}-t{t}-{i}");
                    let sent = service
                        .send(&sender, text(&call, &temp, &temp))
                        .await
                        .expect("concurrent send");
                    // Every few messages the client "loses" the ack and retries.
                    if i % 7 == 0 {
                        let retry = service
                            .send(&sender, text(&call, &temp, &temp))
                            .await
                            .unwrap();
                        assert_eq!(retry.ack, sent.ack);
                    }
                    acks.push((temp, sent.ack));
                }
                acks
            }));
        }
    }
    let mut acked = BTreeMap::new();
    for handle in handles {
        for (temp, ack) in handle.await.unwrap() {
            let previous = acked.insert(ack.sequence_number, (temp, ack.message_id));
            assert!(previous.is_none(), "sequence number handed out twice");
        }
    }
    let total = (processes * tasks_per_process * sends_per_task) as u64;
    let expected: Vec<SequenceNumber> = (1..=total).map(SequenceNumber::new).collect();
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), expected);

    // Storage agrees with the acks.
    let reader = user("user0");
    let stored = all_messages(&h.chat, &reader, &call).await;
    assert_eq!(stored.len() as u64, total);
    let mut contents = HashSet::new();
    for message in &stored {
        let (temp, id) = &acked[&message.sequence_number];
        assert_eq!(&message.id, id);
        assert_eq!(&message.content, temp);
        assert!(contents.insert(message.content.clone()));
    }
}

crate::both_backends!(many_processes_one_conversation_no_duplicate_or_missing_sequence);
