//! The real binary: a second SIGTERM during the drain, and a flood of idle sockets beyond the
//! process's open-file limit.

use crate::client::{Client, WsClient};
use crate::server::{SECRET, http_get, mint, scratch_dir};
use serde_json::Value;
use signaling::auth::Grants;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A `chorus serve` process, killed if the test ends without stopping it.
struct Chorus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Chorus {
    /// Starts `chorus serve` on a free port with `sets` (`key=value`) and JSON logs in a file,
    /// under `prlimit --nofile=N:N` when `nofile` is given.
    fn start(nofile: Option<u32>, sets: &[String]) -> Chorus {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let dir = scratch_dir();
        let log = dir.join("chorus.log");
        let bin = env!("CARGO_BIN_EXE_chorus");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve");
        let base = [
            format!("server.listen={addr}"),
            format!("server.data_dir={}", dir.display()),
            "log.format=json".into(),
            "log.level=info".into(),
        ];
        for set in base.iter().chain(sets) {
            cmd.args(["--set", set]);
        }
        let child = cmd
            .env("CHORUS_AUTH_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Chorus { child, addr, log }
    }

    async fn healthy(&mut self) {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("chorus exited at start: {status}\n{}", self.log_text());
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                assert_eq!(http_get(self.addr, "/health", None).await.0, 200);
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("chorus did not listen within 10 s");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits up to `limit` for the process to exit.
    async fn exited(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// User + system CPU time so far, in clock ticks (1/100 s), from /proc/PID/stat.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines as JSON, skipping anything else.
    fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Chorus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_second_sigterm_during_the_drain_exits_at_once_with_143() {
    let mut chorus = Chorus::start(
        None,
        &[
            "server.drain_timeout=60s".into(),
            "sfu.enabled=false".into(),
            "turn.enabled=false".into(),
        ],
    );
    chorus.healthy().await;
    let token = mint("alice", Grants::default(), Duration::from_secs(600));
    let mut ws = Client::Ws(WsClient::connect(chorus.addr, &token).await.unwrap());
    chorus.signal("TERM");
    ws.expect("server:shutdown").await;
    // The drain waits for the open WebSocket (up to a minute)...
    assert_eq!(chorus.exited(Duration::from_millis(700)).await, None);
    // ...until a second SIGTERM ends the process at once.
    let sent = Instant::now();
    chorus.signal("TERM");
    let status = chorus
        .exited(Duration::from_secs(5))
        .await
        .expect("a second SIGTERM ends the drain at once");
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        chorus.log_text().contains("second shutdown signal"),
        "{}",
        chorus.log_text()
    );
}

/// Under `prlimit --nofile=256`, 400 idle sockets to the HTTP port (and a few to the SFU's
/// ICE-TCP and TURN's TCP ports) put every accept loop at EMFILE. None may spin (the SFU's
/// used to take a whole core), each logs its back-off at most once a second, and `/health` is
/// answered as soon as the header timeout has closed the sockets queued ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_open_file_limit_neither_spins_nor_keeps_health_down() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prlimit (util-linux) is required under CI"
        );
        eprintln!("SKIPPED: prlimit is not installed");
        return;
    }
    let (sfu_tcp, turn_tcp) = (free_tcp_port(), free_tcp_port());
    let mut chorus = Chorus::start(
        Some(256),
        &[
            "server.header_read_timeout=5s".into(),
            "server.max_raw_connections_per_ip=100000".into(),
            "server.drain_timeout=1s".into(),
            format!("sfu.udp_listen=127.0.0.1:{}", free_udp_port()),
            format!("sfu.tcp_listen=127.0.0.1:{sfu_tcp}"),
            format!("turn.udp_listen=127.0.0.1:{}", free_udp_port()),
            format!("turn.tcp_listen=127.0.0.1:{turn_tcp}"),
            "turn.relay_ip=127.0.0.1".into(),
            "turn.static_users=u:p".into(),
            "turn.workers=1".into(),
        ],
    );
    chorus.healthy().await;
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(TcpStream::connect(chorus.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for port in [sfu_tcp, turn_tcp] {
        for _ in 0..5 {
            let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            flood.push(TcpStream::connect(to).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = chorus.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = chorus.cpu_ticks() - before;
    assert!(
        used < 60,
        "{used} ticks of CPU in 3 s: an accept loop spins"
    );
    // Still flooded: /health waits only for the header timeout to clear the queue ahead of it.
    let health = tokio::time::timeout(
        Duration::from_secs(15),
        http_get(chorus.addr, "/health", None),
    )
    .await
    .expect("/health answered while the flood is still open");
    assert_eq!(health.0, 200);
    assert!(health.1.contains(r#""status":"ok""#), "{}", health.1);
    let answered_after = started.elapsed();
    drop(flood);
    chorus.signal("TERM");
    let status = chorus.exited(Duration::from_secs(10)).await.expect("stops");
    let ran = started.elapsed().as_secs() + 1;
    let lines = chorus.log_lines();
    let message = |l: &Value| l["fields"]["message"].as_str().unwrap_or("").to_owned();
    let mut backoffs: HashMap<String, u64> = HashMap::new();
    for l in &lines {
        if message(l).starts_with("accept failed") {
            let listener = l["fields"]["listener"].as_str().unwrap_or("?").to_owned();
            *backoffs.entry(listener).or_default() += 1;
        }
    }
    for listener in ["HTTP", "SFU ICE-TCP", "TURN TCP"] {
        let n = backoffs.get(listener).copied().unwrap_or(0);
        assert!(
            (1..=ran + 1).contains(&n),
            "{listener}: {n} back-off lines in {ran} s; all: {backoffs:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| message(l).contains("open-file limit (RLIMIT_NOFILE) 256 is below")),
        "no warning about the low limit"
    );
    assert!(status.success(), "{status}\n{}", chorus.log_text());
    eprintln!("flood: {used} CPU ticks in 3 s; /health answered after {answered_after:?}");
}
