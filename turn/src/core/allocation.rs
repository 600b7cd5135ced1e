//! One allocation's state: relayed address, permissions, channels, bandwidth buckets.
//!
//! Lifecycle: created `Pending` by an Allocate that passed every check (its relay socket is being
//! opened by the driver), becomes live when the driver reports the socket's address, is kept alive
//! by Refresh, and is deleted by Refresh with lifetime 0, by expiry, or when its TCP/TLS
//! connection closes. Permissions (300 s) and channels (600 s) expire on their own and are pruned
//! each tick.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use crate::auth::IntegrityKind;

use super::FiveTuple;

/// RFC 8656 §9: permissions last 300 s unless refreshed.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: channel bindings last 600 s unless refreshed.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub(crate) struct Allocation {
    pub five: FiveTuple,
    /// USERNAME that created it; other usernames get 441.
    pub username: Box<str>,
    /// Quota key.
    pub user: Box<str>,
    /// Key and integrity kind used to sign responses to the Allocate retransmission.
    pub key: [u8; 16],
    pub kind: IntegrityKind,
    /// Transaction id of the Allocate, to answer retransmissions with the same success.
    pub txid: [u8; 12],
    /// Advertised relayed address; `None` while the driver opens the socket.
    pub relayed: Option<SocketAddr>,
    pub expires: Instant,
    /// Lifetime granted by the last Allocate/Refresh, echoed in retransmitted responses.
    pub lifetime: u32,
    pub perms: Vec<(IpAddr, Instant)>,
    pub channels: Vec<Channel>,
    pub up: Bucket,
    pub down: Bucket,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Instant,
}

impl Allocation {
    pub fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.perms.iter().any(|&(p, exp)| p == ip && exp > now)
    }

    pub fn permit(&mut self, ip: IpAddr, now: Instant) {
        let exp = now + PERMISSION_LIFETIME;
        match self.perms.iter_mut().find(|(p, _)| *p == ip) {
            Some(entry) => entry.1 = exp,
            None => self.perms.push((ip, exp)),
        }
    }

    pub fn channel_by_number(&self, number: u16, now: Instant) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
    }

    pub fn channel_by_peer(&self, peer: SocketAddr, now: Instant) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
    }

    pub fn prune(&mut self, now: Instant) {
        self.perms.retain(|&(_, exp)| exp > now);
        self.channels.retain(|c| c.expires > now);
    }
}

/// Token bucket in bytes; `rate == 0` means unlimited.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    rate: u64,
    tokens: u64,
    at: Instant,
}

/// Whether a packet fits in the bandwidth cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Within,
    Exceeded,
}

impl Bucket {
    pub fn new(rate: u64, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    /// Spends `bytes`; the burst is one second's worth.
    pub fn spend(&mut self, bytes: usize, now: Instant) -> Budget {
        if self.rate == 0 {
            return Budget::Within;
        }
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed >= Duration::from_millis(1) {
            let add = (self.rate as u128 * elapsed.as_micros() / 1_000_000) as u64;
            self.tokens = (self.tokens.saturating_add(add)).min(self.rate);
            self.at = now;
        }
        let bytes = bytes as u64;
        if self.tokens >= bytes {
            self.tokens -= bytes;
            Budget::Within
        } else {
            Budget::Exceeded
        }
    }
}
