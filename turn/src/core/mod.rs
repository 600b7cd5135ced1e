//! The sans-IO TURN server core: RFC 8656 over RFC 8489, with no clock and no sockets.
//!
//! # How a driver uses it
//!
//! A [`Core`] owns the allocations of one worker. The driver feeds it:
//! - datagrams and stream frames from clients: [`Core::handle_client`];
//! - datagrams that arrived on a relay socket: [`Core::handle_peer`];
//! - the outcome of opening a relay socket it was asked for: [`Core::relay_opened`];
//! - a closed TCP/TLS connection: [`Core::client_closed`];
//! - time: [`Core::handle_timeout`] once `now >= `[`Core::poll_timeout`].
//!
//! Each `handle_*` call returns at most one [`Transmit`], which borrows the core's output buffer or
//! the input, so it must be sent before the next call. After every call the driver must drain
//! [`Core::poll_event`] until `None`: events open and close relay sockets. The core never reads a
//! clock: every method takes `now`, and wall-clock time (for REST expiry and nonces) is derived
//! from the `(Instant, UNIX seconds)` pair given to [`Shared::new`].
//!
//! Several cores (one per worker thread) share one [`Shared`]: immutable settings, the
//! authenticator, the peer policy, metrics, and the cross-worker allocation quotas. Only
//! Allocate and deallocation touch the shared quota lock; the relay path touches nothing shared.

mod allocation;
mod methods;
mod reply;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::Registry;

use crate::{
    Error, Settings,
    auth::Authenticator,
    metrics::{Counts, Metrics},
    peer::PeerPolicy,
    ratelimit::RateLimiter,
    wire::{self, Class, Packet},
};
use allocation::{Allocation, Budget};

/// How a client reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream (RFC 8656 §3.1 framing).
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// The client side of an allocation (RFC 8656 §2): allocations are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Client's address as seen by the server.
    pub client: SocketAddr,
    /// Server address the client sent to.
    pub server: SocketAddr,
    /// Transport between them.
    pub transport: Transport,
}

/// Handle of one allocation's relay socket, chosen by the core; the driver maps it to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayId(pub u32);

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the client over its five-tuple.
    Client(FiveTuple),
    /// From relay socket `relay` to `peer`.
    Peer {
        /// The allocation's relay socket.
        relay: RelayId,
        /// The peer.
        peer: SocketAddr,
    },
}

/// Bytes to send now.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Where.
    pub destination: Destination,
    /// What (borrowed from the core or from the input).
    pub data: &'a [u8],
}

/// Whether the relay socket must set the DF bit (DONT-FRAGMENT in the Allocate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DontFragment {
    /// Client asked for DF.
    Set,
    /// Default: the OS may fragment.
    Unset,
}

/// Which relay ports the driver may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// Any port in the range.
    Any,
    /// An even port (EVEN-PORT without reservation, RFC 8656 §14.6).
    Even,
}

/// Work for the driver outside the packet path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bind a UDP socket on `ip` with a port from the relay range, then call
    /// [`Core::relay_opened`] with its address (or the failure).
    OpenRelay {
        /// Which allocation.
        relay: RelayId,
        /// Local IP to bind.
        ip: IpAddr,
        /// Port parity requested by the client.
        parity: Parity,
        /// DF handling.
        dont_fragment: DontFragment,
    },
    /// The allocation is gone: close its relay socket, freeing the port.
    CloseRelay {
        /// Which allocation.
        relay: RelayId,
    },
}

/// Why the driver could not open a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFailure {
    /// Every port tried was taken (answered 508).
    NoPort,
}

/// Server-wide state shared by all cores; built once by the driver (or by tests).
pub struct Shared {
    settings: Settings,
    auth: Authenticator,
    policy: PeerPolicy,
    metrics: Metrics,
    epoch: Instant,
    epoch_unix: u64,
    total: AtomicU32,
    per_user: Mutex<HashMap<Box<str>, u32>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Validates `settings`, registers metrics in `registry`, and pins wall-clock time:
    /// `epoch_unix` is the UNIX time in seconds at `epoch`.
    pub fn new(
        settings: Settings,
        registry: &Registry,
        nonce_key: [u8; 32],
        epoch: Instant,
        epoch_unix: u64,
    ) -> Result<Arc<Shared>, Error> {
        if settings.secrets.is_empty() && settings.static_users.is_empty() {
            return Err(Error::Settings(
                "no credentials: set `secrets` or `static_users`".into(),
            ));
        }
        if settings.relay_ports.is_empty() {
            return Err(Error::Settings("relay_ports is empty".into()));
        }
        if settings.max_lifetime < settings.default_lifetime {
            return Err(Error::Settings("max_lifetime < default_lifetime".into()));
        }
        let mut own: Vec<IpAddr> = settings
            .udp_listen
            .iter()
            .chain(&settings.tcp_listen)
            .chain(&settings.tls_listen)
            .map(SocketAddr::ip)
            .collect();
        own.extend(settings.relay_ip);
        own.extend(settings.external_ip);
        let policy = PeerPolicy::new(
            &settings.allowed_peer_ranges,
            &settings.denied_peer_ranges,
            &own,
        );
        let auth = Authenticator::new(
            &settings.realm,
            &settings.secrets,
            &settings.static_users,
            nonce_key,
            settings.nonce_lifetime,
        );
        Ok(Arc::new(Shared {
            metrics: Metrics::register(registry)?,
            settings,
            auth,
            policy,
            epoch,
            epoch_unix,
            total: AtomicU32::new(0),
            per_user: Mutex::new(HashMap::new()),
        }))
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metric handles (the driver reports its workers here).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Reserves one allocation for `user` against both quotas.
    fn reserve(&self, user: &str) -> Result<(), Quota> {
        let max_total = self.settings.max_allocations_total;
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Quota::Total);
        }
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user.into()).or_insert(0);
        if *n >= self.settings.max_allocations_per_user {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Quota::PerUser);
        }
        *n += 1;
        Ok(())
    }

    fn release(&self, user: &str) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        let mut map = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                map.remove(user);
            }
        }
    }

    /// Allocations live or being opened, across all cores.
    pub fn allocations(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }

    /// Users with at least one allocation (for tests that check nothing is left).
    pub fn users_tracked(&self) -> usize {
        self.per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    Total,
    PerUser,
}

/// How often expiry, pruning and metric flushes run.
const TICK: Duration = Duration::from_secs(1);
/// Most IPs the 401 rate limiter tracks per core.
const RATE_LIMIT_TABLE: usize = 16_384;

/// One worker's TURN state machine. See the module docs for the driving protocol.
///
/// Lifecycle: created by the driver per worker; lives as long as the server; dropping it drops
/// its allocations without events (the driver closes all sockets at shutdown anyway), after
/// [`Core::shutdown`] released their quotas.
#[derive(Debug)]
pub struct Core {
    shared: Arc<Shared>,
    slots: Vec<Option<Allocation>>,
    free: Vec<u32>,
    by_tuple: HashMap<FiveTuple, u32>,
    limiter: RateLimiter,
    counts: Counts,
    events: VecDeque<Event>,
    next_tick: Instant,
    out: Vec<u8>,
}

impl Core {
    /// A core with no allocations.
    pub fn new(shared: Arc<Shared>, now: Instant) -> Core {
        let s = &shared.settings;
        let limiter = RateLimiter::new(
            s.unauthenticated_responses_per_second,
            s.unauthenticated_burst,
            RATE_LIMIT_TABLE,
        );
        Core {
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: HashMap::new(),
            limiter,
            counts: Counts::default(),
            events: VecDeque::new(),
            next_tick: now + TICK,
            out: Vec::with_capacity(2048),
        }
    }

    /// Handles one datagram (UDP) or one complete frame (TCP/TLS) from a client.
    pub fn handle_client<'a>(
        &'a mut self,
        now: Instant,
        from: FiveTuple,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        match wire::classify(data).ok()? {
            Packet::ChannelData { number, data } => self.channel_data(now, from, number, data),
            Packet::Stun(msg) => match msg.class {
                Class::Request => self.request(now, from, &msg),
                Class::Indication if msg.method == wire::METHOD_SEND => {
                    self.send_indication(now, from, &msg)
                }
                _ => None,
            },
        }
    }

    /// Handles a datagram that arrived from `peer` on the relay socket of `relay`: wraps it in
    /// ChannelData or a Data indication for the client, if a permission allows it.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: SocketAddr,
        data: &[u8],
    ) -> Option<Transmit<'_>> {
        let alloc = self.slots.get_mut(relay.0 as usize)?.as_mut()?;
        alloc.relayed?;
        if !alloc.permitted(peer.ip(), now) {
            self.counts.no_permission_drops += 1;
            return None;
        }
        if alloc.down.spend(data.len(), now) == Budget::Exceeded {
            self.counts.bandwidth_drops += 1;
            return None;
        }
        let five = alloc.five;
        let channel = alloc.channel_by_peer(peer, now).map(|c| c.number);
        self.counts.down_packets += 1;
        self.counts.down_bytes += data.len() as u64;
        let out = &mut self.out;
        out.clear();
        match channel {
            Some(number) => {
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                if five.transport != Transport::Udp {
                    let pad = (4 - data.len() % 4) % 4;
                    out.extend_from_slice(&[0u8; 3][..pad]);
                }
            }
            None => {
                let mut txid = [0u8; 12];
                txid[..8].copy_from_slice(&self.counts.down_packets.to_be_bytes());
                wire::Builder::new(out, wire::METHOD_DATA, Class::Indication, txid)
                    .xor_address(wire::ATTR_XOR_PEER_ADDRESS, peer)
                    .attr(wire::ATTR_DATA, data);
            }
        }
        Some(Transmit {
            destination: Destination::Client(five),
            data: &self.out,
        })
    }

    /// Reports the outcome of an [`Event::OpenRelay`]: `Ok(local address of the socket)` or the
    /// failure. Returns the Allocate response.
    pub fn relay_opened(
        &mut self,
        now: Instant,
        relay: RelayId,
        result: Result<SocketAddr, RelayFailure>,
    ) -> Option<Transmit<'_>> {
        self.finish_allocate(now, relay, result)
    }

    /// A TCP/TLS connection closed: its allocation (if any) is deleted (RFC 8656 §3.1).
    pub fn client_closed(&mut self, five: FiveTuple) {
        if let Some(&idx) = self.by_tuple.get(&five) {
            self.delete(idx);
        }
    }

    /// Next event for the driver, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// Expires allocations, permissions and channels, sweeps the rate limiter and flushes metrics.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        for idx in 0..self.slots.len() {
            let expired = match &mut self.slots[idx] {
                Some(a) if a.expires <= now => true,
                Some(a) => {
                    a.prune(now);
                    false
                }
                None => false,
            };
            if expired {
                self.delete(idx as u32);
            }
        }
        self.limiter.sweep(now);
        self.counts.flush(&self.shared.metrics);
    }

    /// Releases every allocation's quota and asks for every relay socket to close. Used at
    /// shutdown so a server restarted in the same process starts from zero.
    pub fn shutdown(&mut self) {
        for idx in 0..self.slots.len() {
            if self.slots[idx].is_some() {
                self.delete(idx as u32);
            }
        }
        self.counts.flush(&self.shared.metrics);
    }

    /// Live or pending allocations in this core.
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// IPs tracked by the 401 rate limiter (for flat-memory tests).
    pub fn rate_limited_ips(&self) -> usize {
        self.limiter.tracked()
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn channel_data<'a>(
        &'a mut self,
        now: Instant,
        from: FiveTuple,
        number: u16,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        let &idx = self.by_tuple.get(&from)?;
        let alloc = self.slots[idx as usize].as_mut()?;
        let peer = alloc.channel_by_number(number, now)?.peer;
        if !alloc.permitted(peer.ip(), now) {
            self.counts.no_permission_drops += 1;
            return None;
        }
        if alloc.up.spend(data.len(), now) == Budget::Exceeded {
            self.counts.bandwidth_drops += 1;
            return None;
        }
        self.counts.up_packets += 1;
        self.counts.up_bytes += data.len() as u64;
        Some(Transmit {
            destination: Destination::Peer {
                relay: RelayId(idx),
                peer,
            },
            data,
        })
    }

    fn delete(&mut self, idx: u32) {
        let Some(alloc) = self.slots.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.by_tuple.remove(&alloc.five);
        self.free.push(idx);
        self.shared.release(&alloc.user);
        if alloc.relayed.is_some() {
            self.shared.metrics.allocations_active.dec();
        }
        self.events.push_back(Event::CloseRelay {
            relay: RelayId(idx),
        });
    }
}
