//! Numbers from the RFCs' IANA tables, named.

/// RFC 8489 §5: fixed value that tells STUN from other protocols on the same port.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// Size of a STUN header.
pub const HEADER_LEN: usize = 20;
/// XOR applied to the CRC-32 in FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Binding (RFC 8489).
pub const METHOD_BINDING: u16 = 0x001;
/// Allocate (RFC 8656 §7).
pub const METHOD_ALLOCATE: u16 = 0x003;
/// Refresh (RFC 8656 §8).
pub const METHOD_REFRESH: u16 = 0x004;
/// Send indication (RFC 8656 §11).
pub const METHOD_SEND: u16 = 0x006;
/// Data indication (RFC 8656 §11).
pub const METHOD_DATA: u16 = 0x007;
/// CreatePermission (RFC 8656 §10).
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
/// ChannelBind (RFC 8656 §12).
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

/// MAPPED-ADDRESS.
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME.
pub const ATTR_USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY (HMAC-SHA1).
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE.
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES.
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000a;
/// CHANNEL-NUMBER.
pub const ATTR_CHANNEL_NUMBER: u16 = 0x000c;
/// LIFETIME.
pub const ATTR_LIFETIME: u16 = 0x000d;
/// BANDWIDTH (RFC 5766 draft leftover, still sent by some clients; ignored).
pub const ATTR_BANDWIDTH: u16 = 0x0010;
/// XOR-PEER-ADDRESS.
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA.
pub const ATTR_DATA: u16 = 0x0013;
/// REALM.
pub const ATTR_REALM: u16 = 0x0014;
/// NONCE.
pub const ATTR_NONCE: u16 = 0x0015;
/// XOR-RELAYED-ADDRESS.
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// REQUESTED-ADDRESS-FAMILY.
pub const ATTR_REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// EVEN-PORT.
pub const ATTR_EVEN_PORT: u16 = 0x0018;
/// REQUESTED-TRANSPORT.
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
/// DONT-FRAGMENT.
pub const ATTR_DONT_FRAGMENT: u16 = 0x001a;
/// MESSAGE-INTEGRITY-SHA256.
pub const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
/// XOR-MAPPED-ADDRESS.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RESERVATION-TOKEN.
pub const ATTR_RESERVATION_TOKEN: u16 = 0x0022;
/// SOFTWARE: parsed and ignored; we never send it (it tells attackers which CVEs to try).
pub const ATTR_SOFTWARE: u16 = 0x8022;
/// FINGERPRINT.
pub const ATTR_FINGERPRINT: u16 = 0x8028;

/// REQUESTED-TRANSPORT protocol number for UDP.
pub const PROTO_UDP: u8 = 17;
/// Address family byte for IPv4 in address attributes.
pub const FAMILY_V4: u8 = 0x01;
/// Address family byte for IPv6 in address attributes.
pub const FAMILY_V6: u8 = 0x02;
