//! Durability: a writer process is killed with SIGKILL mid-stream; every message it acked is in
//! the history exactly once, in order, with no gap. Plus the in-process variant: the pools are
//! leaked, never closed, and the data is still there.
//!
//! The writer is this test binary itself, re-run with a filter that selects [`child_writer`] and
//! `CHAT_CRASH_DATABASE_URL` naming the database; without that variable `child_writer` is a
//! no-op, so normal runs pass it trivially.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chat::{ChatService, ConversationId, HistoryQuery, Settings};

use crate::harness::{Backend, Harness, Location, all_messages, say, text, user};

const CHILD_ENV: &str = "CHAT_CRASH_DATABASE_URL";
const KILL_AFTER_ACKS: usize = 300;

/// The child: sends as fast as acks allow and prints each ack once it is received.
#[tokio::test]
async fn child_writer() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let settings = Settings {
        database_url: Some(url),
        message_rate: None,
        ..Settings::default()
    };
    let chat = ChatService::open(settings)
        .await
        .expect("child opens store");
    let alice = user("alice");
    let call = ConversationId::parse("crash").unwrap();
    // Bounded in case the parent dies before killing us.
    for i in 0..20_000 {
        let temp = format!("m{i}");
        let sent = chat
            .send(&alice, text(&call, &temp, &temp))
            .await
            .expect("child send");
        println!(
            "ACK {} {} {}",
            temp, sent.ack.sequence_number, sent.ack.message_id
        );
    }
}

async fn kill_9_mid_stream_loses_no_acked_message(backend: Backend) {
    let h = Harness::with(backend, |s| s.message_rate = None).await;
    let alice = user("alice");
    let call = h.conversation("crash", &alice, &[]).await;
    let url = match &h.location {
        Location::Sqlite(dir) => format!("sqlite://{}", dir.path().join("data/chat.db").display()),
        Location::Postgres(schema) => schema.url.clone(),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().unwrap();
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            // libtest prints `test crash::child_writer ... ` without a newline before the test
            // runs, so the first ack shares its line: look for the marker anywhere.
            if let Some((_, rest)) = line.split_once("ACK ") {
                let parts: Vec<String> = rest.split(' ').map(str::to_owned).collect();
                acked.push((
                    parts[0].clone(),
                    parts[1].parse::<u64>().unwrap(),
                    parts[2].clone(),
                ));
                if acked.len() == KILL_AFTER_ACKS {
                    child.kill().expect("SIGKILL the writer");
                }
            }
        }
        // Acks printed before the kill landed are still in the pipe: they count too.
        child.wait().unwrap();
        acked
    })
    .await
    .unwrap();
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "writer acked only {}",
        acked.len()
    );

    // "Restart": a fresh process-like service on the same storage.
    let restarted = h.another_process().await;
    let stored = all_messages(&restarted, &alice, &call).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m.sequence_number.value()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    for (temp, seq, id) in &acked {
        let message = &stored[(*seq - 1) as usize];
        assert_eq!((&message.content, message.id.as_str()), (temp, id.as_str()));
    }
    assert!(
        stored.len() < 20_000,
        "the writer was killed mid-stream, not finished"
    );
    // At most the one in flight at the kill may be stored without its ack having been seen.
    assert!(stored.len() <= acked.len() + 1);
    if std::env::var_os("CHAT_TEST_VERBOSE").is_some() {
        eprintln!(
            "{backend:?}: {} acked before SIGKILL landed, {} stored",
            acked.len(),
            stored.len()
        );
    }
    // And the conversation goes on after the restart.
    let next = say(&restarted, &alice, &call, "after restart").await;
    assert_eq!(next.ack.sequence_number.value(), stored.len() as u64 + 1);
}

async fn leaked_pools_lose_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    let writer = h.another_process().await;
    for i in 0..10 {
        writer
            .send(&alice, text(&call, &format!("{i}"), &format!("t{i}")))
            .await
            .unwrap();
    }
    // No graceful close: the pools (and their connections) are simply abandoned.
    std::mem::forget(writer);
    let reopened = h.another_process().await;
    let history = reopened
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 10);
}

crate::both_backends!(
    kill_9_mid_stream_loses_no_acked_message,
    leaked_pools_lose_nothing
);
