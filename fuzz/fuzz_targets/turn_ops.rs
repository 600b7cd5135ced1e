//! The TURN core (`turn::core::Core`) driven through a sequence of operations, the quinn way:
//! clients send well-formed requests built from arbitrary choices (method, attributes,
//! credentials right or wrong, the nonce they last heard), ChannelData and Send indications;
//! peers send datagrams to relays; the driver opens relays or fails to; connections close; time
//! moves. After every step the harness checks what the core promises:
//! - every datagram for a client is a STUN message or ChannelData, never with SOFTWARE, and
//!   goes to the client that asked or to an allocation's owner;
//! - nothing is relayed to a peer the peer policy refuses (loopback, private, metadata…), nor
//!   from a relay that is not open, nor for a client that does not own it;
//! - relay sockets are opened once and closed once; allocation counts stay within the per-user
//!   and total quotas, and the shared count matches the core's;
//! - after every lifetime has passed (and after shutdown) nothing is left and every quota is
//!   released.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run turn_ops`.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use turn::Settings;
use turn::auth::{long_term_key, rest_password};
use turn::core::{Core, Destination, Event, FiveTuple, RelayFailure, RelayId, Shared, Transport};
use turn::peer::PeerPolicy;
use turn::wire::{self, Builder, Class, Packet};

const REALM: &str = "fuzz";
const SECRET: &str = "rest-secret";
const UNIX0: u64 = 1_700_000_000;
/// Client endpoints: two users behind UDP, one over TCP, one over TLS, one more UDP port.
const CLIENTS: [(&str, Transport); 5] = [
    ("198.51.100.1:5000", Transport::Udp),
    ("198.51.100.1:5001", Transport::Udp),
    ("198.51.100.2:6000", Transport::Tcp),
    ("[2001:db8::7]:7000", Transport::Tls),
    ("203.0.113.9:9000", Transport::Udp),
];
/// Peers: public ones, and ones the default policy must refuse in every spelling.
const PEERS: [&str; 12] = [
    "8.8.8.8:9000",
    "1.1.1.1:53",
    "[2606:4700::1111]:443",
    "127.0.0.1:9000",
    "10.0.0.1:80",
    "169.254.169.254:80",
    "192.168.1.1:1",
    "100.64.0.1:1",
    "[::1]:1",
    "[::ffff:127.0.0.1]:1",
    "[64:ff9b::a00:1]:1",
    "192.0.2.1:3478",
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request from a client.
    Request {
        client: u8,
        method: Method,
        attrs: Vec<Attr>,
        credential: Credential,
        fingerprint: bool,
        /// Whether the driver manages to open a relay socket, if the request asks for one.
        relay_opens: bool,
    },
    /// A Send indication from a client.
    Send { client: u8, peer: u8, len: u16 },
    /// ChannelData from a client.
    ChannelData { client: u8, channel: u16, len: u16 },
    /// Bytes as they come from a client, unchecked.
    Raw { client: u8, bytes: Vec<u8> },
    /// A datagram from a peer to a relay socket (by its index among open relays).
    FromPeer { relay: u8, peer: u8, len: u16 },
    /// A TCP/TLS client's connection closes.
    Close { client: u8 },
    /// Time moves by `secs` seconds plus `millis` milliseconds.
    Advance { secs: u16, millis: u16 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Method {
    Binding,
    Allocate,
    Refresh,
    CreatePermission,
    ChannelBind,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
enum Attr {
    RequestedTransport(u8),
    Lifetime(u32),
    Peer(u8),
    Channel(u16),
    EvenPort(bool),
    DontFragment,
    ReservationToken,
    AddressFamily(u8),
    Data(u16),
    Any(u16, Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Credential {
    /// No USERNAME/REALM/NONCE/MESSAGE-INTEGRITY.
    None,
    /// A static user with the right password.
    Static(u8),
    /// A REST (coturn `use-auth-secret`) credential expiring `expires_in` seconds from the
    /// wall clock's start (negative: already expired).
    Rest { user: u8, expires_in: i16 },
    /// A static user with a wrong password.
    WrongPassword(u8),
    /// A right password and a nonce the server never gave.
    StaleNonce(u8),
}

#[derive(Arbitrary, Debug)]
struct Scenario {
    ops: Vec<Op>,
}

fuzz_target!(|scenario: Scenario| {
    let mut h = Harness::new();
    for op in scenario.ops.into_iter().take(256) {
        h.step(op);
        h.check();
    }
    h.finish();
});

struct Harness {
    core: Core,
    now: Instant,
    policy: PeerPolicy,
    max_per_user: u32,
    max_total: u32,
    txn: u32,
    /// The last NONCE each client heard.
    nonces: HashMap<usize, Vec<u8>>,
    /// The client and username of the request being handled (an Allocate asks for a relay),
    /// and whether the driver will manage to open it.
    sender: Option<(FiveTuple, String, bool)>,
    /// Open relay sockets and their owners.
    open: Vec<(RelayId, FiveTuple, String)>,
    /// Every relay id the core has asked to open (ids may be reused only after a close).
    live: HashSet<RelayId>,
}

impl Harness {
    fn new() -> Harness {
        let settings = Settings {
            realm: REALM.into(),
            secrets: vec![SECRET.into()],
            static_users: vec!["alice:pw".parse().unwrap(), "bob:pw2".parse().unwrap()],
            max_allocations_per_user: 2,
            max_allocations_total: 3,
            max_permissions_per_allocation: 4,
            max_channels_per_allocation: 4,
            max_allocation_bytes_per_second: 20_000,
            ..Settings::default()
        };
        let (max_per_user, max_total) = (
            settings.max_allocations_per_user,
            settings.max_allocations_total,
        );
        let now = Instant::now();
        let shared = Shared::new(settings, &prometheus::Registry::new(), [3; 32], now, UNIX0)
            .expect("valid settings");
        Harness {
            core: Core::new(shared, now),
            now,
            policy: PeerPolicy::new(&[], &[], &[]),
            max_per_user,
            max_total,
            txn: 0,
            nonces: HashMap::new(),
            sender: None,
            open: Vec::new(),
            live: HashSet::new(),
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Request {
                client,
                method,
                attrs,
                credential,
                fingerprint,
                relay_opens,
            } => {
                let (i, five) = client_at(client);
                let (bytes, user) = self.request(i, method, &attrs, credential, fingerprint);
                self.sender = Some((five, user, relay_opens));
                self.client_sends(i, five, &bytes);
                self.sender = None;
            }
            Op::Send { client, peer, len } => {
                let (i, five) = client_at(client);
                let txid = self.txid();
                let mut buf = Vec::new();
                Builder::new(&mut buf, wire::METHOD_SEND, Class::Indication, txid)
                    .xor_address(wire::ATTR_XOR_PEER_ADDRESS, peer_at(peer))
                    .attr(wire::ATTR_DATA, &payload(len));
                self.client_sends(i, five, &buf);
            }
            Op::ChannelData {
                client,
                channel,
                len,
            } => {
                let (i, five) = client_at(client);
                let data = payload(len % 1500);
                let mut buf = Vec::new();
                buf.extend_from_slice(&(0x4000 | (channel & 0x0fff)).to_be_bytes());
                buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
                buf.extend_from_slice(&data);
                if five.transport != Transport::Udp {
                    buf.resize(buf.len().div_ceil(4) * 4, 0);
                }
                self.client_sends(i, five, &buf);
            }
            Op::Raw { client, bytes } => {
                let (i, five) = client_at(client);
                self.client_sends(i, five, &bytes);
            }
            Op::FromPeer { relay, peer, len } => {
                if self.open.is_empty() {
                    return;
                }
                let (id, owner, _) = self.open[usize::from(relay) % self.open.len()].clone();
                let data = payload(len % 1500);
                if let Some(t) = self.core.handle_peer(self.now, id, peer_at(peer), &data) {
                    assert_eq!(
                        t.destination,
                        Destination::Client(owner),
                        "peer data to a stranger"
                    );
                    assert_client_bound(t.data);
                }
                self.drain_events();
            }
            Op::Close { client } => {
                let (_, five) = client_at(client);
                if five.transport != Transport::Udp {
                    self.core.client_closed(five);
                    self.drain_events();
                }
            }
            Op::Advance { secs, millis } => {
                self.now +=
                    Duration::from_secs(u64::from(secs)) + Duration::from_millis(u64::from(millis));
                self.core.handle_timeout(self.now);
                self.drain_events();
            }
        }
    }

    /// Feeds client bytes and checks the one datagram the core may send back or on.
    fn client_sends(&mut self, i: usize, five: FiveTuple, bytes: &[u8]) {
        let out = self
            .core
            .handle_client(self.now, five, bytes)
            .map(|t| (t.destination, t.data.to_vec()));
        if let Some((destination, data)) = out {
            match destination {
                Destination::Client(to) => {
                    assert_eq!(to, five, "a reply went to another client");
                    if let Some(nonce) = nonce_of(&data) {
                        self.nonces.insert(i, nonce);
                    }
                    assert_client_bound(&data);
                }
                Destination::Peer { relay, peer } => {
                    assert!(
                        self.policy.check(peer.ip()).is_ok(),
                        "relayed to a refused peer {peer}"
                    );
                    assert!(
                        self.open
                            .iter()
                            .any(|(id, owner, _)| (*id, *owner) == (relay, five)),
                        "relayed through {relay:?}, which {five:?} does not own or is not open"
                    );
                }
            }
        }
        self.drain_events();
    }

    /// Drains the core's events, acting as the driver does: a relay socket is opened (or fails
    /// to open) at once, before any other input.
    fn drain_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::OpenRelay { relay, .. } => {
                    assert!(self.live.insert(relay), "relay {relay:?} opened twice");
                    let (owner, user, opens) = self.sender.clone().expect("only an Allocate asks");
                    let result = if opens {
                        Ok(SocketAddr::new(
                            "192.0.2.1".parse().unwrap(),
                            50_000 + relay.0 as u16,
                        ))
                    } else {
                        Err(RelayFailure::NoPort)
                    };
                    let reply = self
                        .core
                        .relay_opened(self.now, relay, result)
                        .map(|t| (t.destination, t.data.to_vec()));
                    let (to, data) =
                        reply.expect("an Allocate is answered once its relay is known");
                    assert_eq!(
                        to,
                        Destination::Client(owner),
                        "Allocate answered to a stranger"
                    );
                    let class = assert_client_bound(&data);
                    if opens {
                        assert_eq!(class, Some(Class::Success), "relay opened, Allocate failed");
                        self.open.push((relay, owner, user));
                    } else {
                        assert_eq!(class, Some(Class::Error), "no relay, Allocate succeeded");
                        // No socket was opened: nothing to close.
                        self.live.remove(&relay);
                    }
                }
                Event::CloseRelay { relay } => {
                    assert!(
                        self.live.remove(&relay),
                        "relay {relay:?} closed but not open"
                    );
                    self.open.retain(|(id, ..)| *id != relay);
                }
            }
        }
    }

    fn check(&self) {
        let count = self.core.allocation_count();
        assert!(
            count as u32 <= self.max_total,
            "{count} allocations over the total quota"
        );
        assert_eq!(
            self.core.shared().allocations() as usize,
            count,
            "the shared quota disagrees with the core"
        );
        assert_eq!(
            self.live.len(),
            self.open.len(),
            "relay sockets the harness lost track of"
        );
        assert_eq!(self.open.len(), count, "allocations without a relay socket");
        let mut per_user: HashMap<&str, u32> = HashMap::new();
        for (.., user) in &self.open {
            *per_user.entry(user).or_default() += 1;
        }
        for (user, n) in per_user {
            assert!(n <= self.max_per_user, "{user} holds {n} allocations");
        }
        assert!(
            self.core.shared().users_tracked() <= count,
            "users tracked without allocations"
        );
    }

    /// Every lifetime passes: nothing may be left; then a shutdown on an empty core is a no-op.
    fn finish(mut self) {
        self.now += Duration::from_secs(3600 + 60);
        self.core.handle_timeout(self.now);
        self.drain_events();
        assert_eq!(
            self.core.allocation_count(),
            0,
            "allocations outlived their lifetime"
        );
        assert_eq!(self.core.shared().allocations(), 0, "quota not released");
        assert_eq!(
            self.core.shared().users_tracked(),
            0,
            "per-user quota not released"
        );
        assert!(
            self.live.is_empty(),
            "relay sockets left open: {:?}",
            self.live
        );
        self.core.shutdown();
        self.drain_events();
    }

    fn txid(&mut self) -> [u8; 12] {
        self.txn += 1;
        let mut t = [0x5a; 12];
        t[..4].copy_from_slice(&self.txn.to_be_bytes());
        t
    }

    fn request(
        &mut self,
        client: usize,
        method: Method,
        attrs: &[Attr],
        credential: Credential,
        fingerprint: bool,
    ) -> (Vec<u8>, String) {
        let method = match method {
            Method::Binding => wire::METHOD_BINDING,
            Method::Allocate => wire::METHOD_ALLOCATE,
            Method::Refresh => wire::METHOD_REFRESH,
            Method::CreatePermission => wire::METHOD_CREATE_PERMISSION,
            Method::ChannelBind => wire::METHOD_CHANNEL_BIND,
            Method::Other(m) => m & 0x0fff,
        };
        let txid = self.txid();
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, method, Class::Request, txid);
        for attr in attrs.iter().take(12) {
            match attr {
                Attr::RequestedTransport(p) => {
                    b.attr(wire::ATTR_REQUESTED_TRANSPORT, &[*p, 0, 0, 0]);
                }
                Attr::Lifetime(s) => {
                    b.attr_u32(wire::ATTR_LIFETIME, *s);
                }
                Attr::Peer(p) => {
                    b.xor_address(wire::ATTR_XOR_PEER_ADDRESS, peer_at(*p));
                }
                Attr::Channel(n) => {
                    b.attr(wire::ATTR_CHANNEL_NUMBER, &[(n >> 8) as u8, *n as u8, 0, 0]);
                }
                Attr::EvenPort(r) => {
                    b.attr(wire::ATTR_EVEN_PORT, &[if *r { 0x80 } else { 0 }, 0, 0, 0]);
                }
                Attr::DontFragment => {
                    b.attr(wire::ATTR_DONT_FRAGMENT, &[]);
                }
                Attr::ReservationToken => {
                    b.attr(wire::ATTR_RESERVATION_TOKEN, &[1; 8]);
                }
                Attr::AddressFamily(f) => {
                    b.attr(wire::ATTR_REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0]);
                }
                Attr::Data(len) => {
                    b.attr(wire::ATTR_DATA, &payload(len % 1200));
                }
                Attr::Any(ty, value) => {
                    let value = &value[..value.len().min(64)];
                    b.attr(*ty, value);
                }
            }
        }
        let nonce = self.nonces.get(&client).cloned().unwrap_or_default();
        let signed = match credential {
            Credential::None => None,
            Credential::Static(u) => Some((static_user(u), static_password(u), nonce)),
            Credential::WrongPassword(u) => Some((static_user(u), "wrong".to_owned(), nonce)),
            Credential::StaleNonce(u) => {
                Some((static_user(u), static_password(u), b"not-a-nonce".to_vec()))
            }
            Credential::Rest { user, expires_in } => {
                let expiry = (UNIX0 as i64 + i64::from(expires_in)).max(0);
                let name = format!("{expiry}:user{}", user % 3);
                let password = rest_password(SECRET.as_bytes(), name.as_bytes());
                Some((name, password, nonce))
            }
        };
        let username = signed.as_ref().map(|(u, ..)| u.clone()).unwrap_or_default();
        if let Some((user, password, nonce)) = signed {
            let key = long_term_key(user.as_bytes(), REALM.as_bytes(), password.as_bytes());
            b.attr(wire::ATTR_USERNAME, user.as_bytes())
                .attr(wire::ATTR_REALM, REALM.as_bytes())
                .attr(wire::ATTR_NONCE, &nonce)
                .integrity(&key);
        }
        if fingerprint {
            b.fingerprint();
        }
        (buf, username)
    }
}

fn client_at(i: u8) -> (usize, FiveTuple) {
    let i = usize::from(i) % CLIENTS.len();
    let (addr, transport) = CLIENTS[i];
    let five = FiveTuple {
        client: addr.parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
        transport,
    };
    (i, five)
}

fn peer_at(i: u8) -> SocketAddr {
    PEERS[usize::from(i) % PEERS.len()].parse().unwrap()
}

fn static_user(u: u8) -> String {
    ["alice", "bob"][usize::from(u) % 2].to_owned()
}

fn static_password(u: u8) -> String {
    ["pw", "pw2"][usize::from(u) % 2].to_owned()
}

fn payload(len: u16) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// A datagram for a client must frame as STUN or ChannelData and never name the software.
/// Returns the STUN class.
fn assert_client_bound(data: &[u8]) -> Option<Class> {
    match wire::classify(data) {
        Ok(Packet::Stun(m)) => {
            let attrs = wire::Attrs::parse(&m);
            assert!(!attrs.bad, "we sent an attribute we cannot read back");
            assert!(!has_attr(m.raw, wire::ATTR_SOFTWARE), "SOFTWARE in a reply");
            Some(m.class)
        }
        Ok(Packet::ChannelData { .. }) => None,
        Err(e) => panic!("unframed datagram to a client: {e:?}"),
    }
}

fn has_attr(raw: &[u8], ty: u16) -> bool {
    let mut off = wire::HEADER_LEN;
    while off + 4 <= raw.len() {
        let t = u16::from_be_bytes([raw[off], raw[off + 1]]);
        let l = usize::from(u16::from_be_bytes([raw[off + 2], raw[off + 3]]));
        if t == ty {
            return true;
        }
        off += 4 + l.div_ceil(4) * 4;
    }
    false
}

fn nonce_of(data: &[u8]) -> Option<Vec<u8>> {
    let Ok(Packet::Stun(m)) = wire::classify(data) else {
        return None;
    };
    wire::Attrs::parse(&m).nonce.map(<[u8]>::to_vec)
}
