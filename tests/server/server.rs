//! Starts a real server inside the test process.

use crate::client::{Client, SioClient, WsClient};
use chorus::RunError;
use config::Config;
use signaling::Signaling;
use signaling::auth::{Authenticator, Grants};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";

/// Which transport a client uses; flows run once per transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    SocketIo,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub signaling: Arc<Signaling>,
    /// The SFU, unless `sfu.enabled` is off (tests poll its `snapshot()`).
    pub sfu: Option<sfu::SfuHandle>,
    /// Where the in-process TURN relay listens.
    pub turn: Option<turn::BoundAddrs>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

/// A token for `user` (display name "`user` name") signed with [`SECRET`].
pub fn mint(user: &str, grants: Grants, ttl: Duration) -> String {
    let auth = config::AuthConfig {
        secret: SECRET.into(),
        ..Default::default()
    };
    Authenticator::new(&auth, None)
        .unwrap()
        .mint(
            user,
            &format!("{user} name"),
            grants,
            ttl,
            SystemTime::now(),
        )
        .unwrap()
}

/// A fresh data directory for one test server (its SQLite chat database lives there).
pub fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chorus-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn test_config() -> Config {
    let mut c = Config::default();
    c.server.data_dir = scratch_dir();
    c.auth.secret = SECRET.into();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.drain_timeout = config::HumanDuration::millis(500);
    c.ice.stun_urls = vec!["stun:stun.example.test:3478".into()];
    c.ice.turn_urls = vec!["turn:turn.example.test:3478?transport=udp".into()];
    c.ice.turn_secret = "turn-secret".into();
    c.sfu.udp_listen = "127.0.0.1:0".parse().unwrap();
    // Two media workers whatever the machine, so rooms spread over workers in every test.
    c.sfu.workers = 2;
    c.sfu.tcp_listen = "127.0.0.1:0".into();
    c.sfu.public_ips = vec!["127.0.0.1".into()];
    c.turn.udp_listen = "127.0.0.1:0".parse().unwrap();
    c.turn.tcp_listen = "127.0.0.1:0".parse().unwrap();
    c.turn.relay_ip = "127.0.0.1".into();
    c
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let listener = TcpListener::bind(config.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = chorus::build(&config, Authenticator::new(&config.auth, None).unwrap())
            .await
            .unwrap();
        let signaling = server.signaling.clone();
        let sfu = server.sfu.clone();
        let turn = server.turn.as_ref().map(|t| t.local_addrs());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            chorus::serve(listener, &config, server, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            signaling,
            sfu,
            turn,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn token(&self, user: &str) -> String {
        self.token_with(user, Grants::default(), Duration::from_secs(600))
    }

    pub fn token_with(&self, user: &str, grants: Grants, ttl: Duration) -> String {
        mint(user, grants, ttl)
    }

    pub async fn client(&self, transport: Transport, user: &str) -> Client {
        let token = self.token(user);
        match transport {
            Transport::Ws => Client::Ws(WsClient::connect(self.addr, &token).await.unwrap()),
            Transport::SocketIo => {
                Client::Sio(SioClient::connect(self.addr, &token).await.unwrap())
            }
        }
    }

    /// Sends the shutdown signal and waits for the server to finish draining.
    pub async fn stop(mut self) -> Result<(), RunError> {
        let _ = self.stop.take().expect("stopped once").send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within 10 s")
            .expect("server task did not panic")
    }
}

impl TestServer {
    /// Waits (at most 10 s) for the server to stop on its own, without sending the shutdown
    /// signal, and returns how it ended.
    pub async fn finished(mut self) -> Result<(), RunError> {
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops on its own within 10 s")
            .expect("server task did not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Plain HTTP/1.1 GET over a fresh TCP connection: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, bearer, None).await
}

pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
