//! Errors the driver reports to its caller. Protocol errors never surface here: they become STUN
//! error responses or dropped packets.

use std::net::SocketAddr;

/// Why the TURN server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings are inconsistent (the message says which field).
    #[error("invalid TURN settings: {0}")]
    Settings(String),
    /// A listening socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate or key could not be read or used.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Metrics could not be registered (usually: registered twice in one registry).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Other I/O failure in the driver.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A worker thread panicked (a bug).
    #[error("TURN worker thread panicked")]
    WorkerPanicked,
}
