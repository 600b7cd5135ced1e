//! Several real `chorus serve` processes sharing the Redis at 127.0.0.1:6379 (or
//! `CHORUS_TEST_REDIS_URL`), each test under its own key prefix, cleaned up at the end.

mod calls;
mod chat;
mod failures;
mod limits;
mod presence;
mod rooms;
mod seam;

use crate::client::{Client, SioClient, WsClient};
use crate::server::{SECRET, Transport, mint, scratch_dir};
use signaling::auth::Grants;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Redis for these tests; CI and development machines run one here.
pub fn redis_url() -> String {
    std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or run) uses.
pub fn prefix(test: &str) -> String {
    format!(
        "chorus-test:{test}:{}:{}:",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// One node of a test cluster: a `chorus serve` child process.
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// How a node is started.
#[derive(Clone, Default)]
pub struct NodeOptions {
    /// Extra `CHORUS_*` settings.
    pub env: Vec<(String, String)>,
}

impl Node {
    /// Starts node `id` of the cluster under `prefix` and waits until it answers `/ready`.
    pub async fn start(id: &str, prefix: &str, options: &NodeOptions) -> Node {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.args(["serve", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(scratch_dir())
            .env("CHORUS_AUTH_SECRET", SECRET)
            .env("CHORUS_LOG_LEVEL", "warn")
            .env("CHORUS_CLUSTER_REDIS_URL", redis_url())
            .env("CHORUS_CLUSTER_NODE_ID", id)
            .env("CHORUS_CLUSTER_KEY_PREFIX", prefix)
            .env("CHORUS_CLUSTER_HEARTBEAT_INTERVAL", "500ms")
            .env("CHORUS_CLUSTER_NODE_TIMEOUT", "2s")
            .env("CHORUS_CLUSTER_REQUEST_TIMEOUT", "3s")
            .env("CHORUS_SFU_UDP_LISTEN", "127.0.0.1:0")
            .env("CHORUS_SFU_WORKERS", "2")
            .env("CHORUS_SFU_TCP_LISTEN", "127.0.0.1:0")
            .env("CHORUS_SFU_PUBLIC_IPS", "127.0.0.1")
            .env("CHORUS_TURN_ENABLED", "false")
            .env("CHORUS_PRESENCE_VISIBILITY", "everyone")
            .env("CHORUS_SERVER_DRAIN_TIMEOUT", "2s")
            .env_remove("RUST_LOG")
            // The server logs to stdout: a failing cluster test then shows its nodes' warnings.
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("chorus binary starts");
        let node = Node {
            id: id.into(),
            addr,
            child: Some(child),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && crate::server::http_get(addr, "/ready", None).await.0 == 200
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {id} did not become ready on {addr}");
    }

    /// A client of `user` (default grants) on this node.
    pub async fn client(&self, transport: Transport, user: &str) -> Client {
        let token = mint(user, Grants::default(), Duration::from_secs(600));
        self.client_with(transport, &token).await
    }

    pub async fn client_with(&self, transport: Transport, token: &str) -> Client {
        self.client_result(transport, token)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.id))
    }

    /// Connects, or says why the server refused.
    pub async fn client_result(&self, transport: Transport, token: &str) -> Result<Client, String> {
        Ok(match transport {
            Transport::Ws => Client::Ws(WsClient::connect(self.addr, token).await?),
            Transport::SocketIo => Client::Sio(SioClient::connect(self.addr, token).await?),
        })
    }

    /// SIGTERM: the node drains (tells its clients `server:shutdown`, hands its spaces over at
    /// the drain deadline) and exits.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits until the process has exited, at most `within`; true if it did.
    pub async fn exited(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    self.child = None;
                    return true;
                }
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        false
    }

    /// SIGKILL: a crash, nothing drains.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of nodes under one prefix; its Redis keys are deleted when it is dropped.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub prefix: String,
}

impl Cluster {
    pub async fn start(test: &str, n: usize) -> Cluster {
        Self::start_with(test, n, &NodeOptions::default()).await
    }

    pub async fn start_with(test: &str, n: usize, options: &NodeOptions) -> Cluster {
        let prefix = prefix(test);
        let mut nodes = Vec::new();
        for i in 1..=n {
            nodes.push(Node::start(&format!("n{i}"), &prefix, options).await);
        }
        let cluster = Cluster { nodes, prefix };
        cluster.wait_for_nodes(n).await;
        cluster
    }

    /// Waits until every node's registry shows `n` live nodes.
    pub async fn wait_for_nodes(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        'nodes: for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            while tokio::time::Instant::now() < deadline {
                if metric(node, "chorus_cluster_nodes").await == Some(n as f64) {
                    continue 'nodes;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("node {} never saw {n} nodes", node.id);
        }
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        delete_keys(&self.prefix);
    }
}

/// Deletes every key under `prefix` (the test's own).
pub fn delete_keys(prefix: &str) {
    let url = redis_url();
    let host = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let (h, p) = host.split_once(':').unwrap_or((&host, "6379"));
    let keys = Command::new("redis-cli")
        .args([
            "-h",
            h,
            "-p",
            p,
            "--scan",
            "--pattern",
            &format!("{prefix}*"),
        ])
        .output();
    if let Ok(out) = keys {
        for key in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("redis-cli")
                .args(["-h", h, "-p", p, "DEL", key])
                .output();
        }
    }
}

/// A Redis of the test's own on a spare port, which it can kill and start again (empty: it keeps
/// nothing on disk, like the one a real restart without persistence brings back).
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "PING"])
                .output();
            if pong.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Closes every subscriber's connection (`CLIENT KILL TYPE pubsub`) and nothing else; the
    /// nodes' subscribers connect again on their own. Returns how many were closed.
    pub fn kill_subscribers(&self) -> usize {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "CLIENT",
                "KILL",
                "TYPE",
                "pubsub",
            ])
            .output()
            .expect("redis-cli is installed (scripts/test.sh installs it)");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLIENT KILL answered {out:?}"))
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A metric's value on `node` (the first series of that name).
pub async fn metric(node: &Node, name: &str) -> Option<f64> {
    let (_, body) = crate::server::http_get(node.addr, "/metrics", None).await;
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of the series `name{labels}` on `node`, e.g. `labelled(n, "x", "kind=\"call\"")`.
pub async fn labelled(node: &Node, name: &str, labels: &str) -> Option<f64> {
    let (_, body) = crate::server::http_get(node.addr, "/metrics", None).await;
    let series = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
