//! Zero-copy parsing of STUN messages and ChannelData frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Class, WireError, consts::*, split_type};

/// One datagram or stream frame, classified by its first two bits (RFC 8656 §12).
#[derive(Debug)]
pub enum Packet<'a> {
    /// A STUN message whose framing and FINGERPRINT (if any) are valid.
    Stun(Message<'a>),
    /// ChannelData: a channel number in 0x4000..=0x4FFF and the application data.
    ChannelData {
        /// The channel number as sent; the caller checks the range.
        number: u16,
        /// The payload without padding.
        data: &'a [u8],
    },
}

/// A framed STUN message: header fields plus the raw bytes for attribute walks and integrity.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Exactly the header and attributes (no trailing bytes).
    pub raw: &'a [u8],
    /// 12-bit method.
    pub method: u16,
    /// Class.
    pub class: Class,
    /// Transaction id.
    pub txid: [u8; 12],
}

/// Classifies one UDP datagram or one complete stream frame.
///
/// For STUN, checks the magic cookie, the length field, attribute framing and FINGERPRINT. Trailing
/// bytes after a STUN message are refused; after ChannelData they are padding (streams) or ignored.
pub fn classify(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    if buf.len() < 4 {
        return Err(WireError::Truncated);
    }
    match buf[0] >> 6 {
        0b00 => parse_stun(buf).map(Packet::Stun),
        0b01 => {
            let number = u16::from_be_bytes([buf[0], buf[1]]);
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            let data = buf.get(4..4 + len).ok_or(WireError::Truncated)?;
            Ok(Packet::ChannelData { number, data })
        }
        _ => Err(WireError::Malformed),
    }
}

/// For stream transports (TCP, TLS): how many bytes the frame starting at `head` occupies, once at
/// least 4 bytes are known. ChannelData is padded to 4 over streams (RFC 8656 §12.5).
pub fn stream_frame_len(head: [u8; 4]) -> Result<usize, WireError> {
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] >> 6 {
        0b00 => Ok(HEADER_LEN + len),
        0b01 => Ok(4 + len.div_ceil(4) * 4),
        _ => Err(WireError::Malformed),
    }
}

fn parse_stun(buf: &[u8]) -> Result<Message<'_>, WireError> {
    if buf.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len % 4 != 0 || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return Err(WireError::Malformed);
    }
    if buf.len() != HEADER_LEN + len {
        return Err(if buf.len() < HEADER_LEN + len {
            WireError::Truncated
        } else {
            WireError::Malformed
        });
    }
    let (method, class) = split_type(u16::from_be_bytes([buf[0], buf[1]]));
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&buf[8..20]);
    let msg = Message {
        raw: buf,
        method,
        class,
        txid,
    };
    // One walk to check framing; FINGERPRINT must be last and correct.
    let mut offset = HEADER_LEN;
    while offset < buf.len() {
        let (ty, value, next) = attr_at(buf, offset)?;
        if ty == ATTR_FINGERPRINT {
            if next != buf.len() || value.len() != 4 {
                return Err(WireError::Fingerprint);
            }
            let want = crc32fast::hash(&buf[..offset]) ^ FINGERPRINT_XOR;
            if value != want.to_be_bytes() {
                return Err(WireError::Fingerprint);
            }
        }
        offset = next;
    }
    Ok(msg)
}

/// Reads the attribute at `offset`: (type, value, offset of the next attribute).
fn attr_at(buf: &[u8], offset: usize) -> Result<(u16, &[u8], usize), WireError> {
    let head = buf.get(offset..offset + 4).ok_or(WireError::Malformed)?;
    let ty = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let value = buf
        .get(offset + 4..offset + 4 + len)
        .ok_or(WireError::Malformed)?;
    let next = offset + 4 + len.div_ceil(4) * 4;
    if next > buf.len() {
        return Err(WireError::Malformed);
    }
    Ok((ty, value, next))
}

/// The EVEN-PORT attribute (RFC 8656 §14.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvenPort {
    /// R bit: also reserve the next port (we refuse this: no reservations).
    pub reserve: bool,
}

/// Most XOR-PEER-ADDRESS attributes one CreatePermission may carry; more is a 400.
pub const MAX_PEERS_PER_REQUEST: usize = 8;
/// Most unknown comprehension-required attributes we list back in a 420.
const MAX_UNKNOWN: usize = 8;

/// The attributes the TURN core reads, collected in one walk without allocation.
///
/// Attributes after MESSAGE-INTEGRITY(-SHA256) other than FINGERPRINT are ignored, as RFC 8489
/// §14.5 requires. A repeated attribute keeps its first value. `bad` records an attribute whose
/// value failed to decode, so the handler can answer 400.
#[derive(Debug, Default)]
pub struct Attrs<'a> {
    /// USERNAME.
    pub username: Option<&'a [u8]>,
    /// REALM.
    pub realm: Option<&'a [u8]>,
    /// NONCE.
    pub nonce: Option<&'a [u8]>,
    /// MESSAGE-INTEGRITY: (offset of the attribute, value).
    pub integrity: Option<(usize, &'a [u8])>,
    /// MESSAGE-INTEGRITY-SHA256: (offset of the attribute, value).
    pub integrity_sha256: Option<(usize, &'a [u8])>,
    /// LIFETIME in seconds.
    pub lifetime: Option<u32>,
    /// REQUESTED-TRANSPORT protocol number.
    pub requested_transport: Option<u8>,
    /// REQUESTED-ADDRESS-FAMILY family byte.
    pub requested_family: Option<u8>,
    /// XOR-PEER-ADDRESS values decoded.
    pub peers: [Option<SocketAddr>; MAX_PEERS_PER_REQUEST],
    /// How many XOR-PEER-ADDRESS attributes were present (may exceed the array).
    pub peer_count: usize,
    /// DATA.
    pub data: Option<&'a [u8]>,
    /// CHANNEL-NUMBER.
    pub channel: Option<u16>,
    /// DONT-FRAGMENT present.
    pub dont_fragment: bool,
    /// EVEN-PORT, if present.
    pub even_port: Option<EvenPort>,
    /// RESERVATION-TOKEN present (we refuse it).
    pub reservation_token: bool,
    /// Unknown comprehension-required attribute types, for a 420.
    pub unknown: [u16; MAX_UNKNOWN],
    /// How many of `unknown` are set.
    pub unknown_count: usize,
    /// A known attribute had an undecodable value.
    pub bad: bool,
}

impl<'a> Attrs<'a> {
    /// Walks `msg`'s attributes once. `msg` came from [`classify`], so framing is already valid.
    pub fn parse(msg: &Message<'a>) -> Attrs<'a> {
        let buf = msg.raw;
        let mut a = Attrs::default();
        let mut offset = HEADER_LEN;
        let mut after_integrity = false;
        while offset < buf.len() {
            let Ok((ty, v, next)) = attr_at(buf, offset) else {
                a.bad = true;
                break;
            };
            if after_integrity && ty != ATTR_FINGERPRINT && ty != ATTR_MESSAGE_INTEGRITY_SHA256 {
                offset = next;
                continue;
            }
            match ty {
                ATTR_USERNAME => set_once(&mut a.username, v),
                ATTR_REALM => set_once(&mut a.realm, v),
                ATTR_NONCE => set_once(&mut a.nonce, v),
                ATTR_MESSAGE_INTEGRITY => {
                    if v.len() == 20 {
                        a.integrity.get_or_insert((offset, v));
                    } else {
                        a.bad = true;
                    }
                    after_integrity = true;
                }
                ATTR_MESSAGE_INTEGRITY_SHA256 => {
                    if (16..=32).contains(&v.len()) && v.len() % 4 == 0 {
                        a.integrity_sha256.get_or_insert((offset, v));
                    } else {
                        a.bad = true;
                    }
                    after_integrity = true;
                }
                ATTR_LIFETIME => match <[u8; 4]>::try_from(v) {
                    Ok(b) => {
                        a.lifetime.get_or_insert(u32::from_be_bytes(b));
                    }
                    Err(_) => a.bad = true,
                },
                ATTR_REQUESTED_TRANSPORT => match v {
                    [p, _, _, _] => {
                        a.requested_transport.get_or_insert(*p);
                    }
                    _ => a.bad = true,
                },
                ATTR_REQUESTED_ADDRESS_FAMILY => match v {
                    [f, _, _, _] => {
                        a.requested_family.get_or_insert(*f);
                    }
                    _ => a.bad = true,
                },
                ATTR_XOR_PEER_ADDRESS => {
                    match decode_xor_address(v, &msg.txid) {
                        Some(addr) if a.peer_count < MAX_PEERS_PER_REQUEST => {
                            a.peers[a.peer_count] = Some(addr);
                        }
                        Some(_) => {}
                        None => a.bad = true,
                    }
                    a.peer_count += 1;
                }
                ATTR_DATA => set_once(&mut a.data, v),
                ATTR_CHANNEL_NUMBER => match v {
                    [h, l, _, _] => {
                        a.channel.get_or_insert(u16::from_be_bytes([*h, *l]));
                    }
                    _ => a.bad = true,
                },
                ATTR_DONT_FRAGMENT => a.dont_fragment = true,
                ATTR_EVEN_PORT => match v.first() {
                    Some(&flags) => {
                        a.even_port = Some(EvenPort {
                            reserve: flags & 0x80 != 0,
                        })
                    }
                    None => a.bad = true,
                },
                ATTR_RESERVATION_TOKEN => a.reservation_token = true,
                ATTR_FINGERPRINT | ATTR_SOFTWARE | ATTR_BANDWIDTH => {}
                t if t < 0x8000 && a.unknown_count < MAX_UNKNOWN => {
                    a.unknown[a.unknown_count] = t;
                    a.unknown_count += 1;
                }
                _ => {}
            }
            offset = next;
        }
        a
    }

    /// The decoded XOR-PEER-ADDRESS values, or `None` if there were more than we accept.
    pub fn peer_list(&self) -> Option<impl Iterator<Item = SocketAddr> + '_> {
        if self.peer_count > MAX_PEERS_PER_REQUEST {
            return None;
        }
        Some(self.peers[..self.peer_count].iter().flatten().copied())
    }
}

fn set_once<'a>(slot: &mut Option<&'a [u8]>, v: &'a [u8]) {
    slot.get_or_insert(v);
}

/// Decodes an XOR-*-ADDRESS value (RFC 8489 §14.2).
pub fn decode_xor_address(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match (v[1], v.len()) {
        (FAMILY_V4, 8) => {
            let mut ip = [0u8; 4];
            for i in 0..4 {
                ip[i] = v[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (FAMILY_V6, 20) => {
            let mut ip = [0u8; 16];
            for i in 0..16 {
                let k = if i < 4 { cookie[i] } else { txid[i - 4] };
                ip[i] = v[4 + i] ^ k;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}
