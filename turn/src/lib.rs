//! Chorus TURN: a TURN/STUN relay (RFC 8656 over RFC 8489) for WebRTC clients behind NATs and
//! firewalls, built as a sans-IO core plus a thin driver.
//!
//! # Parts
//! - [`core`]: the protocol state machine. No clock, no sockets: feed it packets and time, drain
//!   its transmits and events. Deterministic tests drive it with simulated time.
//! - [`Server`]: the driver. One worker thread per CPU core, each owning a [`core::Core`], its own
//!   `SO_REUSEPORT` UDP socket(s) and TCP/TLS listeners, the TCP/TLS connections the kernel hands
//!   it, and the relay sockets of its allocations. Relay sockets go through io_uring on Linux
//!   (multishot receives, queued sends; [`RelayIo`]), everything else is polled with `mio`. The
//!   packet path takes no lock and allocates nothing.
//! - [`rest_credential`]: mints the TURN REST credentials (coturn `use-auth-secret` format) that
//!   the signaling service hands out in `iceServers`.
//!
//! # Security defaults
//! - Only authenticated Allocate/Refresh/CreatePermission/ChannelBind; REST credentials expire
//!   and expiry is checked on every request; several secrets allow rotation.
//! - Nonces are stateless HMACs of a timestamp and the client IP: an unauthenticated request
//!   creates no state, and 401/438 responses are rate-limited per source IP.
//! - Integrity is compared in constant time. No SOFTWARE attribute is ever sent.
//! - Peers in non-public ranges and the server's own addresses are refused (403) after
//!   normalising IPv4-embedding IPv6 forms; see [`peer`].
//! - Quotas on allocations (per user and total), permissions, channels, lifetime, bandwidth.
//!
//! # Running
//! ```no_run
//! # async fn demo() -> Result<(), turn::Error> {
//! let settings = turn::Settings {
//!     secrets: vec!["shared-with-signaling".into()],
//!     relay_ip: Some("203.0.113.7".parse().unwrap()),
//!     ..turn::Settings::default()
//! };
//! let registry = prometheus::Registry::new();
//! let server = turn::Server::bind(settings, &registry).await?;
//! println!("{:?}", server.local_addrs());
//! server.run(std::future::pending()).await
//! # }
//! ```

pub mod auth;
pub mod core;
mod driver;
mod error;
pub mod metrics;
pub mod peer;
mod ratelimit;
mod settings;
pub mod wire;

pub use auth::rest_credential;
pub use driver::{BoundAddrs, Server};
pub use error::Error;
pub use settings::{RelayIo, Settings, StaticUser};
