//! Which participant an incoming packet belongs to, without asking every `Rtc`.
//!
//! Lookup order:
//! 1. A STUN message carries `USERNAME = <server ufrag>:<client ufrag>`; the server ufrag is
//!    unique per participant, so one hash lookup finds it. The 5-tuple it came from is then
//!    remembered for that participant.
//! 2. Anything else (DTLS, SRTP, SRTCP) is looked up by its 5-tuple.
//!
//! Packets matching neither are dropped (and counted). A 5-tuple is learnt only from a STUN
//! request whose ufrag the participant's `Rtc` accepts; str0m then checks the message
//! integrity with the ICE password before anything is answered, so a spoofed request can at
//! worst point a tuple at a participant whose ufrag the spoofer already knows.
//!
//! Lifecycle: entries are added when a participant is created (ufrag) and when a new tuple
//! is seen; all entries of a participant are removed with it.
//!
//! ICE restart (a client offer with new credentials, typically after a network change): the
//! participant's server ufrag is replaced, and the tuples learnt so far become *stale*. They
//! keep routing, because the client keeps sending media on its old path until its restarted
//! agent has nominated a new one; the first DTLS or SRTP packet on a tuple learnt (or
//! re-learnt) after the restart proves the switch, and the stale tuples are dropped then. A
//! dead path (the Wi-Fi that went away) thus leaves no route behind, and a tuple that another
//! peer later reuses cannot reach the restarted participant.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::ids::SessionId;

/// Transport 5-tuple as seen by the SFU (the local address is the advertised one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// UDP or TCP.
    pub proto: Protocol,
    /// The peer.
    pub remote: SocketAddr,
    /// Our address it was sent to.
    pub local: SocketAddr,
}

/// The routing tables. See the module docs.
#[derive(Default, Debug)]
pub struct Router {
    by_ufrag: HashMap<String, SessionId>,
    by_tuple: HashMap<FiveTuple, SessionId>,
    /// Per participant whose ICE restarted, the tuples learnt before the restart and not
    /// re-learnt since: dropped once media arrives on a fresh tuple. Empty almost always, so
    /// the per-packet check is one `is_empty`.
    stale: HashMap<SessionId, HashSet<FiveTuple>>,
}

/// Outcome of [`Router::route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Known 5-tuple.
    Tuple(SessionId),
    /// STUN message whose ufrag names a participant; the tuple may be new.
    Ufrag(SessionId),
    /// Nobody we know.
    Unknown,
}

impl Router {
    /// Registers the local ICE ufrag of a participant, replacing an earlier one. Returns
    /// [`Ufrag::Restarted`] when the participant had another ufrag: an ICE restart, after
    /// which its learnt tuples are stale (see the module docs).
    pub fn add_ufrag(&mut self, ufrag: String, id: SessionId) -> Ufrag {
        if self.by_ufrag.get(&ufrag) == Some(&id) {
            return Ufrag::Same;
        }
        let before = self.by_ufrag.len();
        self.by_ufrag.retain(|_, v| *v != id);
        let restarted = self.by_ufrag.len() != before;
        self.by_ufrag.insert(ufrag, id);
        if !restarted {
            return Ufrag::New;
        }
        let old: HashSet<FiveTuple> = self
            .by_tuple
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| *k)
            .collect();
        if old.is_empty() {
            self.stale.remove(&id);
        } else {
            self.stale.insert(id, old);
        }
        Ufrag::Restarted
    }

    /// Remembers that `tuple` belongs to `id` (a STUN request with its current ufrag came
    /// from it). Returns true when it was new.
    pub fn learn(&mut self, tuple: FiveTuple, id: SessionId) -> bool {
        if let Some(old) = self.stale.get_mut(&id) {
            // Checked again under the new credentials: a live path, not a stale one.
            old.remove(&tuple);
        }
        self.by_tuple.insert(tuple, id) != Some(id)
    }

    /// A DTLS or SRTP packet of `id` arrived on `tuple`. When that tuple is not stale, the
    /// client uses a path checked since its ICE restart: its stale tuples are dropped, and
    /// their number returned.
    pub fn media_on(&mut self, tuple: &FiveTuple, id: SessionId) -> usize {
        if self.stale.is_empty() {
            return 0;
        }
        match self.stale.get(&id) {
            Some(old) if !old.contains(tuple) => {
                let old = self.stale.remove(&id).unwrap_or_default();
                for t in &old {
                    if self.by_tuple.get(t) == Some(&id) {
                        self.by_tuple.remove(t);
                    }
                }
                old.len()
            }
            _ => 0,
        }
    }

    /// Finds the participant of a packet.
    pub fn route(&self, tuple: &FiveTuple, packet: &[u8]) -> Route {
        if let Some(ufrag) = stun_local_ufrag(packet)
            && let Some(id) = self.by_ufrag.get(ufrag)
        {
            return Route::Ufrag(*id);
        }
        match self.by_tuple.get(tuple) {
            Some(id) => Route::Tuple(*id),
            None => Route::Unknown,
        }
    }

    /// Drops every entry of `id`.
    pub fn remove(&mut self, id: SessionId) {
        self.by_ufrag.retain(|_, v| *v != id);
        self.by_tuple.retain(|_, v| *v != id);
        self.stale.remove(&id);
    }

    /// Drops all tuples whose connection is gone (a closed ICE-TCP connection).
    pub fn forget_remote(&mut self, proto: Protocol, remote: SocketAddr) {
        let gone = |k: &FiveTuple| k.proto == proto && k.remote == remote;
        self.by_tuple.retain(|k, _| !gone(k));
        for old in self.stale.values_mut() {
            old.retain(|k| !gone(k));
        }
        self.stale.retain(|_, old| !old.is_empty());
    }

    /// Whether `ufrag` is the server ufrag of one of this router's participants.
    pub fn has_ufrag(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
    }

    /// Number of entries (ufrags + tuples).
    pub fn len(&self) -> usize {
        self.by_ufrag.len() + self.by_tuple.len()
    }

    /// No entries at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Router::add_ufrag`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ufrag {
    /// The participant's first ufrag.
    New,
    /// The ufrag it already had (a renegotiation without ICE restart).
    Same,
    /// Another ufrag than before: an ICE restart.
    Restarted,
}

/// Whether `packet` is DTLS or SRTP/SRTCP rather than STUN (RFC 7983 demultiplexing: STUN
/// starts with 0..=3), i.e. media on a path the client has chosen.
pub fn is_media(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| *b > 3)
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The server-side ufrag of a STUN message's USERNAME (`<ours>:<theirs>`), if `packet` is
/// a STUN message with one. Never panics on arbitrary bytes.
pub fn stun_local_ufrag(packet: &[u8]) -> Option<&str> {
    // RFC 5389: the two top bits of a STUN message are zero, bytes 4..8 the magic cookie.
    if packet.len() < 20 || packet[0] & 0xC0 != 0 || packet[4..8] != STUN_MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let body = packet.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // A PRIORITY attribute first, so the parser must skip one.
        let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
        body.extend_from_slice(&attr);
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    fn tuple(port: u16) -> FiveTuple {
        FiveTuple {
            proto: Protocol::Udp,
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
            local: SocketAddr::from(([127, 0, 0, 1], 7882)),
        }
    }

    #[test]
    fn parses_username() {
        assert_eq!(
            stun_local_ufrag(&stun_with_username("srv1:cli")),
            Some("srv1")
        );
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(stun_local_ufrag(&[]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut truncated = stun_with_username("srv1:cli");
        truncated.truncate(30);
        assert_eq!(stun_local_ufrag(&truncated), None);
        // Every prefix and a few corruptions never panic.
        let msg = stun_with_username("abc:def");
        for n in 0..msg.len() {
            let _ = stun_local_ufrag(&msg[..n]);
            let mut bad = msg.clone();
            bad[n] ^= 0xff;
            let _ = stun_local_ufrag(&bad);
        }
    }

    #[test]
    fn routes_by_ufrag_then_tuple() {
        let mut r = Router::default();
        let a = SessionId(1);
        let b = SessionId(2);
        r.add_ufrag("ua".into(), a);
        r.add_ufrag("ub".into(), b);
        assert_eq!(
            r.route(&tuple(1000), &stun_with_username("ub:x")),
            Route::Ufrag(b)
        );
        assert_eq!(r.route(&tuple(1000), &[0x80, 0, 0, 0]), Route::Unknown);
        assert!(r.learn(tuple(1000), b));
        assert!(!r.learn(tuple(1000), b));
        assert_eq!(r.route(&tuple(1000), &[0x80, 0, 0, 0]), Route::Tuple(b));
        // The ufrag wins over a tuple learnt for someone else.
        assert_eq!(
            r.route(&tuple(1000), &stun_with_username("ua:x")),
            Route::Ufrag(a)
        );
        assert_eq!(r.len(), 3);
        r.remove(b);
        assert_eq!(r.route(&tuple(1000), &[0x80, 0, 0, 0]), Route::Unknown);
        r.remove(a);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn ice_restart_drops_stale_tuples_once_media_moves() {
        let mut r = Router::default();
        let a = SessionId(1);
        let b = SessionId(2);
        assert_eq!(r.add_ufrag("a1".into(), a), Ufrag::New);
        assert_eq!(r.add_ufrag("a1".into(), a), Ufrag::Same);
        r.add_ufrag("b1".into(), b);
        r.learn(tuple(1000), a); // Wi-Fi
        r.learn(tuple(1001), a); // a second interface
        r.learn(tuple(2000), b);
        assert_eq!(r.add_ufrag("a2".into(), a), Ufrag::Restarted);
        // The old ufrag routes nowhere; the old tuples still carry media meanwhile.
        assert_eq!(
            r.route(&tuple(3000), &stun_with_username("a1:x")),
            Route::Unknown
        );
        assert_eq!(r.route(&tuple(1000), &[0x80]), Route::Tuple(a));
        assert_eq!(r.media_on(&tuple(1000), a), 0, "media on a stale tuple");
        // Checks under the new ufrag: one on a new path (cellular), one on the old second one.
        assert_eq!(
            r.route(&tuple(3000), &stun_with_username("a2:x")),
            Route::Ufrag(a)
        );
        r.learn(tuple(3000), a);
        r.learn(tuple(1001), a);
        assert_eq!(r.media_on(&tuple(2000), b), 0, "another participant");
        // Media on the new path: the unchecked old tuple goes, the re-checked one stays.
        assert_eq!(r.media_on(&tuple(3000), a), 1);
        assert_eq!(r.route(&tuple(1000), &[0x80]), Route::Unknown);
        assert_eq!(r.route(&tuple(1001), &[0x80]), Route::Tuple(a));
        assert_eq!(r.route(&tuple(2000), &[0x80]), Route::Tuple(b));
        assert_eq!(r.media_on(&tuple(3000), a), 0, "only once");
        assert_eq!(r.len(), 2 + 3);
        assert!(is_media(&[0x80]) && is_media(&[22]) && !is_media(&[0, 1]) && !is_media(&[]));
    }
}
