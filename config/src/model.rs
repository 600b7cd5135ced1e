//! The configuration model. Every field's doc says why it exists; `chorus.example.toml` repeats
//! them for operators, with each default.

use crate::webhook::{WebhookConfig, WebhookEndpoint};
use crate::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub presence: PresenceConfig,
    pub calls: CallsConfig,
    pub ice: IceConfig,
    pub chat: ChatConfig,
    pub rooms: RoomsConfig,
    pub sfu: SfuConfig,
    pub turn: TurnConfig,
    pub cluster: ClusterConfig,
    /// How webhook events are delivered; see [`WebhookConfig`].
    pub webhook: WebhookConfig,
    /// Where webhook events go: `[[webhooks]]` entries (none by default).
    pub webhooks: Vec<WebhookEndpoint>,
    /// The server API and token revocation; see [`AdminConfig`].
    pub admin: AdminConfig,
    /// WHIP ingest (RFC 9725) into rooms; see [`WhipConfig`].
    pub whip: WhipConfig,
}

/// Arrays of tables (`[[webhooks]]`): several entries, set in a file only (no variable names an
/// entry).
pub const ARRAY_SECTIONS: &[&str] = &["webhooks"];

/// Section names, which are also the first word of `CHORUS_<SECTION>_<KEY>` variables.
pub const SECTIONS: &[&str] = &[
    "server", "log", "auth", "limits", "presence", "calls", "ice", "chat", "rooms", "sfu", "turn",
    "cluster", "webhook", "admin", "whip",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP listener: WebSocket, Socket.IO, REST, metrics, demo page.
    pub listen: SocketAddr,
    /// Development mode: loopback only, generated secret, a sample token in the log, and the
    /// dev token endpoint. Never for production.
    pub dev: bool,
    /// Where local state lives (the SQLite chat database, generated dev secrets).
    pub data_dir: PathBuf,
    /// How long a graceful shutdown waits for clients to leave before closing them.
    pub drain_timeout: HumanDuration,
    /// What `server:shutdown` tells clients to wait before reconnecting (to another node).
    pub reconnect_hint: HumanDuration,
    /// Cap on simultaneous signaling connections, so one process cannot be exhausted.
    pub max_connections: u32,
    /// Cap on simultaneous connections from one IP address.
    pub max_connections_per_ip: u32,
    /// Cap on open TCP connections to `listen` from one source (an IPv4 address or an IPv6
    /// /64), counted when the connection is accepted: before any byte is read or any token
    /// checked, and for as long as an upgraded WebSocket lives. `max_connections_per_ip` counts
    /// only authenticated sessions, so without this one address could hold every descriptor
    /// with connections that never send a request. At least `max_connections_per_ip`.
    pub max_raw_connections_per_ip: u32,
    /// Time a client has to send a request's head (request line and headers): from the
    /// connection's start for its first request, from the request's first byte for later ones.
    /// Closes connections that send nothing and "slowloris" clients that trickle a header.
    pub header_read_timeout: HumanDuration,
    /// An HTTP connection that was not upgraded and moves no byte for this long while no
    /// request is being handled is closed: idle kept-alive connections, and clients that stop
    /// reading a response.
    pub idle_timeout: HumanDuration,
    /// Longest time from a request's head to its response's head, reading the request body
    /// included; a slower request is answered 408 and its connection closed, so a body sent a
    /// byte at a time cannot hold a connection. Keep it above 25 s: Socket.IO long-polling
    /// holds a request open that long between pings.
    pub request_timeout: HumanDuration,
    /// A separate listener for `/metrics` (e.g. `127.0.0.1:9100`); empty serves `/metrics` on
    /// `listen`. When set, `listen` no longer serves it: metrics describe load and traffic and
    /// belong on a port only the monitoring network reaches.
    pub metrics_listen: String,
    /// Serve the demo page (`/`, `/app.js`, ...). Off: those paths answer 404 like any unknown
    /// path, for deployments whose users come only through their own application.
    pub demo_page: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".parse().expect("literal address"),
            dev: false,
            data_dir: PathBuf::from("./data"),
            drain_timeout: HumanDuration::secs(10),
            reconnect_hint: HumanDuration::secs(2),
            max_connections: 20_000,
            max_connections_per_ip: 50,
            max_raw_connections_per_ip: 100,
            header_read_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(30),
            request_timeout: HumanDuration::secs(60),
            metrics_listen: String::new(),
            demo_page: true,
        }
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line for log collectors.
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `chorus=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// The JWT signature algorithm. Fixed by configuration: the token's own header never chooses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a secret shared with the application's backend.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256; Chorus holds only the public key.
    RS256,
    /// ECDSA P-256 with SHA-256; Chorus holds only the public key.
    ES256,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub algorithm: JwtAlgorithm,
    /// HS256 secret shared with the application's backend (at least 32 bytes).
    pub secret: String,
    /// RS256/ES256: PEM file with the public key that verifies tokens.
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: PEM file with the private key, only needed for `chorus token`.
    pub private_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`; at most 60 s.
    pub leeway: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::HS256,
            secret: String::new(),
            public_key_file: None,
            private_key_file: None,
            issuer: None,
            audience: None,
            leeway: HumanDuration::secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained client events per second per connection.
    pub events_per_second: u32,
    /// Events a connection may send at once above the sustained rate.
    pub event_burst: u32,
    /// Largest WebSocket message; larger ones close the connection with code 1009.
    pub max_frame_bytes: usize,
    /// Users one connection may watch with `presence:subscribe`.
    pub max_presence_subscriptions: usize,
    /// Calls one user may have started, accepted or joined and not yet left. Calls that only
    /// ring the user do not count, so others cannot use up someone's quota by calling them.
    pub max_calls_per_user: usize,
    /// Server events queued for one slow connection before it is dropped.
    pub outbound_queue: usize,
    /// Connections one user may hold at once (every node of a cluster together), so one
    /// account cannot exhaust a node's connection slots.
    pub max_connections_per_user: u32,
    /// Invitations one user may receive per minute, from every caller together, so nobody can
    /// be rung without end; beyond it `call:initiate` is refused with `invite_rate_limited`.
    pub invites_per_minute: u32,
    /// Invitations one user may receive at once above the sustained rate.
    pub invite_burst: u32,
    /// Bytes of server events queued for one slow connection before it is dropped (whichever
    /// of this and `outbound_queue` is reached first).
    pub outbound_queue_bytes: usize,
    /// A socket write that makes no progress for this long closes the connection: the peer
    /// stopped reading, and nothing it holds may stay pinned.
    pub write_timeout: HumanDuration,
    /// How long a WebSocket closed by the server waits for the client's close frame.
    pub close_timeout: HumanDuration,
    /// How long a session whose connection dropped (no close frame, no Socket.IO disconnect)
    /// keeps its calls, rooms, media seat and missed events for `session:resume`; `0s` turns
    /// resuming off. The missed events are bounded by `outbound_queue`/`outbound_queue_bytes`.
    pub resume_grace: HumanDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            events_per_second: 50,
            event_burst: 50,
            max_frame_bytes: 64 * 1024,
            max_presence_subscriptions: 1000,
            max_calls_per_user: 5,
            outbound_queue: 512,
            max_connections_per_user: 20,
            invites_per_minute: 20,
            invite_burst: 10,
            outbound_queue_bytes: 1024 * 1024,
            write_timeout: HumanDuration::secs(10),
            close_timeout: HumanDuration::secs(5),
            resume_grace: HumanDuration::secs(15),
        }
    }
}

/// Whose presence a user may see (`presence:subscribe`, `GET /api/v1/presence` and the
/// events that follow). A user one may not see looks exactly like an unknown offline user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceVisibility {
    /// Any authenticated user sees any user.
    Everyone,
    /// The users listed in the viewer's token claim `contacts`, and those who share a call or
    /// a room with the viewer. Without the claim this is `shared`.
    #[default]
    Contacts,
    /// Only users who share a live call (ringing included) or a room with the viewer.
    Shared,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// A connected user with no `activity:ping` (or other event) for this long shows as away.
    pub away_after: HumanDuration,
    /// Whose presence a user may see; the default keeps strangers from watching anyone.
    pub visibility: PresenceVisibility,
    /// Offline users whose `lastSeenAt` is remembered; beyond it the longest-gone are
    /// forgotten (they then show no `lastSeenAt`), so the memory held stays bounded. 0 keeps none.
    pub last_seen_capacity: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            away_after: HumanDuration::secs(300),
            visibility: PresenceVisibility::Contacts,
            last_seen_capacity: 50_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// An unanswered call ends as `missed` after this long.
    pub ring_timeout: HumanDuration,
    /// Every call ends as `timeout` after this long, so forgotten calls do not hold resources.
    pub max_duration: HumanDuration,
    /// Most users one call may hold (initiator and invitees together).
    pub max_participants: usize,
    /// A participant whose last connection dropped stays in the call this long, so a page
    /// reload does not end the call.
    pub reconnect_grace: HumanDuration,
    /// A call stays peer-to-peer while it has at most this many participants; beyond, its media
    /// goes through the SFU (`call:mode`). 0 sends every call through the SFU.
    pub p2p_max_participants: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout: HumanDuration::secs(45),
            max_duration: HumanDuration::secs(3600),
            max_participants: 50,
            reconnect_grace: HumanDuration::secs(20),
            p2p_max_participants: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceConfig {
    /// STUN URLs handed to clients (`stun:host:port`).
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients with ephemeral credentials (`turn:host:3478?transport=udp`).
    pub turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn `static-auth-secret`) to mint credentials.
    pub turn_secret: String,
    /// How long minted TURN credentials stay valid.
    pub credential_ttl: HumanDuration,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: String::new(),
            credential_ttl: HumanDuration::secs(6 * 3600),
        }
    }
}

/// The TURN/STUN relay. It authenticates with `ice.turn_secret` (the secret signaling mints
/// credentials with) and `previous_secrets`, and/or static users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run the relay in `chorus serve` (it starts only when a secret or a static user exists).
    pub enabled: bool,
    pub udp_listen: SocketAddr,
    pub tcp_listen: SocketAddr,
    /// TURN over TLS; used only when `tls_cert` and `tls_key` are set.
    pub tls_listen: SocketAddr,
    /// PEM certificate chain and private key for TURN over TLS.
    pub tls_cert: String,
    pub tls_key: String,
    pub realm: String,
    /// Older secrets still accepted while clients hold credentials minted with them (rotation).
    pub previous_secrets: Vec<String>,
    /// `user:password` long-term credentials, for tests and small setups.
    pub static_users: Vec<String>,
    /// Address relayed traffic leaves from. Empty: detected from the default route.
    pub relay_ip: String,
    /// Public address announced in XOR-RELAYED-ADDRESS behind a 1:1 NAT. Empty: `relay_ip`.
    pub external_ip: String,
    /// Relay port range.
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    /// Peer ranges to allow although they are private, loopback or reserved (e.g.
    /// `10.0.0.0/8` for an internal media server). Production must not allow loopback.
    pub allowed_peer_ranges: Vec<String>,
    /// Extra peer ranges to refuse.
    pub denied_peer_ranges: Vec<String>,
    pub max_allocations_per_user: u32,
    pub max_allocations_total: u32,
    /// Cap on TCP and TLS connections held at once from one source (an IPv4 address or an IPv6
    /// /64), counted at accept, so one address cannot take every stream slot. Clients behind
    /// one office or carrier NAT share it: raise it for them.
    pub max_connections_per_ip: u32,
    pub max_permissions_per_allocation: usize,
    pub max_channels_per_allocation: usize,
    /// Longest allocation lifetime a client may request (at most 1h).
    pub max_lifetime: HumanDuration,
    /// Relayed bytes per second per allocation and direction; 0 for no cap.
    pub max_allocation_bytes_per_second: u64,
    /// Relay worker threads; 0 for one per CPU core.
    pub workers: usize,
    /// How relay sockets are read and written.
    pub relay_io: TurnRelayIo,
}

/// How the TURN workers read and write relay sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnRelayIo {
    /// io_uring where the kernel allows it (Linux 6.0+, not blocked by seccomp), else epoll.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// epoll readiness and one system call per relayed packet.
    Epoll,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: "0.0.0.0:3478".parse().expect("literal address"),
            tcp_listen: "0.0.0.0:3478".parse().expect("literal address"),
            tls_listen: "0.0.0.0:5349".parse().expect("literal address"),
            tls_cert: String::new(),
            tls_key: String::new(),
            realm: "chorus".into(),
            previous_secrets: Vec::new(),
            static_users: Vec::new(),
            relay_ip: String::new(),
            external_ip: String::new(),
            relay_port_min: 49152,
            relay_port_max: 65535,
            allowed_peer_ranges: Vec::new(),
            denied_peer_ranges: Vec::new(),
            max_allocations_per_user: 10,
            max_allocations_total: 10_000,
            max_connections_per_ip: 100,
            max_permissions_per_allocation: 32,
            max_channels_per_allocation: 32,
            max_lifetime: HumanDuration::secs(3600),
            max_allocation_bytes_per_second: 2_500_000,
            workers: 0,
            relay_io: TurnRelayIo::Auto,
        }
    }
}

/// Which ICE transports the SFU advertises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SfuCandidates {
    /// UDP, and TCP when `tcp_listen` is set.
    #[default]
    Both,
    Udp,
    /// Only ICE-TCP (for clients behind UDP-blocking firewalls, and for testing).
    Tcp,
}

/// The selective forwarding unit (group calls and rooms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SfuConfig {
    /// Run the SFU in this process. Off: calls stay peer-to-peer and rooms carry no media.
    pub enabled: bool,
    /// The first media worker's UDP address; worker `i` listens on its port plus `i`.
    pub udp_listen: SocketAddr,
    /// Media worker threads, each holding its own rooms and UDP port; 0 for one per CPU core.
    pub workers: usize,
    /// ICE-TCP (RFC 4571) listener; empty turns ICE-TCP off.
    pub tcp_listen: String,
    /// Addresses advertised in the SFU's candidates. Empty: detected from the default route
    /// (in dev mode: 127.0.0.1). Behind NAT, set the public address.
    pub public_ips: Vec<String>,
    pub candidates: SfuCandidates,
    /// A participant whose peer sends nothing for this long is removed.
    pub ice_timeout: HumanDuration,
    /// Most m-lines in one client offer.
    pub max_mlines_per_offer: usize,
    /// Most tracks one participant may publish.
    pub max_tracks_per_participant: usize,
    /// Estimate each subscriber's downlink (TWCC) and fit the simulcast layers it receives
    /// into it. Off: every subscriber gets the layers it asks for, whatever its link.
    pub congestion_control: bool,
    /// How long the video sent to each subscriber is kept for retransmission on NACK; `0s`
    /// retransmits nothing. At most 10 s.
    pub nack_history: HumanDuration,
    /// Largest data channel message one participant may send, in bytes (`limit_exceeded` above
    /// it). At most 65 536: what every WebRTC stack can receive, envelope included.
    pub data_max_message_bytes: usize,
    /// Data channel messages per second one participant may send, over both channels; also the
    /// burst (`rate_limited` above it).
    pub data_messages_per_second: u32,
    /// Data channel payload bytes per second one participant may send; also the burst. At least
    /// `data_max_message_bytes`, so a message at the size limit can pass.
    pub data_bytes_per_second: u32,
    /// Data channel bytes the SFU may hold unsent for one receiver. A receiver that does not
    /// keep up loses lossy messages once half of this is queued, reliable ones once it is full;
    /// it never pins more memory than this.
    pub data_max_buffered_bytes: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: "0.0.0.0:7882".parse().expect("literal address"),
            workers: 0,
            tcp_listen: "0.0.0.0:7882".into(),
            public_ips: Vec::new(),
            candidates: SfuCandidates::Both,
            ice_timeout: HumanDuration::secs(15),
            max_mlines_per_offer: 256,
            max_tracks_per_participant: 8,
            congestion_control: true,
            nack_history: HumanDuration::secs(1),
            data_max_message_bytes: 16 * 1024,
            data_messages_per_second: 50,
            data_bytes_per_second: 64 * 1024,
            data_max_buffered_bytes: 256 * 1024,
        }
    }
}

/// Named rooms (SFU).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Whether `room:join` creates a room that does not exist yet. Unset: on in dev mode, off
    /// otherwise (then only an `admin` token's join creates a room).
    pub auto_create: Option<bool>,
    /// Most participants (users) in one room.
    pub max_participants: usize,
    /// Most rooms open at once on this node.
    pub max_rooms: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            auto_create: None,
            max_participants: 50,
            max_rooms: 1000,
        }
    }
}

impl RoomsConfig {
    /// Whether rooms are created on first join, given dev mode.
    pub fn auto_create(&self, dev: bool) -> bool {
        self.auto_create.unwrap_or(dev)
    }
}

/// How SQLite commits chat messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync at every commit: an acked message survives a power cut.
    #[default]
    Full,
    /// fsync at checkpoints only: an acked message survives a killed process, not a power cut.
    Normal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Empty: a SQLite file `<server.data_dir>/chat.db`. `sqlite://PATH` for another file,
    /// `postgres://...` to share chat between nodes.
    pub database_url: String,
    /// SQLite commit durability.
    pub sqlite_sync: SqliteSync,
    /// Database connections per process (PostgreSQL); half of them (at most 8) are write lanes
    /// that commit messages in groups.
    pub max_connections: u32,
    /// Messages older than this are deleted in the background; so are conversations (with
    /// their members) that hold no message and saw no join or message for this long.
    pub retention: HumanDuration,
    /// Longest message, in characters.
    pub max_content_chars: usize,
    /// How long after sending a message its author may edit it.
    pub edit_window: HumanDuration,
    /// Sustained messages per second per user; `0` turns the limit off (benchmarks only).
    pub messages_per_second: u32,
    /// Messages a user may send at once above the sustained rate.
    pub message_burst: u32,
    /// A typing indicator not refreshed for this long is cleared.
    pub typing_timeout: HumanDuration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            sqlite_sync: SqliteSync::Full,
            max_connections: 10,
            retention: HumanDuration::secs(30 * 24 * 3600),
            max_content_chars: 4000,
            edit_window: HumanDuration::secs(24 * 3600),
            messages_per_second: 10,
            message_burst: 20,
            typing_timeout: HumanDuration::secs(10),
        }
    }
}

/// Several nodes sharing users, calls, rooms and presence through Redis. With no `redis_url`
/// the process is one node on its own, exactly as without this section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379` (or `redis://:password@host:6379/0`): the Redis every node of the
    /// cluster shares. Empty: a single node, no Redis.
    pub redis_url: String,
    /// This node's name in the cluster, unique among its nodes (letters, digits, `-`, `_`, `.`).
    /// Empty: generated at start (`node-` and 8 hex digits), so a restarted node is a new node.
    pub node_id: String,
    /// Prefix of every Redis key and channel Chorus uses, so several clusters (or tests) can
    /// share one Redis.
    pub key_prefix: String,
    /// Where operators and other nodes' tools reach this node's HTTP listener
    /// (`http://10.0.0.5:8080`); shown in the node registry. Empty: `server.listen`.
    pub advertise_url: String,
    /// How often the node writes its heartbeat (load, draining flag).
    pub heartbeat_interval: HumanDuration,
    /// A node whose heartbeat is older than this is dead: its calls and rooms move elsewhere.
    pub node_timeout: HumanDuration,
    /// How long a node waits for another node to answer a relayed request.
    pub request_timeout: HumanDuration,
    /// How much more loaded than the least loaded live node (participants + CPU percent) this
    /// node may be and still own a call or room its own clients create. A space owned where its
    /// first members are connected needs no relay and keeps working while Redis is away; 0
    /// always places on the least loaded node, a large value always keeps spaces local.
    pub local_preference: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            node_id: String::new(),
            key_prefix: "chorus:".into(),
            advertise_url: String::new(),
            heartbeat_interval: HumanDuration::secs(2),
            node_timeout: HumanDuration::secs(5),
            request_timeout: HumanDuration::secs(5),
            local_preference: 10,
        }
    }
}

impl ClusterConfig {
    /// Whether this process is part of a multi-node cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

/// The server API (`/api/v1/admin/...`) and token revocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Keys an application backend may present as `Authorization: Bearer <key>` instead of a
    /// JWT with the `admin` grant; each at least 32 bytes, compared in constant time. Empty:
    /// only admin JWTs are accepted.
    pub api_keys: Vec<String>,
    /// Largest request body the server API reads, in bytes; a larger one is refused with 413.
    pub max_body_bytes: usize,
    /// How long a revocation is kept when the request names no `expiresAt`: at least as long
    /// as the longest lifetime of the tokens you issue.
    pub revocation_ttl: HumanDuration,
    /// Most revocations in force at once (they lapse as the tokens they name expire).
    pub max_revocations: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            max_body_bytes: 64 * 1024,
            revocation_ttl: HumanDuration::secs(24 * 3600),
            max_revocations: 100_000,
        }
    }
}

/// WHIP ingest (RFC 9725): an encoder publishes into a room over HTTP at
/// `/whip/v1/rooms/{room}`, as a participant of the room; and WHEP playback of a participant
/// at `/whep/v1/rooms/{room}/participants/{user}` (or of the active speaker), as a viewer
/// hidden from the room. Served only with the SFU on. The two share the endpoint switch, the
/// connect timeout and the SDP size; each has its own session limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhipConfig {
    /// Serve the WHIP and WHEP endpoints (they also need `sfu.enabled`).
    pub enabled: bool,
    /// Most WHIP (publishing) sessions one user holds at once on this node; one more is
    /// refused with 409.
    pub max_sessions_per_user: usize,
    /// Most WHIP (publishing) sessions in one room at once on this node.
    pub max_sessions_per_room: usize,
    /// Most WHEP (viewing) sessions one user holds at once on this node; one more is refused
    /// with 409.
    pub max_viewer_sessions_per_user: usize,
    /// Most WHEP viewers of one room at once. Viewers do not count toward
    /// `rooms.max_participants`; this is their cap. A viewer's session lives on the room's
    /// owner node, so in a cluster too this bounds the whole room.
    pub max_viewers_per_room: usize,
    /// A session whose ICE and DTLS are not up this long after its answer ends (its
    /// participant leaves the room), so an encoder that never connects holds nothing.
    pub connect_timeout: HumanDuration,
    /// Largest SDP offer or trickle fragment read, in bytes; a larger body gets 413.
    pub max_sdp_bytes: usize,
}

impl Default for WhipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_sessions_per_user: 4,
            max_sessions_per_room: 8,
            max_viewer_sessions_per_user: 4,
            max_viewers_per_room: 100,
            connect_timeout: HumanDuration::secs(15),
            max_sdp_bytes: 64 * 1024,
        }
    }
}

/// Longest JWT leeway accepted: more would make `exp` meaningless.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Most TURN worker threads: each holds about 5 MiB of relay buffers and its own sockets.
pub const MAX_TURN_WORKERS: usize = 256;
/// Most SFU media workers (`sfu.workers`).
pub const MAX_SFU_WORKERS: usize = 256;

/// What a process runs, which decides the settings it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Signaling and everything beside it (`chorus serve`, `chorus token`, `check-config`).
    Full,
    /// The TURN relay alone (`chorus turn`): no JWT is ever checked, so `[auth]` need not be set.
    TurnOnly,
}

impl Config {
    /// Checks what the types cannot, for [`Role::Full`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Role::Full)
    }

    /// Checks what the types cannot, for a process in `role`. `dev` relaxes the secret check:
    /// dev mode generates one.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        if role == Role::Full {
            self.validate_auth()?;
        }
        self.validate_rest()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if auth.leeway.get().as_secs() > MAX_LEEWAY_SECS {
            return Err(invalid(
                "auth.leeway",
                format!("at most {MAX_LEEWAY_SECS}s"),
            ));
        }
        match auth.algorithm {
            JwtAlgorithm::HS256 => {
                if !self.server.dev && auth.secret.len() < MIN_SECRET_BYTES {
                    return Err(invalid(
                        "auth.secret",
                        format!(
                            "HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes (or run with --dev)"
                        ),
                    ));
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let Some(path) = &auth.public_key_file else {
                    return Err(invalid(
                        "auth.public_key_file",
                        "RS256 and ES256 need the public key PEM file",
                    ));
                };
                std::fs::metadata(path).map_err(|e| {
                    invalid("auth.public_key_file", format!("{}: {e}", path.display()))
                })?;
            }
        }
        for (key, value) in [
            ("auth.issuer", &auth.issuer),
            ("auth.audience", &auth.audience),
        ] {
            if value.as_deref() == Some("") {
                return Err(invalid(key, "leave it out instead of setting it empty"));
            }
        }
        Ok(())
    }

    fn validate_whip(&self) -> Result<(), ConfigError> {
        let w = &self.whip;
        positive("whip.max_sessions_per_user", w.max_sessions_per_user as u64)?;
        positive("whip.max_sessions_per_room", w.max_sessions_per_room as u64)?;
        positive(
            "whip.max_viewer_sessions_per_user",
            w.max_viewer_sessions_per_user as u64,
        )?;
        positive("whip.max_viewers_per_room", w.max_viewers_per_room as u64)?;
        positive_duration("whip.connect_timeout", w.connect_timeout)?;
        if w.max_sdp_bytes < 1024 {
            return Err(invalid("whip.max_sdp_bytes", "at least 1024"));
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.enabled()
            && !(c.redis_url.starts_with("redis://") || c.redis_url.starts_with("rediss://"))
        {
            return Err(invalid(
                "cluster.redis_url",
                "a redis:// or rediss:// URL, or empty for a single node",
            ));
        }
        let name_ok = |s: &str| {
            s.len() <= 64
                && s.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        };
        if !name_ok(&c.node_id) {
            return Err(invalid(
                "cluster.node_id",
                "at most 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        if c.key_prefix.len() > 64 || c.key_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "cluster.key_prefix",
                "at most 64 characters, no white space",
            ));
        }
        positive_duration("cluster.heartbeat_interval", c.heartbeat_interval)?;
        positive_duration("cluster.request_timeout", c.request_timeout)?;
        if c.node_timeout.get() <= c.heartbeat_interval.get() {
            return Err(invalid(
                "cluster.node_timeout",
                "longer than `cluster.heartbeat_interval`",
            ));
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let a = &self.admin;
        if a.api_keys.iter().any(|k| k.len() < MIN_SECRET_BYTES) {
            return Err(invalid(
                "admin.api_keys",
                format!("every key must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        if a.max_body_bytes < 1024 || a.max_body_bytes > 1024 * 1024 {
            return Err(invalid("admin.max_body_bytes", "between 1024 and 1048576"));
        }
        positive("admin.revocation_ttl", a.revocation_ttl.get().as_secs())?;
        positive("admin.max_revocations", a.max_revocations as u64)?;
        Ok(())
    }

    fn validate_rest(&self) -> Result<(), ConfigError> {
        self.validate_admin()?;
        self.validate_whip()?;
        let l = &self.limits;
        positive("limits.events_per_second", l.events_per_second as u64)?;
        positive("limits.event_burst", l.event_burst as u64)?;
        if l.max_frame_bytes < 1024 || l.max_frame_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_frame_bytes",
                "between 1024 and 16777216",
            ));
        }
        positive("limits.max_calls_per_user", l.max_calls_per_user as u64)?;
        positive(
            "limits.max_connections_per_user",
            l.max_connections_per_user as u64,
        )?;
        self.validate_cluster()?;
        crate::webhook::validate(&self.webhook, &self.webhooks)?;
        positive("limits.invites_per_minute", l.invites_per_minute as u64)?;
        positive("limits.invite_burst", l.invite_burst as u64)?;
        if l.outbound_queue < 16 {
            return Err(invalid("limits.outbound_queue", "at least 16"));
        }
        if l.outbound_queue_bytes < l.max_frame_bytes {
            return Err(invalid(
                "limits.outbound_queue_bytes",
                "at least limits.max_frame_bytes, so a relayed message fits",
            ));
        }
        positive_duration("limits.write_timeout", l.write_timeout)?;
        positive_duration("limits.close_timeout", l.close_timeout)?;
        positive("server.max_connections", self.server.max_connections as u64)?;
        positive(
            "server.max_connections_per_ip",
            self.server.max_connections_per_ip as u64,
        )?;
        self.validate_edge()?;
        let c = &self.calls;
        positive_duration("calls.ring_timeout", c.ring_timeout)?;
        positive_duration("calls.max_duration", c.max_duration)?;
        positive_duration("presence.away_after", self.presence.away_after)?;
        positive_duration("ice.credential_ttl", self.ice.credential_ttl)?;
        if c.max_participants < 2 {
            return Err(invalid("calls.max_participants", "at least 2"));
        }
        for url in &self.ice.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(invalid(
                    "ice.stun_urls",
                    format!("`{url}` is not a stun: URL"),
                ));
            }
        }
        for url in &self.ice.turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(invalid(
                    "ice.turn_urls",
                    format!("`{url}` is not a turn: URL"),
                ));
            }
        }
        let chat = &self.chat;
        let url = chat.database_url.as_str();
        if !(url.is_empty()
            || url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "chat.database_url",
                "expected empty (SQLite in data_dir), sqlite://PATH or postgres://...",
            ));
        }
        positive("chat.max_connections", chat.max_connections as u64)?;
        positive_duration("chat.retention", chat.retention)?;
        positive_duration("chat.edit_window", chat.edit_window)?;
        positive_duration("chat.typing_timeout", chat.typing_timeout)?;
        if chat.max_content_chars == 0 || chat.max_content_chars > 100_000 {
            return Err(invalid("chat.max_content_chars", "between 1 and 100000"));
        }
        if chat.messages_per_second > 0 && chat.message_burst == 0 {
            return Err(invalid("chat.message_burst", "must be greater than 0"));
        }
        let turn = &self.turn;
        if turn.relay_port_min == 0 || turn.relay_port_min > turn.relay_port_max {
            return Err(invalid(
                "turn.relay_port_min",
                "a port no larger than turn.relay_port_max",
            ));
        }
        positive(
            "turn.max_connections_per_ip",
            turn.max_connections_per_ip as u64,
        )?;
        if turn.workers > MAX_TURN_WORKERS {
            return Err(invalid(
                "turn.workers",
                format!("at most {MAX_TURN_WORKERS} (0: one per CPU core)"),
            ));
        }
        if turn.max_lifetime.get().as_secs() > 3600 || turn.max_lifetime.get().is_zero() {
            return Err(invalid("turn.max_lifetime", "between 1s and 1h"));
        }
        if turn.tls_cert.is_empty() != turn.tls_key.is_empty() {
            return Err(invalid("turn.tls_key", "tls_cert and tls_key go together"));
        }
        for (key, ip) in [
            ("turn.relay_ip", &turn.relay_ip),
            ("turn.external_ip", &turn.external_ip),
        ] {
            if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(key, format!("`{ip}` is not an IP address")));
            }
        }
        for (key, ranges) in [
            ("turn.allowed_peer_ranges", &turn.allowed_peer_ranges),
            ("turn.denied_peer_ranges", &turn.denied_peer_ranges),
        ] {
            for r in ranges {
                if !is_ip_range(r) {
                    return Err(invalid(
                        key,
                        format!("`{r}` is not a range like 10.0.0.0/8"),
                    ));
                }
            }
        }
        for u in &turn.static_users {
            if !u.contains(':') {
                return Err(invalid("turn.static_users", "entries are `user:password`"));
            }
        }
        let sfu = &self.sfu;
        if sfu.workers > MAX_SFU_WORKERS {
            return Err(invalid(
                "sfu.workers",
                format!("at most {MAX_SFU_WORKERS} (0: one per CPU core)"),
            ));
        }
        let port = usize::from(sfu.udp_listen.port());
        if port != 0 && port + sfu.workers.max(1) - 1 > usize::from(u16::MAX) {
            return Err(invalid(
                "sfu.udp_listen",
                "a port that leaves room for one port per worker (sfu.workers) below 65536",
            ));
        }
        if !sfu.tcp_listen.is_empty() && sfu.tcp_listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "sfu.tcp_listen",
                "an address like 0.0.0.0:7882, or empty",
            ));
        }
        for ip in &sfu.public_ips {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "sfu.public_ips",
                    format!("`{ip}` is not an IP address"),
                ));
            }
        }
        if sfu.candidates == SfuCandidates::Tcp && sfu.tcp_listen.is_empty() {
            return Err(invalid("sfu.candidates", "\"tcp\" needs sfu.tcp_listen"));
        }
        positive_duration("sfu.ice_timeout", sfu.ice_timeout)?;
        if sfu.nack_history.get() > std::time::Duration::from_secs(10) {
            return Err(invalid("sfu.nack_history", "at most 10s"));
        }
        positive("sfu.max_mlines_per_offer", sfu.max_mlines_per_offer as u64)?;
        positive(
            "sfu.max_tracks_per_participant",
            sfu.max_tracks_per_participant as u64,
        )?;
        if sfu.data_max_message_bytes == 0 || sfu.data_max_message_bytes > 65_536 {
            return Err(invalid("sfu.data_max_message_bytes", "between 1 and 65536"));
        }
        positive(
            "sfu.data_messages_per_second",
            sfu.data_messages_per_second.into(),
        )?;
        if (sfu.data_bytes_per_second as usize) < sfu.data_max_message_bytes {
            return Err(invalid(
                "sfu.data_bytes_per_second",
                "at least sfu.data_max_message_bytes, so a message at the size limit can pass",
            ));
        }
        if sfu.data_max_buffered_bytes < 2 * (sfu.data_max_message_bytes + 1024) {
            return Err(invalid(
                "sfu.data_max_buffered_bytes",
                "at least twice sfu.data_max_message_bytes plus 1024 (room for the envelope)",
            ));
        }
        if self.rooms.max_participants < 2 {
            return Err(invalid("rooms.max_participants", "at least 2"));
        }
        positive("rooms.max_rooms", self.rooms.max_rooms as u64)?;
        if !self.ice.turn_urls.is_empty() && self.ice.turn_secret.is_empty() {
            return Err(invalid(
                "ice.turn_secret",
                "TURN URLs need the shared secret",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The HTTP listener's own limits: timeouts, the raw per-IP cap, the metrics listener.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.max_raw_connections_per_ip < s.max_connections_per_ip {
            return Err(invalid(
                "server.max_raw_connections_per_ip",
                format!(
                    "at least server.max_connections_per_ip ({}): every session is a connection",
                    s.max_connections_per_ip
                ),
            ));
        }
        positive_duration("server.header_read_timeout", s.header_read_timeout)?;
        positive_duration("server.idle_timeout", s.idle_timeout)?;
        positive_duration("server.request_timeout", s.request_timeout)?;
        if !s.metrics_listen.is_empty() {
            match s.metrics_listen.parse::<SocketAddr>() {
                Ok(addr) if addr == s.listen && addr.port() != 0 => {
                    return Err(invalid(
                        "server.metrics_listen",
                        "must differ from server.listen (leave it empty to serve /metrics there)",
                    ));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(invalid(
                        "server.metrics_listen",
                        "an address like 127.0.0.1:9100, or empty",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

fn positive_duration(key: &str, value: HumanDuration) -> Result<(), ConfigError> {
    if value.get().is_zero() {
        Err(invalid(key, "must be longer than 0s"))
    } else {
        Ok(())
    }
}

/// Whether `r` is an address or a CIDR range (`10.0.0.0/8`, `fd00::/8`).
pub(crate) fn is_ip_range(r: &str) -> bool {
    match r.split_once('/') {
        Some((ip, prefix)) => {
            ip.parse::<std::net::IpAddr>().is_ok() && prefix.parse::<u8>().is_ok()
        }
        None => r.parse::<std::net::IpAddr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::default();
        c.auth.secret = "0123456789abcdef0123456789abcdef".into();
        c
    }

    fn refused_key(tweak: impl FnOnce(&mut Config)) -> String {
        let mut c = valid();
        tweak(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn http_edge_limits_are_checked() {
        assert!(valid().validate().is_ok());
        assert_eq!(
            refused_key(|c| c.server.max_raw_connections_per_ip = 10),
            "server.max_raw_connections_per_ip"
        );
        assert_eq!(
            refused_key(|c| c.server.header_read_timeout = HumanDuration::secs(0)),
            "server.header_read_timeout"
        );
        assert_eq!(
            refused_key(|c| c.server.idle_timeout = HumanDuration::secs(0)),
            "server.idle_timeout"
        );
        assert_eq!(
            refused_key(|c| c.server.request_timeout = HumanDuration::secs(0)),
            "server.request_timeout"
        );
        assert_eq!(
            refused_key(|c| c.turn.max_connections_per_ip = 0),
            "turn.max_connections_per_ip"
        );
    }

    #[test]
    fn sfu_data_channel_limits_are_checked() {
        assert_eq!(
            refused_key(|c| c.sfu.nack_history = HumanDuration::secs(11)),
            "sfu.nack_history"
        );
        assert_eq!(
            refused_key(|c| c.sfu.data_max_message_bytes = 0),
            "sfu.data_max_message_bytes"
        );
        assert_eq!(
            refused_key(|c| c.sfu.data_max_message_bytes = 65_537),
            "sfu.data_max_message_bytes"
        );
        assert_eq!(
            refused_key(|c| c.sfu.data_messages_per_second = 0),
            "sfu.data_messages_per_second"
        );
        assert_eq!(
            refused_key(|c| c.sfu.data_bytes_per_second = 1000),
            "sfu.data_bytes_per_second"
        );
        assert_eq!(
            refused_key(|c| c.sfu.data_max_buffered_bytes = 16 * 1024),
            "sfu.data_max_buffered_bytes"
        );
    }

    #[test]
    fn whip_and_whep_limits_are_checked() {
        assert_eq!(
            refused_key(|c| c.whip.max_sessions_per_room = 0),
            "whip.max_sessions_per_room"
        );
        assert_eq!(
            refused_key(|c| c.whip.max_viewer_sessions_per_user = 0),
            "whip.max_viewer_sessions_per_user"
        );
        assert_eq!(
            refused_key(|c| c.whip.max_viewers_per_room = 0),
            "whip.max_viewers_per_room"
        );
    }

    #[test]
    fn metrics_listen_is_empty_or_another_address() {
        let mut c = valid();
        c.server.metrics_listen = "127.0.0.1:9100".into();
        assert!(c.validate().is_ok());
        assert_eq!(
            refused_key(|c| c.server.metrics_listen = "localhost".into()),
            "server.metrics_listen"
        );
        assert_eq!(
            refused_key(|c| c.server.metrics_listen = c.server.listen.to_string()),
            "server.metrics_listen"
        );
    }
}
