//! The relay envelope: how a message reaches the other participants with its sender stamped
//! by the server.
//!
//! Clients send bare payloads; the server never reads an identity from them. What a receiver
//! gets depends on how the message was sent, so text stays text and binary stays binary:
//!
//! - **Text** (a JavaScript string): a JSON object `{"from":"<userId>","data":"<text>"}` sent
//!   as text. `JSON.parse` on the receiving side gives the sender and the original string.
//! - **Binary** (an `ArrayBuffer`/`Blob`): `[version = 1][sender length, u16 big-endian][sender,
//!   UTF-8][payload]` sent as binary. The payload is the original bytes, untouched.
//!
//! The sender is the user id from the participant's token, the same `userId` that
//! `track:published` and `room:participant:joined` carry.

/// The first byte of a binary envelope. A later layout gets a new value, so receivers can
/// tell them apart.
pub const BINARY_VERSION: u8 = 1;

/// Wraps `payload` from `sender` for relaying. `binary` is how it was sent (and how it is
/// relayed). Text must be UTF-8; `None` when it is not (a broken client).
pub fn wrap(sender: &str, binary: bool, payload: &[u8]) -> Option<Vec<u8>> {
    if binary {
        // User ids are at most 128 characters (protocol::valid_id), far below u16::MAX bytes;
        // a longer one would be a bug upstream, refused here rather than truncated.
        let len = u16::try_from(sender.len()).ok()?;
        let mut out = Vec::with_capacity(3 + sender.len() + payload.len());
        out.push(BINARY_VERSION);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(sender.as_bytes());
        out.extend_from_slice(payload);
        Some(out)
    } else {
        let text = std::str::from_utf8(payload).ok()?;
        let mut out = String::with_capacity(24 + sender.len() + text.len() + text.len() / 8);
        out.push_str("{\"from\":");
        json_string(&mut out, sender);
        out.push_str(",\"data\":");
        json_string(&mut out, text);
        out.push('}');
        Some(out.into_bytes())
    }
}

/// Splits a binary envelope into (sender, payload): what a receiver does. `None` when it is
/// not one.
pub fn unwrap_binary(envelope: &[u8]) -> Option<(&str, &[u8])> {
    let (&version, rest) = envelope.split_first()?;
    if version != BINARY_VERSION || rest.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let rest = &rest[2..];
    if rest.len() < len {
        return None;
    }
    let sender = std::str::from_utf8(&rest[..len]).ok()?;
    Some((sender, &rest[len..]))
}

/// Appends `s` as a JSON string literal (RFC 8259 §7: quote, backslash and control
/// characters escaped; everything else verbatim, UTF-8).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
