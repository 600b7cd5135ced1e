//! The STUN/TURN wire format (RFC 8489 §5–§15, RFC 8656 §11–§14), parsed without allocation.
//!
//! We keep our own small codec instead of the `stun` crate: that crate decodes every attribute
//! into a heap `Vec` per message, which the relay hot path (ChannelData and Send indications, one
//! per media packet) cannot afford, and it has no zero-copy view of MESSAGE-INTEGRITY's span. See
//! `docs/adr/0020-turn-own-codec-and-mio-driver.md`.
//!
//! Reading: [`classify`] tells a STUN message from ChannelData and checks framing and FINGERPRINT;
//! [`Attrs::parse`] walks the attributes once into fixed-size fields. Writing: [`Builder`] appends
//! to a reused `Vec<u8>`.

mod build;
mod consts;
mod parse;

pub use build::{Builder, integrity_input};
pub use consts::*;
pub use parse::{
    Attrs, EvenPort, MAX_PEERS_PER_REQUEST, Message, Packet, classify, decode_xor_address,
    stream_frame_len,
};

/// Why bytes were not a well-formed STUN message or ChannelData frame. Such input is dropped
/// (RFC 8489 §6.3: a message that fails these checks is not processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header, or than its own length field says.
    #[error("truncated")]
    Truncated,
    /// Top bits, magic cookie, padding or attribute lengths are wrong.
    #[error("malformed")]
    Malformed,
    /// FINGERPRINT present but wrong or not last.
    #[error("bad fingerprint")]
    Fingerprint,
}

/// STUN message class (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Expects a response.
    Request,
    /// Fire and forget (Send, Data).
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

/// Builds the 16-bit message type from a 12-bit method and a class.
pub fn message_type(method: u16, class: Class) -> u16 {
    let c = match class {
        Class::Request => 0x000,
        Class::Indication => 0x010,
        Class::Success => 0x100,
        Class::Error => 0x110,
    };
    (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | c
}

/// Splits a message type into method and class.
pub fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
    let class = match t & 0x0110 {
        0x000 => Class::Request,
        0x010 => Class::Indication,
        0x100 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}
