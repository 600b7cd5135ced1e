//! Building responses into the core's output buffer.

use crate::{
    auth::{Authenticated, IntegrityKind},
    ratelimit::Verdict,
    wire::{self, Builder, Class, Message},
};

use super::{Core, Destination, FiveTuple, Transmit};

/// An error response's code and reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub u16, pub &'static str);

pub(crate) const BAD_REQUEST: Code = Code(400, "Bad Request");
pub(crate) const UNAUTHENTICATED: Code = Code(401, "Unauthenticated");
pub(crate) const FORBIDDEN: Code = Code(403, "Forbidden");
pub(crate) const UNKNOWN_ATTRIBUTE: Code = Code(420, "Unknown Attribute");
pub(crate) const ALLOCATION_MISMATCH: Code = Code(437, "Allocation Mismatch");
pub(crate) const STALE_NONCE: Code = Code(438, "Stale Nonce");
pub(crate) const FAMILY_NOT_SUPPORTED: Code = Code(440, "Address Family not Supported");
pub(crate) const WRONG_CREDENTIALS: Code = Code(441, "Wrong Credentials");
pub(crate) const UNSUPPORTED_TRANSPORT: Code = Code(442, "Unsupported Transport Protocol");
pub(crate) const PEER_FAMILY_MISMATCH: Code = Code(443, "Peer Address Family Mismatch");
pub(crate) const QUOTA_REACHED: Code = Code(486, "Allocation Quota Reached");
pub(crate) const INSUFFICIENT_CAPACITY: Code = Code(508, "Insufficient Capacity");

impl Core {
    /// Finishes the message being built in `self.out` (integrity if authenticated, FINGERPRINT
    /// always) and returns it as a transmit to `to`.
    pub(crate) fn seal(
        &mut self,
        to: FiveTuple,
        auth: Option<(&[u8; 16], IntegrityKind)>,
    ) -> Option<Transmit<'_>> {
        let txid = txid_of(&self.out);
        let mut b = Builder::resume(&mut self.out, txid);
        match auth {
            Some((key, IntegrityKind::Sha1)) => {
                b.integrity(key);
            }
            Some((key, IntegrityKind::Sha256)) => {
                b.integrity_sha256(key);
            }
            None => {}
        }
        b.fingerprint();
        Some(Transmit {
            destination: Destination::Client(to),
            data: &self.out,
        })
    }

    /// An error response signed with `auth` (when the request was authenticated).
    pub(crate) fn error(
        &mut self,
        to: FiveTuple,
        msg: &Message<'_>,
        code: Code,
        auth: Option<&Authenticated>,
    ) -> Option<Transmit<'_>> {
        Builder::new(&mut self.out, msg.method, Class::Error, msg.txid).error_code(code.0, code.1);
        self.seal(to, auth.map(|a| (&a.key, a.kind)))
    }

    /// 420 listing the attributes we do not understand.
    pub(crate) fn unknown_attributes(
        &mut self,
        to: FiveTuple,
        msg: &Message<'_>,
        types: &[u16],
        auth: Option<&Authenticated>,
    ) -> Option<Transmit<'_>> {
        let mut list = [0u8; 32];
        let n = types.len().min(16);
        for (i, t) in types[..n].iter().enumerate() {
            list[2 * i..2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        Builder::new(&mut self.out, msg.method, Class::Error, msg.txid)
            .error_code(UNKNOWN_ATTRIBUTE.0, UNKNOWN_ATTRIBUTE.1)
            .attr(wire::ATTR_UNKNOWN_ATTRIBUTES, &list[..2 * n]);
        self.seal(to, auth.map(|a| (&a.key, a.kind)))
    }

    /// 401 or 438 with REALM and a fresh NONCE, unless the source IP is over its rate.
    pub(crate) fn challenge(
        &mut self,
        now: std::time::Instant,
        to: FiveTuple,
        msg: &Message<'_>,
        code: Code,
    ) -> Option<Transmit<'_>> {
        if self.limiter.take(to.client.ip(), now) == Verdict::Limited {
            self.shared.metrics.rate_limited.inc();
            return None;
        }
        let mut nonce = [0u8; 40];
        let shared = self.shared.clone();
        shared
            .auth
            .nonce(shared.unix(now), to.client.ip(), &mut nonce);
        Builder::new(&mut self.out, msg.method, Class::Error, msg.txid)
            .error_code(code.0, code.1)
            .attr(wire::ATTR_REALM, shared.auth.realm())
            .attr(wire::ATTR_NONCE, &nonce);
        self.seal(to, None)
    }
}

fn txid_of(buf: &[u8]) -> [u8; 12] {
    let mut t = [0u8; 12];
    t.copy_from_slice(&buf[8..20]);
    t
}
