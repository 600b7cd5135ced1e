//! Writing STUN messages into a reused buffer.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::{Class, consts::*, message_type};

/// Appends one STUN message to a caller-owned buffer (cleared first), so responses on the control
/// path reuse one allocation per worker.
///
/// Lifecycle: [`Builder::new`] writes the header; attribute methods append; integrity and
/// [`Builder::fingerprint`] must come last, in that order; the length field is kept current after
/// every append, so the buffer is a valid message at any point.
pub struct Builder<'b> {
    buf: &'b mut Vec<u8>,
    txid: [u8; 12],
}

impl<'b> Builder<'b> {
    /// Starts a message of `method`/`class` with transaction id `txid`.
    pub fn new(buf: &'b mut Vec<u8>, method: u16, class: Class, txid: [u8; 12]) -> Self {
        buf.clear();
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf, txid }
    }

    /// Continues a message already in `buf` (started by [`Builder::new`]).
    pub fn resume(buf: &'b mut Vec<u8>, txid: [u8; 12]) -> Self {
        Builder { buf, txid }
    }

    /// Appends an attribute with padding.
    pub fn attr(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&ty.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&value[..usize::from(len)]);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.sync_len();
        self
    }

    /// Appends a 32-bit attribute (LIFETIME, CHANNEL-NUMBER's padded form, ...).
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    /// Appends an XOR-*-ADDRESS attribute.
    pub fn xor_address(&mut self, ty: u16, addr: SocketAddr) -> &mut Self {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&port.to_be_bytes());
        let len = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = FAMILY_V4;
                for (i, b) in ip.octets().iter().enumerate() {
                    v[4 + i] = b ^ cookie[i];
                }
                8
            }
            IpAddr::V6(ip) => {
                v[1] = FAMILY_V6;
                for (i, b) in ip.octets().iter().enumerate() {
                    let k = if i < 4 { cookie[i] } else { self.txid[i - 4] };
                    v[4 + i] = b ^ k;
                }
                20
            }
        };
        self.attr(ty, &v[..len])
    }

    /// Appends ERROR-CODE (RFC 8489 §14.8).
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = [0u8; 4 + 64];
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        let r = &reason.as_bytes()[..reason.len().min(64)];
        v[4..4 + r.len()].copy_from_slice(r);
        self.attr(ATTR_ERROR_CODE, &v[..4 + r.len()])
    }

    /// Appends MESSAGE-INTEGRITY keyed with the long-term key.
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let start = self.buf.len();
        self.attr(ATTR_MESSAGE_INTEGRITY, &[0u8; 20]);
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&self.buf[..start]);
        let tag = mac.finalize().into_bytes();
        self.buf[start + 4..start + 24].copy_from_slice(&tag);
        self
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (full 32 bytes).
    pub fn integrity_sha256(&mut self, key: &[u8]) -> &mut Self {
        let start = self.buf.len();
        self.attr(ATTR_MESSAGE_INTEGRITY_SHA256, &[0u8; 32]);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&self.buf[..start]);
        let tag = mac.finalize().into_bytes();
        self.buf[start + 4..start + 36].copy_from_slice(&tag);
        self
    }

    /// Appends FINGERPRINT; must be the last attribute.
    pub fn fingerprint(&mut self) -> &mut Self {
        let start = self.buf.len();
        self.attr(ATTR_FINGERPRINT, &[0u8; 4]);
        let crc = crc32fast::hash(&self.buf[..start]) ^ FINGERPRINT_XOR;
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        self
    }

    fn sync_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Computes the MESSAGE-INTEGRITY(-SHA256) input of a received message: the bytes before the
/// attribute at `offset`, with the header length rewritten to end just after that attribute
/// (RFC 8489 §14.5). Feeds `update` without copying the message.
pub fn integrity_input(raw: &[u8], offset: usize, attr_len: usize, mut update: impl FnMut(&[u8])) {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&raw[..HEADER_LEN]);
    let len = (offset + 4 + attr_len - HEADER_LEN) as u16;
    head[2..4].copy_from_slice(&len.to_be_bytes());
    update(&head);
    update(&raw[HEADER_LEN..offset]);
}
