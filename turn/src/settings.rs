//! [`Settings`]: everything an operator can tune, with defaults that are safe on the Internet.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use crate::peer::IpRange;

/// Configuration of the TURN server. The `chorus` binary maps its global config onto this; tests
/// build it directly. `Default` gives the production defaults of issue 4.
#[derive(Debug, Clone)]
pub struct Settings {
    /// UDP listen addresses (default `0.0.0.0:3478`). Most WebRTC clients use TURN over UDP; on
    /// Linux each address gets one `SO_REUSEPORT` socket per worker.
    pub udp_listen: Vec<SocketAddr>,
    /// TCP listen addresses (default `0.0.0.0:3478`), for clients whose firewall drops UDP.
    pub tcp_listen: Vec<SocketAddr>,
    /// TLS listen addresses (default `0.0.0.0:5349`), for networks that only pass TLS. Ignored
    /// unless both `tls_cert_path` and `tls_key_path` are set.
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain for TLS; `None` disables TLS.
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for TLS; `None` disables TLS.
    pub tls_key_path: Option<PathBuf>,
    /// REALM sent in challenges and mixed into the long-term key; must match what clients use
    /// (browsers take it from the challenge, so any value works).
    pub realm: String,
    /// Shared secrets for TURN REST credentials (coturn `use-auth-secret`). The first one mints
    /// credentials; all are accepted, so a new secret can be added before the old one is removed.
    pub secrets: Vec<String>,
    /// Static long-term users, for tests and small setups without a signaling service.
    pub static_users: Vec<StaticUser>,
    /// Local IP relay sockets bind to. `None`: the IP of the listener the Allocate arrived on
    /// (which must then not be a wildcard).
    pub relay_ip: Option<IpAddr>,
    /// IP advertised in XOR-RELAYED-ADDRESS when the server sits behind 1:1 NAT (cloud VMs).
    /// `None`: advertise the relay socket's own address.
    pub external_ip: Option<IpAddr>,
    /// Ports relay sockets are taken from; firewalls must open this range.
    pub relay_ports: RangeInclusive<u16>,
    /// Peer ranges allowed even though the safe default refuses them (e.g. `127.0.0.0/8` in tests,
    /// or a private network the relay is meant to reach).
    pub allowed_peer_ranges: Vec<IpRange>,
    /// Peer ranges always refused, checked before `allowed_peer_ranges`.
    pub denied_peer_ranges: Vec<IpRange>,
    /// Most live allocations per user (the `userId` part of a REST username), so one leaked
    /// credential cannot take every port.
    pub max_allocations_per_user: u32,
    /// Most live allocations on this server, bounding memory and ports.
    pub max_allocations_total: u32,
    /// Most permissions per allocation; a call needs a handful.
    pub max_permissions_per_allocation: usize,
    /// Most channels per allocation; a call needs a handful.
    pub max_channels_per_allocation: usize,
    /// Lifetime granted when the client asks for less or nothing (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Longest lifetime granted; clients must Refresh to keep an allocation longer.
    pub max_lifetime: Duration,
    /// Bytes per second an allocation may relay in each direction; excess is dropped. 0 = no cap.
    /// The default (2.5 MB/s, 20 Mbit/s) carries 1080p video with room to spare.
    pub max_allocation_bytes_per_second: u64,
    /// How long a NONCE stays valid before the client gets 438 and a fresh one.
    pub nonce_lifetime: Duration,
    /// 401/438 responses per second per source IP (token rate). Bounds the CPU an
    /// unauthenticated flood can make us spend on challenges, and the reflection it can cause.
    pub unauthenticated_responses_per_second: u32,
    /// Burst allowed above that rate, so many clients behind one NAT can start together.
    pub unauthenticated_burst: u32,
    /// Most simultaneous TCP/TLS client connections per worker.
    pub max_stream_connections: usize,
    /// Most TCP/TLS client connections held at once from one source (an IPv4 address or an
    /// IPv6 /64), across all workers; more are closed at accept. Without it one address could
    /// take every stream slot with connections that never authenticate.
    pub max_stream_connections_per_ip: u32,
    /// Time a TCP/TLS client has to finish the TLS handshake (TLS) and send its first complete
    /// STUN message; a connection that has not is closed, so idle or stalled handshakes cannot
    /// hold slots.
    pub stream_handshake_timeout: Duration,
    /// Worker threads; 0 means one per CPU core (each gets its own `SO_REUSEPORT` sockets).
    pub workers: usize,
    /// How workers read and write relay sockets.
    pub relay_io: RelayIo,
}

/// How a worker reads and writes its allocations' relay sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayIo {
    /// io_uring where the kernel allows it (Linux 6.0+, not forbidden by seccomp), epoll
    /// otherwise.
    #[default]
    Auto,
    /// io_uring, or the server does not start: for benchmarks, and for operators who want to
    /// know rather than fall back silently.
    IoUring,
    /// epoll readiness, and one system call per relayed packet.
    Epoll,
}

impl FromStr for RelayIo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RelayIo::Auto),
            "io_uring" => Ok(RelayIo::IoUring),
            "epoll" => Ok(RelayIo::Epoll),
            _ => Err(format!("expected auto, io_uring or epoll, got {s:?}")),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Settings {
            udp_listen: vec![SocketAddr::new(any, 3478)],
            tcp_listen: vec![SocketAddr::new(any, 3478)],
            tls_listen: vec![SocketAddr::new(any, 5349)],
            tls_cert_path: None,
            tls_key_path: None,
            realm: "chorus".into(),
            secrets: Vec::new(),
            static_users: Vec::new(),
            relay_ip: None,
            external_ip: None,
            relay_ports: 49152..=65535,
            allowed_peer_ranges: Vec::new(),
            denied_peer_ranges: Vec::new(),
            max_allocations_per_user: 10,
            max_allocations_total: 10_000,
            max_permissions_per_allocation: 32,
            max_channels_per_allocation: 32,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            max_allocation_bytes_per_second: 2_500_000,
            nonce_lifetime: Duration::from_secs(600),
            unauthenticated_responses_per_second: 50,
            unauthenticated_burst: 500,
            max_stream_connections: 10_000,
            max_stream_connections_per_ip: 100,
            stream_handshake_timeout: Duration::from_secs(10),
            workers: 0,
            relay_io: RelayIo::Auto,
        }
    }
}

/// A static long-term credential, written `user:password` in config.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticUser {
    /// USERNAME the client sends.
    pub username: String,
    /// Plain password (the long-term key is derived from it with the realm).
    pub password: String,
}

impl std::fmt::Debug for StaticUser {
    // Keeps passwords out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl FromStr for StaticUser {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(StaticUser {
                username: u.into(),
                password: p.into(),
            }),
            _ => Err(format!("static user must be `user:password`, got {s:?}")),
        }
    }
}
