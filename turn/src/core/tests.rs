//! Sans-IO scenario tests: every method and error code, with simulated time and no sockets.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::*;
use crate::{
    StaticUser,
    auth::{long_term_key, rest_password},
    wire::{self, Builder, Class, integrity_input},
};

const UNIX0: u64 = 1_700_000_000;
const REALM: &str = "test";

fn client() -> SocketAddr {
    "198.51.100.7:5000".parse().unwrap()
}
fn server() -> SocketAddr {
    "192.0.2.1:3478".parse().unwrap()
}
fn relay_addr(port: u16) -> SocketAddr {
    SocketAddr::new("192.0.2.1".parse().unwrap(), port)
}
fn peer() -> SocketAddr {
    "8.8.8.8:9000".parse().unwrap()
}
fn five(client: SocketAddr, transport: Transport) -> FiveTuple {
    FiveTuple {
        client,
        server: server(),
        transport,
    }
}

fn settings() -> Settings {
    Settings {
        realm: REALM.into(),
        secrets: vec!["old-secret".into(), "new-secret".into()],
        static_users: vec![
            "alice:pw".parse().unwrap(),
            "bob:pw2".parse::<StaticUser>().unwrap(),
        ],
        ..Settings::default()
    }
}

/// A core plus a simulated clock and a minimal TURN client.
struct H {
    core: Core,
    now: Instant,
    txn: u32,
    nonce: Vec<u8>,
    user: String,
    pass: String,
    from: FiveTuple,
    next_port: u16,
}

/// A decoded response: class, and raw attributes by type.
#[derive(Debug)]
struct Resp {
    class: Class,
    method: u16,
    raw: Vec<u8>,
}

impl Resp {
    fn attr(&self, ty: u16) -> Option<&[u8]> {
        let mut off = 20;
        while off + 4 <= self.raw.len() {
            let t = u16::from_be_bytes([self.raw[off], self.raw[off + 1]]);
            let l = usize::from(u16::from_be_bytes([self.raw[off + 2], self.raw[off + 3]]));
            if t == ty {
                return Some(&self.raw[off + 4..off + 4 + l]);
            }
            off += 4 + l.div_ceil(4) * 4;
        }
        None
    }
    fn code(&self) -> Option<u16> {
        self.attr(wire::ATTR_ERROR_CODE)
            .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
    }
    fn addr(&self, ty: u16) -> SocketAddr {
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&self.raw[8..20]);
        wire::decode_xor_address(self.attr(ty).unwrap(), &txid).unwrap()
    }
    fn lifetime(&self) -> u32 {
        u32::from_be_bytes(self.attr(wire::ATTR_LIFETIME).unwrap().try_into().unwrap())
    }
    /// Checks the response's MESSAGE-INTEGRITY with `key`.
    fn integrity_ok(&self, key: &[u8; 16]) -> bool {
        let mut off = 20;
        while off + 4 <= self.raw.len() {
            let t = u16::from_be_bytes([self.raw[off], self.raw[off + 1]]);
            let l = usize::from(u16::from_be_bytes([self.raw[off + 2], self.raw[off + 3]]));
            if t == wire::ATTR_MESSAGE_INTEGRITY {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
                integrity_input(&self.raw, off, 20, |b| mac.update(b));
                return mac.finalize().into_bytes().as_slice() == &self.raw[off + 4..off + 24];
            }
            off += 4 + l.div_ceil(4) * 4;
        }
        false
    }
}

type Attr = (u16, Vec<u8>);

fn peer_attr(p: SocketAddr, txid: [u8; 12]) -> Attr {
    let mut buf = Vec::new();
    Builder::new(&mut buf, 1, Class::Request, txid).xor_address(wire::ATTR_XOR_PEER_ADDRESS, p);
    (wire::ATTR_XOR_PEER_ADDRESS, buf[24..].to_vec())
}

impl H {
    fn new(s: Settings) -> H {
        H::with_registry(s, &prometheus::Registry::new())
    }

    fn with_registry(s: Settings, registry: &prometheus::Registry) -> H {
        let now = Instant::now();
        let shared = Shared::new(s, registry, [9; 32], now, UNIX0).unwrap();
        H {
            core: Core::new(shared, now),
            now,
            txn: 0,
            nonce: Vec::new(),
            user: "alice".into(),
            pass: "pw".into(),
            from: five(client(), Transport::Udp),
            next_port: 50000,
        }
    }

    fn key(&self) -> [u8; 16] {
        long_term_key(self.user.as_bytes(), REALM.as_bytes(), self.pass.as_bytes())
    }

    fn txid(&mut self) -> [u8; 12] {
        self.txn += 1;
        let mut t = [7u8; 12];
        t[..4].copy_from_slice(&self.txn.to_be_bytes());
        t
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_timeout(self.now);
    }

    /// Builds a request; `signed` adds USERNAME/REALM/NONCE/MESSAGE-INTEGRITY.
    fn build(&self, method: u16, txid: [u8; 12], attrs: &[Attr], signed: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, method, Class::Request, txid);
        for (t, v) in attrs {
            b.attr(*t, v);
        }
        if signed {
            b.attr(wire::ATTR_USERNAME, self.user.as_bytes())
                .attr(wire::ATTR_REALM, REALM.as_bytes())
                .attr(wire::ATTR_NONCE, &self.nonce)
                .integrity(&self.key());
        }
        b.fingerprint();
        buf
    }

    /// Feeds bytes from the client; returns the transmit (copied) if any.
    fn feed(&mut self, bytes: &[u8]) -> Option<(Destination, Vec<u8>)> {
        self.core
            .handle_client(self.now, self.from, bytes)
            .map(|t| (t.destination, t.data.to_vec()))
    }

    /// Sends a request and completes relay opening if the core asks; returns the response.
    fn request(&mut self, method: u16, attrs: &[Attr], signed: bool) -> Option<Resp> {
        let txid = self.txid();
        let req = self.build(method, txid, attrs, signed);
        self.send_raw(&req)
    }

    fn send_raw(&mut self, req: &[u8]) -> Option<Resp> {
        let mut out = self.feed(req);
        while let Some(ev) = self.core.poll_event() {
            if let Event::OpenRelay { relay, .. } = ev {
                self.next_port += 1;
                let addr = relay_addr(self.next_port);
                out = self
                    .core
                    .relay_opened(self.now, relay, Ok(addr))
                    .map(|t| (t.destination, t.data.to_vec()));
            }
        }
        let (dest, raw) = out?;
        assert_eq!(dest, Destination::Client(self.from));
        let wire::Packet::Stun(m) = wire::classify(&raw).expect("valid response") else {
            panic!("not STUN")
        };
        assert!(
            Resp {
                class: m.class,
                method: m.method,
                raw: raw.clone()
            }
            .attr(wire::ATTR_SOFTWARE)
            .is_none(),
            "never SOFTWARE"
        );
        Some(Resp {
            class: m.class,
            method: m.method,
            raw,
        })
    }

    /// Unauthenticated first attempt to learn the nonce.
    fn learn_nonce(&mut self) {
        let r = self
            .request(wire::METHOD_ALLOCATE, &[udp()], false)
            .unwrap();
        assert_eq!(r.code(), Some(401));
        self.nonce = r.attr(wire::ATTR_NONCE).unwrap().to_vec();
    }

    fn allocate(&mut self) -> Resp {
        self.learn_nonce();
        self.request(wire::METHOD_ALLOCATE, &[udp()], true).unwrap()
    }

    fn allocate_ok(&mut self) -> SocketAddr {
        let r = self.allocate();
        assert_eq!(r.class, Class::Success, "allocate failed: {:?}", r.code());
        assert!(r.integrity_ok(&self.key()));
        r.addr(wire::ATTR_XOR_RELAYED_ADDRESS)
    }

    fn permit(&mut self, p: SocketAddr) -> Resp {
        let txid = self.txid();
        let a = peer_attr(p, txid);
        let req = self.build(wire::METHOD_CREATE_PERMISSION, txid, &[a], true);
        self.send_raw(&req).unwrap()
    }

    fn bind_channel(&mut self, number: u16, p: SocketAddr) -> Resp {
        let txid = self.txid();
        let a = peer_attr(p, txid);
        let req = self.build(
            wire::METHOD_CHANNEL_BIND,
            txid,
            &[
                (
                    wire::ATTR_CHANNEL_NUMBER,
                    vec![(number >> 8) as u8, number as u8, 0, 0],
                ),
                a,
            ],
            true,
        );
        self.send_raw(&req).unwrap()
    }

    fn refresh(&mut self, lifetime: u32) -> Resp {
        self.request(
            wire::METHOD_REFRESH,
            &[(wire::ATTR_LIFETIME, lifetime.to_be_bytes().to_vec())],
            true,
        )
        .unwrap()
    }

    fn send_indication(&mut self, p: SocketAddr, data: &[u8]) -> Option<(Destination, Vec<u8>)> {
        let txid = self.txid();
        let mut buf = Vec::new();
        Builder::new(&mut buf, wire::METHOD_SEND, Class::Indication, txid)
            .xor_address(wire::ATTR_XOR_PEER_ADDRESS, p)
            .attr(wire::ATTR_DATA, data);
        self.feed(&buf)
    }

    fn peer_sends(&mut self, p: SocketAddr, data: &[u8]) -> Option<(Destination, Vec<u8>)> {
        self.core
            .handle_peer(self.now, RelayId(0), p, data)
            .map(|t| (t.destination, t.data.to_vec()))
    }
}

fn udp() -> Attr {
    (
        wire::ATTR_REQUESTED_TRANSPORT,
        vec![wire::PROTO_UDP, 0, 0, 0],
    )
}

fn allowing_loopback() -> Settings {
    Settings {
        allowed_peer_ranges: vec!["127.0.0.0/8".parse().unwrap()],
        ..settings()
    }
}

#[test]
fn binding_reports_the_reflexive_address() {
    let mut h = H::new(settings());
    let r = h.request(wire::METHOD_BINDING, &[], false).unwrap();
    assert_eq!((r.class, r.method), (Class::Success, wire::METHOD_BINDING));
    assert_eq!(r.addr(wire::ATTR_XOR_MAPPED_ADDRESS), client());
    assert!(r.attr(wire::ATTR_FINGERPRINT).is_some());
}

#[test]
fn allocate_challenge_then_success_with_static_user() {
    let mut h = H::new(settings());
    let r = h.request(wire::METHOD_ALLOCATE, &[udp()], false).unwrap();
    assert_eq!(r.code(), Some(401));
    assert_eq!(r.attr(wire::ATTR_REALM), Some(REALM.as_bytes()));
    assert_eq!(r.attr(wire::ATTR_NONCE).map(<[u8]>::len), Some(40));
    assert!(r.attr(wire::ATTR_MESSAGE_INTEGRITY).is_none());
    h.nonce = r.attr(wire::ATTR_NONCE).unwrap().to_vec();
    let r = h.request(wire::METHOD_ALLOCATE, &[udp()], true).unwrap();
    assert_eq!(r.class, Class::Success);
    assert!(r.integrity_ok(&h.key()));
    assert_eq!(r.lifetime(), 600);
    assert_eq!(r.addr(wire::ATTR_XOR_MAPPED_ADDRESS), client());
    assert_eq!(r.addr(wire::ATTR_XOR_RELAYED_ADDRESS), relay_addr(50001));
    assert_eq!(h.core.allocation_count(), 1);
}

#[test]
fn rest_credentials_under_any_configured_secret() {
    for secret in ["old-secret", "new-secret"] {
        let mut h = H::new(settings());
        h.user = format!("{}:user42", UNIX0 + 3600);
        h.pass = rest_password(secret.as_bytes(), h.user.as_bytes());
        h.allocate_ok();
    }
    let mut h = H::new(settings());
    h.user = format!("{}:user42", UNIX0 + 3600);
    h.pass = rest_password(b"unknown-secret", h.user.as_bytes());
    assert_eq!(h.allocate().code(), Some(401));
}

#[test]
fn expired_rest_credential_is_refused_on_allocate() {
    let mut h = H::new(settings());
    h.user = format!("{}:user42", UNIX0 - 1);
    h.pass = rest_password(b"new-secret", h.user.as_bytes());
    assert_eq!(h.allocate().code(), Some(401));
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn expired_rest_credential_is_refused_on_refresh() {
    let mut h = H::new(settings());
    h.user = format!("{}:user42", UNIX0 + 60);
    h.pass = rest_password(b"new-secret", h.user.as_bytes());
    h.allocate_ok();
    assert_eq!(h.refresh(600).class, Class::Success);
    h.advance(Duration::from_secs(120));
    let r = h.refresh(600);
    assert_eq!(r.code(), Some(401), "refresh after expiry must fail");
}

#[test]
fn wrong_password_is_401_and_missing_nonce_is_400() {
    let mut h = H::new(settings());
    h.pass = "wrong".into();
    assert_eq!(h.allocate().code(), Some(401));
    // MESSAGE-INTEGRITY without NONCE.
    let txid = h.txid();
    let mut buf = Vec::new();
    Builder::new(&mut buf, wire::METHOD_ALLOCATE, Class::Request, txid)
        .attr(wire::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(wire::ATTR_USERNAME, b"alice")
        .integrity(&h.key());
    assert_eq!(h.send_raw(&buf).unwrap().code(), Some(400));
}

#[test]
fn stale_and_forged_nonces_get_438() {
    let mut h = H::new(Settings {
        nonce_lifetime: Duration::from_secs(60),
        ..settings()
    });
    h.learn_nonce();
    h.advance(Duration::from_secs(61));
    let r = h.request(wire::METHOD_ALLOCATE, &[udp()], true).unwrap();
    assert_eq!(r.code(), Some(438));
    let fresh = r.attr(wire::ATTR_NONCE).unwrap().to_vec();
    h.nonce = fresh.clone();
    h.nonce[30] ^= 1;
    assert_eq!(
        h.request(wire::METHOD_ALLOCATE, &[udp()], true)
            .unwrap()
            .code(),
        Some(438)
    );
    h.nonce = fresh;
    assert_eq!(
        h.request(wire::METHOD_ALLOCATE, &[udp()], true)
            .unwrap()
            .class,
        Class::Success
    );
}

#[test]
fn nonce_from_another_address_is_stale() {
    let mut h = H::new(settings());
    h.learn_nonce();
    h.from = five("198.51.100.8:5000".parse().unwrap(), Transport::Udp);
    assert_eq!(
        h.request(wire::METHOD_ALLOCATE, &[udp()], true)
            .unwrap()
            .code(),
        Some(438)
    );
}

#[test]
fn message_integrity_sha256_is_accepted() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let txid = h.txid();
    let mut buf = Vec::new();
    Builder::new(&mut buf, wire::METHOD_ALLOCATE, Class::Request, txid)
        .attr(wire::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(wire::ATTR_USERNAME, b"alice")
        .attr(wire::ATTR_REALM, REALM.as_bytes())
        .attr(wire::ATTR_NONCE, &h.nonce)
        .integrity_sha256(&h.key())
        .fingerprint();
    let r = h.send_raw(&buf).unwrap();
    assert_eq!(r.class, Class::Success);
    assert!(r.attr(wire::ATTR_MESSAGE_INTEGRITY_SHA256).is_some());
    // A corrupted SHA-256 tag fails.
    let mut h = H::new(settings());
    h.learn_nonce();
    let txid = h.txid();
    Builder::new(&mut buf, wire::METHOD_ALLOCATE, Class::Request, txid)
        .attr(wire::ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(wire::ATTR_USERNAME, b"alice")
        .attr(wire::ATTR_REALM, REALM.as_bytes())
        .attr(wire::ATTR_NONCE, &h.nonce)
        .integrity_sha256(&[0; 16]);
    assert_eq!(h.send_raw(&buf).unwrap().code(), Some(401));
}

#[test]
fn bad_requests_get_400() {
    let mut h = H::new(settings());
    h.learn_nonce();
    // No REQUESTED-TRANSPORT.
    assert_eq!(
        h.request(wire::METHOD_ALLOCATE, &[], true).unwrap().code(),
        Some(400)
    );
    // Malformed LIFETIME.
    assert_eq!(
        h.request(
            wire::METHOD_ALLOCATE,
            &[udp(), (wire::ATTR_LIFETIME, vec![1])],
            true
        )
        .unwrap()
        .code(),
        Some(400)
    );
    // Unknown method.
    assert_eq!(h.request(0x0ff, &[], false).unwrap().code(), Some(400));
    h.allocate_ok();
    // Channel number out of range, and no peer.
    assert_eq!(h.bind_channel(0x3fff, peer()).code(), Some(400));
    assert_eq!(h.bind_channel(0x8000, peer()).code(), Some(400));
    assert_eq!(
        h.request(
            wire::METHOD_CHANNEL_BIND,
            &[(wire::ATTR_CHANNEL_NUMBER, vec![0x40, 0, 0, 0])],
            true
        )
        .unwrap()
        .code(),
        Some(400)
    );
    // CreatePermission without peer.
    assert_eq!(
        h.request(wire::METHOD_CREATE_PERMISSION, &[], true)
            .unwrap()
            .code(),
        Some(400)
    );
    // Channel rebound to another peer, and peer rebound to another channel.
    assert_eq!(h.bind_channel(0x4000, peer()).class, Class::Success);
    assert_eq!(
        h.bind_channel(0x4000, "1.1.1.1:1".parse().unwrap()).code(),
        Some(400)
    );
    assert_eq!(h.bind_channel(0x4001, peer()).code(), Some(400));
    assert_eq!(
        h.bind_channel(0x4000, peer()).class,
        Class::Success,
        "refresh is fine"
    );
}

#[test]
fn unknown_required_attributes_and_reservations_get_420() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let r = h
        .request(
            wire::METHOD_ALLOCATE,
            &[udp(), (0x7777, vec![1, 2, 3, 4])],
            true,
        )
        .unwrap();
    assert_eq!(r.code(), Some(420));
    assert_eq!(
        r.attr(wire::ATTR_UNKNOWN_ATTRIBUTES),
        Some(&[0x77, 0x77][..])
    );
    let r = h
        .request(
            wire::METHOD_ALLOCATE,
            &[udp(), (wire::ATTR_EVEN_PORT, vec![0x80])],
            true,
        )
        .unwrap();
    assert_eq!(r.code(), Some(420), "EVEN-PORT with reservation");
    let r = h
        .request(
            wire::METHOD_ALLOCATE,
            &[udp(), (wire::ATTR_RESERVATION_TOKEN, vec![0; 8])],
            true,
        )
        .unwrap();
    assert_eq!(r.code(), Some(420));
    // Optional unknown attributes (>= 0x8000) are ignored; EVEN-PORT without R asks for an even
    // port.
    let txid = h.txid();
    let req = h.build(
        wire::METHOD_ALLOCATE,
        txid,
        &[udp(), (0x8077, vec![1]), (wire::ATTR_EVEN_PORT, vec![0])],
        true,
    );
    assert!(h.feed(&req).is_none());
    let Some(Event::OpenRelay { parity, .. }) = h.core.poll_event() else {
        panic!("expected OpenRelay")
    };
    assert_eq!(parity, Parity::Even);
}

#[test]
fn allocation_mismatch_437() {
    let mut h = H::new(settings());
    h.learn_nonce();
    assert_eq!(h.refresh(600).code(), Some(437));
    assert_eq!(h.permit(peer()).code(), Some(437));
    assert_eq!(h.bind_channel(0x4000, peer()).code(), Some(437));
    h.allocate_ok();
    // A second Allocate (new transaction) on the same five-tuple.
    assert_eq!(
        h.request(wire::METHOD_ALLOCATE, &[udp()], true)
            .unwrap()
            .code(),
        Some(437)
    );
}

#[test]
fn retransmitted_allocate_gets_the_same_success() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let txid = h.txid();
    let req = h.build(wire::METHOD_ALLOCATE, txid, &[udp()], true);
    let a = h.send_raw(&req).unwrap();
    let b = h.send_raw(&req).unwrap();
    assert_eq!(b.class, Class::Success);
    assert_eq!(
        a.addr(wire::ATTR_XOR_RELAYED_ADDRESS),
        b.addr(wire::ATTR_XOR_RELAYED_ADDRESS)
    );
    assert_eq!(h.core.allocation_count(), 1);
}

#[test]
fn other_user_on_the_allocation_gets_441() {
    let mut h = H::new(settings());
    h.allocate_ok();
    h.user = "bob".into();
    h.pass = "pw2".into();
    assert_eq!(h.refresh(600).code(), Some(441));
    assert_eq!(h.permit(peer()).code(), Some(441));
}

#[test]
fn non_udp_transport_gets_442() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let r = h
        .request(
            wire::METHOD_ALLOCATE,
            &[(wire::ATTR_REQUESTED_TRANSPORT, vec![6, 0, 0, 0])],
            true,
        )
        .unwrap();
    assert_eq!(r.code(), Some(442));
}

#[test]
fn per_user_quota_486_and_total_capacity_508() {
    let mut h = H::new(Settings {
        max_allocations_per_user: 2,
        max_allocations_total: 3,
        ..settings()
    });
    for port in 1..=2 {
        h.from = five(SocketAddr::new(client().ip(), port), Transport::Udp);
        h.allocate_ok();
    }
    h.from = five(SocketAddr::new(client().ip(), 3), Transport::Udp);
    assert_eq!(h.allocate().code(), Some(486));
    h.user = "bob".into();
    h.pass = "pw2".into();
    h.allocate_ok();
    h.from = five(SocketAddr::new(client().ip(), 4), Transport::Udp);
    assert_eq!(h.allocate().code(), Some(508));
    assert_eq!(h.core.shared().allocations(), 3);
}

#[test]
fn relay_port_exhaustion_is_508_and_frees_the_quota() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let txid = h.txid();
    let req = h.build(wire::METHOD_ALLOCATE, txid, &[udp()], true);
    assert!(h.feed(&req).is_none());
    let Some(Event::OpenRelay { relay, .. }) = h.core.poll_event() else {
        panic!("expected OpenRelay")
    };
    let (_, raw) = h
        .core
        .relay_opened(h.now, relay, Err(RelayFailure::NoPort))
        .map(|t| (t.destination, t.data.to_vec()))
        .unwrap();
    let r = Resp {
        class: Class::Error,
        method: 3,
        raw,
    };
    assert_eq!(r.code(), Some(508));
    assert_eq!(h.core.shared().allocations(), 0);
    assert_eq!(h.core.allocation_count(), 0);
}

#[test]
fn permission_and_channel_quotas_are_508() {
    let mut h = H::new(Settings {
        max_permissions_per_allocation: 2,
        max_channels_per_allocation: 1,
        ..settings()
    });
    h.allocate_ok();
    assert_eq!(h.permit("8.8.8.8:1".parse().unwrap()).class, Class::Success);
    assert_eq!(h.permit("8.8.4.4:1".parse().unwrap()).class, Class::Success);
    assert_eq!(
        h.permit("8.8.8.8:2".parse().unwrap()).class,
        Class::Success,
        "same IP"
    );
    assert_eq!(h.permit("1.1.1.1:1".parse().unwrap()).code(), Some(508));
    assert_eq!(
        h.bind_channel(0x4000, "8.8.8.8:1".parse().unwrap()).class,
        Class::Success
    );
    assert_eq!(
        h.bind_channel(0x4001, "8.8.4.4:1".parse().unwrap()).code(),
        Some(508)
    );
}

#[test]
fn default_policy_refuses_private_and_loopback_peers_with_403() {
    let mut h = H::new(settings());
    h.allocate_ok();
    for p in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "192.168.1.1:9",
        "169.254.169.254:80",
        "100.64.0.1:9",
        "[::1]:9",
        "[::ffff:127.0.0.1]:9",
        "[64:ff9b::a00:1]:9",
        "192.0.2.1:9", // the server itself
    ] {
        let p: SocketAddr = p.parse().unwrap();
        assert_eq!(h.permit(p).code(), Some(403), "CreatePermission {p}");
        assert_eq!(
            h.bind_channel(0x4000, p).code(),
            Some(403),
            "ChannelBind {p}"
        );
    }
    // Send to a refused peer is dropped: no permission can exist for it.
    assert!(
        h.send_indication("10.0.0.1:9".parse().unwrap(), b"x")
            .is_none()
    );
    // IPv6 public peer on an IPv4 relay: 443.
    assert_eq!(
        h.permit("[2606:4700::1111]:9".parse().unwrap()).code(),
        Some(443)
    );
}

#[test]
fn allowed_and_denied_ranges_change_the_policy() {
    let mut h = H::new(Settings {
        denied_peer_ranges: vec!["8.8.8.0/24".parse().unwrap()],
        ..allowing_loopback()
    });
    h.allocate_ok();
    assert_eq!(
        h.permit("127.0.0.1:9".parse().unwrap()).class,
        Class::Success
    );
    assert_eq!(h.permit("8.8.8.8:9".parse().unwrap()).code(), Some(403));
    assert_eq!(h.permit("10.0.0.1:9".parse().unwrap()).code(), Some(403));
}

#[test]
fn send_and_data_indications_relay_with_permission() {
    let mut h = H::new(settings());
    h.allocate_ok();
    assert!(
        h.send_indication(peer(), b"hello").is_none(),
        "no permission yet"
    );
    assert!(h.peer_sends(peer(), b"in").is_none(), "no permission yet");
    assert_eq!(h.permit(peer()).class, Class::Success);
    let (dest, data) = h.send_indication(peer(), b"hello").unwrap();
    assert_eq!(
        dest,
        Destination::Peer {
            relay: RelayId(0),
            peer: peer()
        }
    );
    assert_eq!(data, b"hello");
    let (dest, data) = h.peer_sends(peer(), b"back").unwrap();
    assert_eq!(dest, Destination::Client(h.from));
    let r = Resp {
        class: Class::Indication,
        method: wire::METHOD_DATA,
        raw: data,
    };
    assert_eq!(r.attr(wire::ATTR_DATA), Some(&b"back"[..]));
    assert_eq!(r.addr(wire::ATTR_XOR_PEER_ADDRESS), peer());
    // Permissions are per IP: another port of the same IP is fine, another IP is not.
    assert!(h.peer_sends("8.8.8.8:1".parse().unwrap(), b"x").is_some());
    assert!(
        h.peer_sends("8.8.4.4:9000".parse().unwrap(), b"x")
            .is_none()
    );
    // Permissions expire after 300 s.
    h.advance(Duration::from_secs(301));
    assert!(h.send_indication(peer(), b"late").is_none());
    assert!(h.peer_sends(peer(), b"late").is_none());
}

#[test]
fn channel_data_both_ways_and_tcp_padding() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut h = H::new(settings());
        h.from = five(client(), transport);
        h.allocate_ok();
        assert_eq!(h.bind_channel(0x4001, peer()).class, Class::Success);
        let (dest, data) = h.feed(&[0x40, 0x01, 0, 3, b'a', b'b', b'c', 0]).unwrap();
        assert_eq!(
            dest,
            Destination::Peer {
                relay: RelayId(0),
                peer: peer()
            }
        );
        assert_eq!(data, b"abc");
        let (_, data) = h.peer_sends(peer(), b"xyz").unwrap();
        let want: &[u8] = match transport {
            Transport::Udp => &[0x40, 0x01, 0, 3, b'x', b'y', b'z'],
            _ => &[0x40, 0x01, 0, 3, b'x', b'y', b'z', 0],
        };
        assert_eq!(data, want);
        // Unbound channel and truncated frame are dropped.
        assert!(h.feed(&[0x40, 0x02, 0, 1, b'a']).is_none());
        assert!(h.feed(&[0x40, 0x01, 0, 9, b'a']).is_none());
        // Channels expire after 600 s unless refreshed; the permission is refreshed with them.
        h.advance(Duration::from_secs(290));
        assert_eq!(h.bind_channel(0x4001, peer()).class, Class::Success);
        assert_eq!(h.refresh(3600).class, Class::Success);
        h.advance(Duration::from_secs(290));
        assert!(h.feed(&[0x40, 0x01, 0, 1, b'a']).is_some());
        h.advance(Duration::from_secs(320));
        assert!(
            h.feed(&[0x40, 0x01, 0, 1, b'a']).is_none(),
            "expired channel"
        );
    }
}

#[test]
fn refresh_zero_deletes_and_frees_everything() {
    let mut h = H::new(settings());
    h.allocate_ok();
    let r = h.refresh(0);
    assert_eq!(r.class, Class::Success);
    assert_eq!(r.lifetime(), 0);
    assert_eq!(h.core.allocation_count(), 0);
    assert_eq!(h.core.shared().allocations(), 0);
    assert_eq!(h.core.shared().users_tracked(), 0);
    assert_eq!(h.refresh(600).code(), Some(437));
}

#[test]
fn lifetime_is_clamped_and_idle_allocations_expire() {
    let mut h = H::new(settings());
    h.learn_nonce();
    let r = h
        .request(
            wire::METHOD_ALLOCATE,
            &[
                udp(),
                (wire::ATTR_LIFETIME, 100_000u32.to_be_bytes().to_vec()),
            ],
            true,
        )
        .unwrap();
    assert_eq!(r.lifetime(), 3600);
    assert_eq!(
        h.refresh(10).lifetime(),
        600,
        "below default gets the default"
    );
    h.advance(Duration::from_secs(599));
    assert_eq!(h.core.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.core.allocation_count(), 0);
    let mut closed = 0;
    while let Some(ev) = h.core.poll_event() {
        assert_eq!(ev, Event::CloseRelay { relay: RelayId(0) });
        closed += 1;
    }
    assert_eq!(closed, 1, "relay socket released");
    assert_eq!(h.core.shared().allocations(), 0);
    assert_eq!(h.core.shared().users_tracked(), 0);
}

#[test]
fn stream_close_deletes_the_allocation() {
    let mut h = H::new(settings());
    h.from = five(client(), Transport::Tls);
    h.allocate_ok();
    h.core.client_closed(h.from);
    assert_eq!(h.core.allocation_count(), 0);
    assert_eq!(
        h.core.poll_event(),
        Some(Event::CloseRelay { relay: RelayId(0) })
    );
}

#[test]
fn bandwidth_cap_drops_the_excess() {
    let mut h = H::new(Settings {
        max_allocation_bytes_per_second: 1000,
        ..settings()
    });
    h.allocate_ok();
    h.permit(peer());
    let payload = [0u8; 400];
    let sent = (0..5)
        .filter(|_| h.send_indication(peer(), &payload).is_some())
        .count();
    assert_eq!(sent, 2, "1000 B/s bucket holds two 400 B packets");
    h.now += Duration::from_secs(1);
    assert!(h.send_indication(peer(), &payload).is_some(), "refilled");
}

#[test]
fn unauthenticated_flood_is_rate_limited_and_creates_no_state() {
    let mut h = H::new(Settings {
        unauthenticated_responses_per_second: 10,
        unauthenticated_burst: 20,
        ..settings()
    });
    let answered = (0..1000)
        .filter(|_| h.request(wire::METHOD_ALLOCATE, &[udp()], false).is_some())
        .count();
    assert_eq!(answered, 20);
    // Many source addresses: state stays bounded by the limiter table, no allocations.
    for i in 0..50_000u32 {
        h.from = five(
            SocketAddr::new(std::net::Ipv4Addr::from(0x0b00_0000 + i).into(), 1),
            Transport::Udp,
        );
        h.request(wire::METHOD_ALLOCATE, &[udp()], false);
    }
    assert!(h.core.rate_limited_ips() <= super::RATE_LIMIT_TABLE);
    assert_eq!(h.core.allocation_count(), 0);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.core.rate_limited_ips(), 0, "swept");
}

#[test]
fn garbage_never_panics() {
    let mut h = H::new(allowing_loopback());
    h.allocate_ok();
    h.permit("127.0.0.1:1".parse().unwrap());
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Valid messages to mutate.
    let txid = h.txid();
    let templates = [
        h.build(wire::METHOD_ALLOCATE, txid, &[udp()], true),
        h.build(
            wire::METHOD_CHANNEL_BIND,
            txid,
            &[peer_attr(peer(), txid)],
            true,
        ),
        h.build(
            wire::METHOD_CREATE_PERMISSION,
            txid,
            &[peer_attr(peer(), txid)],
            true,
        ),
        vec![0x40, 0, 0, 4, 1, 2, 3, 4],
    ];
    for i in 0..200_000 {
        let mut buf = if i % 2 == 0 {
            let len = (rnd() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if b.len() >= 8 && i % 4 == 0 {
                b[4..8].copy_from_slice(&wire::MAGIC_COOKIE.to_be_bytes());
                b[0] &= 0x3f;
            }
            b
        } else {
            templates[i % templates.len()].clone()
        };
        for _ in 0..(rnd() % 4) {
            if !buf.is_empty() {
                let at = (rnd() as usize) % buf.len();
                buf[at] = rnd() as u8;
            }
        }
        let _ = h.core.handle_client(h.now, h.from, &buf);
        let _ = h.core.handle_peer(
            h.now,
            RelayId((rnd() % 3) as u32),
            "127.0.0.1:1".parse().unwrap(),
            &buf,
        );
        while let Some(ev) = h.core.poll_event() {
            if let Event::OpenRelay { relay, .. } = ev {
                let _ = h.core.relay_opened(h.now, relay, Ok(relay_addr(1)));
            }
        }
        let _ = wire::stream_frame_len([buf.first().copied().unwrap_or(0), 0, 0, 0]);
    }
    // The core survived: a fresh Binding still works.
    h.from = five(client(), Transport::Udp);
    assert_eq!(
        h.request(wire::METHOD_BINDING, &[], false).unwrap().class,
        Class::Success
    );
}

#[test]
fn metrics_count_allocations_relay_and_refusals_without_user_labels() {
    let registry = prometheus::Registry::new();
    let mut h = H::with_registry(settings(), &registry);
    h.allocate_ok();
    h.permit(peer());
    assert_eq!(h.permit("10.0.0.1:1".parse().unwrap()).code(), Some(403));
    h.send_indication(peer(), b"abc").unwrap();
    h.peer_sends(peer(), b"defg").unwrap();
    h.advance(Duration::from_secs(1));
    let text = {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    for line in [
        "chorus_turn_allocations_active 1",
        "chorus_turn_allocations_total{result=\"ok\"} 1",
        "chorus_turn_auth_failures_total{reason=\"challenge\"} 1",
        "chorus_turn_relayed_packets_total{direction=\"client_to_peer\"} 1",
        "chorus_turn_relayed_bytes_total{direction=\"client_to_peer\"} 3",
        "chorus_turn_relayed_packets_total{direction=\"peer_to_client\"} 1",
        "chorus_turn_relayed_bytes_total{direction=\"peer_to_client\"} 4",
        "chorus_turn_peer_refusals_total{reason=\"not_public\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("alice"), "no per-user labels");
    h.refresh(0);
    assert_eq!(h.core.shared().metrics.allocations_active.get(), 0);
}
