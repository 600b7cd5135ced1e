//! Shared helpers: start a server in-process, a minimal TURN client, free ports.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use tokio::sync::oneshot;
use turn::{
    BoundAddrs, Server, Settings,
    auth::long_term_key,
    core::Shared,
    wire::{self, Builder, Class},
};

pub const REALM: &str = "test";
pub const SECRET: &str = "it-secret";

/// A running server; dropping it does not stop it, call [`Running::stop`].
pub struct Running {
    pub addrs: BoundAddrs,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), turn::Error>>,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
    pub fn udp(&self) -> SocketAddr {
        self.addrs.udp[0]
    }
    pub fn tcp(&self) -> SocketAddr {
        self.addrs.tcp[0]
    }
}

/// Test settings: loopback listeners on ephemeral ports, a static user `u:p`, one REST secret.
pub fn test_settings() -> Settings {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Settings {
        udp_listen: vec![lo],
        tcp_listen: vec![lo],
        tls_listen: vec![],
        realm: REALM.into(),
        secrets: vec![SECRET.into()],
        static_users: vec!["u:p".parse().unwrap()],
        workers: 2,
        ..Settings::default()
    }
}

/// Test settings that also allow loopback peers (production must not: see docs/turn.md).
pub fn loopback_settings() -> Settings {
    Settings {
        allowed_peer_ranges: vec!["127.0.0.0/8".parse().unwrap()],
        max_allocations_per_user: 1000,
        ..test_settings()
    }
}

pub async fn start(settings: Settings) -> Running {
    let server = Server::bind(settings, &prometheus::Registry::new())
        .await
        .unwrap();
    let addrs = server.local_addrs();
    let shared = server.shared();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addrs,
        shared,
        stop: Some(tx),
        task,
    }
}

/// A free UDP port on 127.0.0.1 (for tools that need a fixed port number).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A decoded STUN response.
pub struct Resp {
    pub class: Class,
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn parse(raw: &[u8]) -> Option<Resp> {
        match wire::classify(raw).ok()? {
            wire::Packet::Stun(m) => Some(Resp {
                class: m.class,
                raw: raw.to_vec(),
            }),
            _ => None,
        }
    }
    pub fn attr(&self, ty: u16) -> Option<&[u8]> {
        let mut off = 20;
        while off + 4 <= self.raw.len() {
            let t = u16::from_be_bytes([self.raw[off], self.raw[off + 1]]);
            let l = usize::from(u16::from_be_bytes([self.raw[off + 2], self.raw[off + 3]]));
            if t == ty {
                return self.raw.get(off + 4..off + 4 + l);
            }
            off += 4 + l.div_ceil(4) * 4;
        }
        None
    }
    pub fn code(&self) -> Option<u16> {
        self.attr(wire::ATTR_ERROR_CODE)
            .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
    }
    pub fn addr(&self, ty: u16) -> SocketAddr {
        let txid: [u8; 12] = self.raw[8..20].try_into().unwrap();
        wire::decode_xor_address(self.attr(ty).unwrap(), &txid).unwrap()
    }
}

/// How a [`Client`] reaches the server.
pub enum Link {
    Udp(tokio::net::UdpSocket, SocketAddr),
    Stream(Box<dyn Stream>),
}

pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A minimal long-term-credential TURN client for tests.
pub struct Client {
    pub link: Link,
    pub user: String,
    pub pass: String,
    pub nonce: Vec<u8>,
    txn: u32,
}

pub type Attr = (u16, Vec<u8>);

pub fn udp_transport() -> Attr {
    (wire::ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

pub fn peer_attr(p: SocketAddr, txid: [u8; 12]) -> Attr {
    let mut buf = Vec::new();
    Builder::new(&mut buf, 1, Class::Request, txid).xor_address(wire::ATTR_XOR_PEER_ADDRESS, p);
    (wire::ATTR_XOR_PEER_ADDRESS, buf[24..].to_vec())
}

impl Client {
    pub async fn udp(server: SocketAddr, user: &str, pass: &str) -> Client {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Client::new(Link::Udp(sock, server), user, pass)
    }

    pub fn new(link: Link, user: &str, pass: &str) -> Client {
        Client {
            link,
            user: user.into(),
            pass: pass.into(),
            nonce: Vec::new(),
            txn: 0,
        }
    }

    pub fn txid(&mut self) -> [u8; 12] {
        self.txn += 1;
        let mut t = [3u8; 12];
        t[..4].copy_from_slice(&self.txn.to_be_bytes());
        t
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        match &mut self.link {
            Link::Udp(s, to) => {
                s.send_to(bytes, *to).await.unwrap();
            }
            Link::Stream(s) => s.write_all(bytes).await.unwrap(),
        }
    }

    /// Next datagram or stream frame, or `None` after a timeout.
    pub async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let fut = async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 2048];
                    let (n, _) = s.recv_from(&mut buf).await.ok()?;
                    buf.truncate(n);
                    Some(buf)
                }
                Link::Stream(s) => {
                    let mut head = [0u8; 4];
                    s.read_exact(&mut head).await.ok()?;
                    let len = wire::stream_frame_len(head).ok()?;
                    let mut buf = vec![0u8; len];
                    buf[..4].copy_from_slice(&head);
                    s.read_exact(&mut buf[4..]).await.ok()?;
                    Some(buf)
                }
            }
        };
        tokio::time::timeout(wait, fut).await.ok().flatten()
    }

    pub fn build(&mut self, method: u16, attrs: &[Attr], signed: bool) -> Vec<u8> {
        let txid = self.txid();
        self.build_with(method, txid, attrs, signed)
    }

    pub fn build_with(
        &mut self,
        method: u16,
        txid: [u8; 12],
        attrs: &[Attr],
        signed: bool,
    ) -> Vec<u8> {
        let key = long_term_key(self.user.as_bytes(), REALM.as_bytes(), self.pass.as_bytes());
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, method, Class::Request, txid);
        for (t, v) in attrs {
            b.attr(*t, v);
        }
        if signed {
            b.attr(wire::ATTR_USERNAME, self.user.as_bytes())
                .attr(wire::ATTR_REALM, REALM.as_bytes())
                .attr(wire::ATTR_NONCE, &self.nonce)
                .integrity(&key);
        }
        b.fingerprint();
        buf
    }

    /// Sends a request and waits for the STUN response (skipping data).
    pub async fn request(&mut self, method: u16, attrs: &[Attr], signed: bool) -> Resp {
        let req = self.build(method, attrs, signed);
        self.send(&req).await;
        loop {
            let raw = self.recv(Duration::from_secs(5)).await.expect("response");
            if let Some(r) = Resp::parse(&raw)
                && r.raw[8..20] == req[8..20]
            {
                return r;
            }
        }
    }

    /// Allocate with the challenge round trip; returns the final response.
    pub async fn allocate(&mut self) -> Resp {
        let r = self
            .request(wire::METHOD_ALLOCATE, &[udp_transport()], false)
            .await;
        assert_eq!(r.code(), Some(401));
        self.nonce = r.attr(wire::ATTR_NONCE).unwrap().to_vec();
        self.request(wire::METHOD_ALLOCATE, &[udp_transport()], true)
            .await
    }

    pub async fn allocate_ok(&mut self) -> SocketAddr {
        let r = self.allocate().await;
        assert_eq!(r.class, Class::Success, "allocate: {:?}", r.code());
        r.addr(wire::ATTR_XOR_RELAYED_ADDRESS)
    }

    pub async fn permit(&mut self, p: SocketAddr) -> Resp {
        let txid = self.txid();
        let a = peer_attr(p, txid);
        let req = self.build_with(wire::METHOD_CREATE_PERMISSION, txid, &[a], true);
        self.send(&req).await;
        self.response_to(&req).await
    }

    pub async fn bind_channel(&mut self, number: u16, p: SocketAddr) -> Resp {
        let txid = self.txid();
        let a = peer_attr(p, txid);
        let ch = (
            wire::ATTR_CHANNEL_NUMBER,
            vec![(number >> 8) as u8, number as u8, 0, 0],
        );
        let req = self.build_with(wire::METHOD_CHANNEL_BIND, txid, &[ch, a], true);
        self.send(&req).await;
        self.response_to(&req).await
    }

    pub async fn refresh(&mut self, lifetime: u32) -> Resp {
        self.request(
            wire::METHOD_REFRESH,
            &[(wire::ATTR_LIFETIME, lifetime.to_be_bytes().to_vec())],
            true,
        )
        .await
    }

    async fn response_to(&mut self, req: &[u8]) -> Resp {
        loop {
            let raw = self.recv(Duration::from_secs(5)).await.expect("response");
            if let Some(r) = Resp::parse(&raw)
                && r.raw[8..20] == req[8..20]
            {
                return r;
            }
        }
    }
}

/// Whether coturn's client tools are installed. When they are not, the test fails under
/// `CI=true` and is skipped with a message otherwise (see `testkit::prerequisite`).
pub fn have_turnutils(test: &str) -> bool {
    let present = ["/usr/bin/turnutils_uclient", "/usr/bin/turnutils_peer"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    testkit::prerequisite(
        present,
        test,
        "turnutils_uclient/turnutils_peer not installed (apt-get install coturn)",
    )
}

/// A self-signed certificate for `localhost` in a fresh directory (removed on drop), to serve
/// TURN over TLS on 127.0.0.1 and connect to it.
pub struct Tls {
    dir: std::path::PathBuf,
    cert: rustls::pki_types::CertificateDer<'static>,
}

impl Tls {
    pub fn new(tag: &str) -> Tls {
        let dir = std::env::temp_dir().join(format!("chorus-turn-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        Tls {
            dir,
            cert: cert.cert.der().clone(),
        }
    }

    /// `base` with a TLS listener on an ephemeral port serving this certificate.
    pub fn settings(&self, base: Settings) -> Settings {
        Settings {
            tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
            tls_cert_path: Some(self.dir.join("cert.pem")),
            tls_key_path: Some(self.dir.join("key.pem")),
            ..base
        }
    }

    /// A TLS connection to `addr` that trusts only this certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake")
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
