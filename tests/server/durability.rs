//! Chat durability against the real binary: SIGKILL mid-stream (SQLite and PostgreSQL), and two
//! server processes sharing one PostgreSQL.

use crate::client::{Client, WsClient};
use crate::server::{SECRET, mint, scratch_dir};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// PostgreSQL for these tests; CI and development machines run one here.
fn postgres_url() -> String {
    std::env::var("CHORUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A throwaway schema, dropped at the end of the test.
pub struct Schema {
    name: String,
}

impl Schema {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let name = format!("chorus_e2e_{}_{}", std::process::id(), rand_suffix());
        let mut conn = sqlx::PgConnection::connect(&postgres_url())
            .await
            .expect("PostgreSQL at CHORUS_TEST_POSTGRES_URL or 127.0.0.1:5432 (database test)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Self { name }
    }

    pub fn url(&self) -> String {
        let base = postgres_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.name)
    }

    pub async fn drop_now(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

fn rand_suffix() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A `chorus serve` child process.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    async fn start(data_dir: &Path, database_url: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.args(["serve", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .env("CHORUS_AUTH_SECRET", SECRET)
            .env("CHORUS_LOG_LEVEL", "warn")
            .env("CHORUS_LIMITS_EVENTS_PER_SECOND", "100000")
            .env("CHORUS_LIMITS_EVENT_BURST", "100000")
            .env("CHORUS_CHAT_MESSAGES_PER_SECOND", "0")
            .env("CHORUS_SFU_UDP_LISTEN", "127.0.0.1:0")
            .env("CHORUS_SFU_TCP_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.env("CHORUS_CHAT_DATABASE_URL", url);
        }
        let child = cmd.spawn().expect("chorus binary starts");
        let node = Self { child, addr };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("chorus did not listen on {addr}");
    }

    fn kill9(&mut self) {
        // SIGKILL: no drain, no flush, no destructor runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn client(&self, user: &str) -> Client {
        let token = mint(user, Grants::default(), Duration::from_secs(600));
        Client::Ws(WsClient::connect(self.addr, &token).await.unwrap())
    }

    fn stop(mut self) {
        unsafe_sigterm(self.child.id());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop exits 0: {status:?}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

/// Starts a call so `alice` (and `bob`) become members of its conversation; returns its id.
async fn conversation(node: &Node, members: &[&str]) -> String {
    let mut alice = node.client("alice").await;
    let ack = alice
        .request(
            "call:initiate",
            json!({"conversationId": "c", "callType": "audio", "participants": &members[1..]}),
        )
        .await
        .unwrap();
    let call = ack["callId"].as_str().unwrap().to_owned();
    for m in &members[1..] {
        let mut c = node.client(m).await;
        c.request("call:accept", json!({"callId": call}))
            .await
            .unwrap();
        c.close().await;
    }
    alice.close().await;
    call
}

async fn history(client: &mut Client, conv: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"conversationId": conv, "limit": 100});
        if let Some(b) = before {
            q["beforeSequence"] = json!(b);
        }
        let page = client.request("message:history", q).await.unwrap();
        let msgs = page["messages"].as_array().unwrap().clone();
        before = msgs.first().map(|m| m["sequenceNumber"].as_u64().unwrap());
        let more = page["hasMore"].as_bool().unwrap();
        let mut chunk = msgs;
        chunk.extend(all);
        all = chunk;
        if !more {
            return all;
        }
    }
}

const TOTAL: usize = 1000;

async fn crash_mid_stream(database_url: Option<String>) {
    let dir = scratch_dir();
    let mut node = Node::start(&dir, database_url.as_deref()).await;
    let conv = conversation(&node, &["alice", "bob"]).await;
    let mut alice = node.client("alice").await;
    // Kill somewhere in the middle of the stream, with a send in flight.
    let kill_after = 300 + (rand_suffix() as usize % 400);
    let mut acked: Vec<(usize, u64)> = Vec::new();
    let mut in_flight = None;
    for i in 0..TOTAL {
        let Client::Ws(ws) = &mut alice else {
            unreachable!()
        };
        let id = 10_000 + i as u64;
        ws.send_text(json!({"event": "message:send", "id": id,
            "data": {"conversationId": conv, "content": format!("msg {i}"), "tempId": format!("t{i}")}}).to_string())
            .await;
        if i == kill_after {
            node.kill9();
            in_flight = Some(i);
            break;
        }
        let ack = ws.ack(id).await.expect("acked before the kill");
        acked.push((i, ack["sequenceNumber"].as_u64().unwrap()));
    }
    let first_unacked = in_flight.expect("killed mid-stream");
    drop(alice);

    let node = Node::start(&dir, database_url.as_deref()).await;
    let mut alice = node.client("alice").await;
    let after_crash = history(&mut alice, &conv).await;
    // Every acked message is there exactly once, at its acked sequence number; the one in
    // flight may or may not have committed; nothing else exists.
    assert!(
        after_crash.len() == acked.len() || after_crash.len() == acked.len() + 1,
        "{} vs {}",
        after_crash.len(),
        acked.len()
    );
    for (i, seq) in &acked {
        let m = &after_crash[(*seq - 1) as usize];
        assert_eq!(m["content"], format!("msg {i}"));
        assert_eq!(m["sequenceNumber"].as_u64().unwrap(), *seq);
    }
    // Retrying from the first unacked tempId completes the stream without duplicates.
    for i in first_unacked..TOTAL {
        alice
            .request("message:send", json!({"conversationId": conv, "content": format!("msg {i}"), "tempId": format!("t{i}")}))
            .await
            .unwrap();
    }
    let all = history(&mut alice, &conv).await;
    assert_eq!(all.len(), TOTAL);
    for (n, m) in all.iter().enumerate() {
        assert_eq!(
            m["sequenceNumber"].as_u64().unwrap(),
            n as u64 + 1,
            "gap-free"
        );
        assert_eq!(m["content"], format!("msg {n}"), "in order, exactly once");
    }
    node.stop();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_on_sqlite() {
    crash_mid_stream(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_on_postgres() {
    let schema = Schema::create().await;
    crash_mid_stream(Some(schema.url())).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_never_share_a_sequence_number() {
    let schema = Schema::create().await;
    let url = schema.url();
    let (dir_a, dir_b) = (scratch_dir(), scratch_dir());
    let a = Node::start(&dir_a, Some(&url)).await;
    let b = Node::start(&dir_b, Some(&url)).await;
    let members = ["alice", "bob", "carol", "dave"];
    let conv = conversation(&a, &members).await;
    const EACH: usize = 100;
    let mut tasks = Vec::new();
    for (n, user) in members.iter().enumerate() {
        let node = if n % 2 == 0 { &a } else { &b };
        let mut client = node.client(user).await;
        let conv = conv.clone();
        let user = user.to_string();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let ack = client
                    .request("message:send", json!({"conversationId": conv, "content": format!("{user} {i}"), "tempId": format!("{user}-{i}")}))
                    .await
                    .unwrap();
                seqs.push(ack["sequenceNumber"].as_u64().unwrap());
            }
            seqs
        }));
    }
    let mut all_seqs = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "each sender's messages keep their order"
        );
        all_seqs.extend(seqs);
    }
    all_seqs.sort();
    let expected: Vec<u64> = (1..=(EACH * members.len()) as u64).collect();
    assert_eq!(
        all_seqs, expected,
        "no duplicate and no missing sequence number"
    );
    let mut reader = b.client("alice").await;
    let all = history(&mut reader, &conv).await;
    assert_eq!(all.len(), EACH * members.len());
    a.stop();
    b.stop();
    schema.drop_now().await;
}
