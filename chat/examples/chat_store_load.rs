//! Chat without the network: how many `message:send` a [`ChatService`] commits per second on
//! its own, through the same group-commit writer and SQLite settings the server uses
//! (`bench/chat.sh` runs it before the whole-server scenarios; issue 10, item 10).
//!
//! It opens a fresh SQLite database in a temporary directory (WAL, `synchronous=FULL` unless
//! `--sync normal`), creates `--conversations` conversations of two members, and runs
//! `--senders` tasks per conversation on a tokio runtime of `--threads` workers, each sending
//! its next message as soon as the previous one is acked (what a WebSocket client with a window
//! of one does) for `--seconds`. Every message has a tempId. It then checks what the server's
//! benchmark checks — every acked message is in the history, sequence numbers per conversation
//! are 1..=n without gaps — and prints one line of figures: acked messages, messages per
//! second, ack latency p50/p99/max, group commits and mean group size, and the process's
//! CPU-seconds (user + system) per message.
//!
//! Usage: `cargo run --release -p chorus-chat --example chat_store_load -- --conversations 200
//! --senders 2 --seconds 10 [--threads 2] [--sync full|normal] [--dir PATH]`

use chat::{Actor, ChatService, ConversationId, MemberRole, Settings, SqliteSync, UserId};
use protocol::chat::{SendMessage, TempId};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    conversations: usize,
    senders: usize,
    seconds: u64,
    threads: usize,
    sync: SqliteSync,
    dir: Option<std::path::PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        conversations: 200,
        senders: 2,
        seconds: 10,
        threads: 2,
        sync: SqliteSync::Full,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--conversations" => o.conversations = number(value()?)?.max(1),
            "--senders" => o.senders = number(value()?)?.max(1),
            "--seconds" => o.seconds = number(value()?)?.max(1) as u64,
            "--threads" => o.threads = number(value()?)?.max(1),
            "--sync" => {
                o.sync = match value()?.as_str() {
                    "full" => SqliteSync::Full,
                    "normal" => SqliteSync::Normal,
                    other => return Err(format!("--sync full|normal, not {other}")),
                }
            }
            "--dir" => o.dir = Some(value()?.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("chat_store_load: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(o)) {
        eprintln!("chat_store_load: FAIL {e}");
        std::process::exit(1);
    }
}

async fn run(o: Options) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = o.dir.clone().unwrap_or_else(|| scratch.path().to_owned());
    let settings = Settings {
        data_dir: dir,
        sqlite_sync: o.sync,
        message_rate: None,
        ..Settings::default()
    };
    let chat = Arc::new(
        ChatService::open(settings)
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut senders = Vec::new();
    for c in 0..o.conversations {
        let conversation = ConversationId::parse(format!("call:bench-{c}")).map_err(fail)?;
        for s in 0..o.senders {
            let user = UserId::from(format!("u{c}-{s}"));
            let role = if s == 0 {
                MemberRole::Owner
            } else {
                MemberRole::Member
            };
            chat.add_member(&conversation, &user, role)
                .await
                .map_err(|e| e.to_string())?;
            senders.push((conversation.clone(), user));
        }
    }
    let cpu_before = cpu_seconds();
    let stats_before = chat.write_stats();
    let started = Instant::now();
    let until = started + Duration::from_secs(o.seconds);
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(conversation, user)| {
            let chat = chat.clone();
            tokio::spawn(async move { send_until(&chat, conversation, user, until).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut acked: Vec<(ConversationId, u64)> = Vec::new();
    for task in tasks {
        let (conversation, seqs, lat) = task.await.map_err(|e| e.to_string())??;
        latencies.extend(lat);
        acked.extend(seqs.into_iter().map(|s| (conversation.clone(), s)));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let stats = chat.write_stats();
    check(&acked)?;
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let n = acked.len();
    let groups = stats.groups - stats_before.groups;
    let in_groups = stats.messages - stats_before.messages;
    println!(
        "RESULT acked={n} msgs_per_s={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} groups={groups} mean_group={:.1} cpu_s={cpu:.2} cpu_us_per_msg={:.1}",
        n as f64 / elapsed,
        at(0.50),
        at(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        in_groups as f64 / groups.max(1) as f64,
        cpu * 1e6 / n.max(1) as f64,
    );
    chat.close().await;
    Ok(())
}

type SenderResult = Result<(ConversationId, Vec<u64>, Vec<Duration>), String>;

async fn send_until(
    chat: &ChatService,
    conversation: ConversationId,
    user: UserId,
    until: Instant,
) -> SenderResult {
    let actor = Actor::user(user.clone(), user.as_str());
    let mut seqs = Vec::new();
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let request = SendMessage {
            conversation_id: conversation.clone(),
            content: format!("message {i} from {}", user.as_str()),
            kind: Default::default(),
            temp_id: Some(TempId::parse(format!("t{i}")).map_err(fail)?),
            reply_to_id: None,
        };
        let sent_at = Instant::now();
        let sent = chat
            .send(&actor, request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        latencies.push(sent_at.elapsed());
        seqs.push(sent.ack.sequence_number.value());
        // Dropping the turn lets the conversation's next message be delivered.
        drop(sent.delivery);
    }
    Ok((conversation, seqs, latencies))
}

/// Sequence numbers per conversation are exactly 1..=n: none lost, none twice.
fn check(acked: &[(ConversationId, u64)]) -> Result<(), String> {
    let mut by: std::collections::HashMap<&str, Vec<u64>> = std::collections::HashMap::new();
    for (c, s) in acked {
        by.entry(c.as_str()).or_default().push(*s);
    }
    for (c, mut seqs) in by {
        seqs.sort_unstable();
        if seqs.iter().enumerate().any(|(i, s)| *s != i as u64 + 1) {
            return Err(format!("{c}: sequence numbers are not 1..={}", seqs.len()));
        }
    }
    Ok(())
}

fn fail(f: protocol::Failure) -> String {
    format!("{f:?}")
}

/// User + system CPU of this process, from `/proc/self/stat` (fields 14 and 15).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(") ").next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // The kernel reports these in USER_HZ, which is 100 on Linux.
    ticks / 100.0
}
