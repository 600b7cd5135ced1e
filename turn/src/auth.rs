//! Long-term credentials (RFC 8489 §9.2), TURN REST ephemeral credentials, stateless nonces.
//!
//! REST credentials follow coturn's `use-auth-secret`: the username is `expiry:userId` (expiry in
//! UNIX seconds) and the password is `base64(HMAC-SHA1(secret, username))`. The server needs no
//! user database: it recomputes the password from each configured secret. Expiry is checked on
//! every authenticated request, so an expired credential cannot Allocate or Refresh.
//!
//! Nonces are `hex(issued_at) || hex(HMAC-SHA256(nonce_key, issued_at || client_ip))[..24]`, so a
//! challenge creates no server state and a nonce cannot be replayed from another address or
//! after `nonce_lifetime`.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::wire::{Attrs, Message, integrity_input};

/// Mints a TURN REST credential valid for `ttl` from `now`: `(username, password)` to put in an
/// RTCIceServer. `user` is the application's user id (it ends up in logs and quotas, not metrics).
pub fn rest_credential(
    secret: &[u8],
    user: &str,
    ttl: Duration,
    now: SystemTime,
) -> (String, String) {
    let expiry = now
        .checked_add(ttl)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let username = format!("{expiry}:{user}");
    let password = rest_password(secret, username.as_bytes());
    (username, password)
}

/// The REST password for `username` under `secret`.
pub fn rest_password(secret: &[u8], username: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The long-term key `MD5(username ":" realm ":" password)` (RFC 8489 §9.2.2).
pub fn long_term_key(username: &[u8], realm: &[u8], password: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    h.finalize().into()
}

/// Which integrity attribute(s) a request carried, so the response uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256 (possibly alongside SHA-1; SHA-256 is then the one checked).
    Sha256,
}

/// Why a request failed authentication; the label of `chorus_turn_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No integrity attribute: the normal first request, answered with a 401 challenge.
    Missing,
    /// Integrity present but USERNAME, REALM or NONCE absent (400).
    Malformed,
    /// Nonce forged, from another address, or too old (438).
    StaleNonce,
    /// REALM differs from ours (401).
    WrongRealm,
    /// REST credential past its expiry (401).
    Expired,
    /// Neither a REST credential under any secret nor a static user matched (401).
    BadCredentials,
}

impl AuthFailure {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "challenge",
            AuthFailure::Malformed => "malformed",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::WrongRealm => "wrong_realm",
            AuthFailure::Expired => "expired",
            AuthFailure::BadCredentials => "bad_credentials",
        }
    }
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Long-term key to sign the response with.
    pub key: [u8; 16],
    /// Integrity kind to answer with.
    pub kind: IntegrityKind,
    /// Full USERNAME (allocations remember it: another username gets 441).
    pub username: Box<str>,
    /// Quota key: the user id of a REST username, or the whole static username.
    pub user: Box<str>,
}

/// Credential sources and nonce key of one server; immutable, shared by all workers.
pub struct Authenticator {
    realm: Box<[u8]>,
    secrets: Vec<Box<[u8]>>,
    static_users: Vec<(Box<[u8]>, [u8; 16])>,
    nonce_key: [u8; 32],
    nonce_lifetime: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `nonce_key` should be random per process (rotating it invalidates nonces: clients get 438
    /// and retry, which is harmless).
    pub fn new(
        realm: &str,
        secrets: &[String],
        static_users: &[crate::StaticUser],
        nonce_key: [u8; 32],
        nonce_lifetime: Duration,
    ) -> Authenticator {
        Authenticator {
            realm: realm.as_bytes().into(),
            secrets: secrets.iter().map(|s| s.as_bytes().into()).collect(),
            static_users: static_users
                .iter()
                .map(|u| {
                    let key = long_term_key(
                        u.username.as_bytes(),
                        realm.as_bytes(),
                        u.password.as_bytes(),
                    );
                    (u.username.as_bytes().into(), key)
                })
                .collect(),
            nonce_key,
            nonce_lifetime: nonce_lifetime.as_secs(),
        }
    }

    /// Our REALM.
    pub fn realm(&self) -> &[u8] {
        &self.realm
    }

    /// A fresh nonce for `ip` at `unix_now`, written into `out` (40 ASCII hex bytes).
    pub fn nonce(&self, unix_now: u64, ip: IpAddr, out: &mut [u8; 40]) {
        let mac = self.nonce_mac(unix_now, ip);
        hex_into(&unix_now.to_be_bytes(), &mut out[..16]);
        hex_into(&mac, &mut out[16..]);
    }

    fn nonce_mac(&self, ts: u64, ip: IpAddr) -> [u8; 12] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.nonce_key).expect("any key length");
        mac.update(&ts.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&full[..12]);
        out
    }

    fn nonce_valid(&self, nonce: &[u8], unix_now: u64, ip: IpAddr) -> bool {
        if nonce.len() != 40 {
            return false;
        }
        let (Some(ts), Some(mac)) = (unhex::<8>(&nonce[..16]), unhex::<12>(&nonce[16..])) else {
            return false;
        };
        let ts = u64::from_be_bytes(ts);
        let fresh = ts <= unix_now && unix_now - ts < self.nonce_lifetime;
        let genuine: bool = self.nonce_mac(ts, ip).ct_eq(&mac).into();
        fresh & genuine
    }

    /// Authenticates a request (RFC 8489 §9.2.4): integrity present, attributes present, nonce
    /// valid, realm ours, credential known and unexpired, integrity correct.
    pub fn check(
        &self,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
        ip: IpAddr,
        unix_now: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let (kind, offset, tag) = match (attrs.integrity_sha256, attrs.integrity) {
            (Some((o, t)), _) => (IntegrityKind::Sha256, o, t),
            (None, Some((o, t))) => (IntegrityKind::Sha1, o, t),
            (None, None) => return Err(AuthFailure::Missing),
        };
        let (Some(username), Some(realm), Some(nonce)) = (attrs.username, attrs.realm, attrs.nonce)
        else {
            return Err(AuthFailure::Malformed);
        };
        if !self.nonce_valid(nonce, unix_now, ip) {
            return Err(AuthFailure::StaleNonce);
        }
        if realm != &*self.realm {
            return Err(AuthFailure::WrongRealm);
        }
        let verify = |key: &[u8; 16]| integrity_ok(msg, kind, offset, tag, key);
        if let Some((expiry, user)) = parse_rest_username(username)
            && !self.secrets.is_empty()
        {
            if expiry < unix_now {
                return Err(AuthFailure::Expired);
            }
            for secret in &self.secrets {
                let password = rest_password(secret, username);
                let key = long_term_key(username, &self.realm, password.as_bytes());
                if verify(&key) {
                    return Ok(Authenticated {
                        key,
                        kind,
                        username: String::from_utf8_lossy(username).into(),
                        user: String::from_utf8_lossy(user).into(),
                    });
                }
            }
        }
        for (name, key) in &self.static_users {
            if name.as_ref() == username && verify(key) {
                let name: Box<str> = String::from_utf8_lossy(username).into();
                return Ok(Authenticated {
                    key: *key,
                    kind,
                    username: name.clone(),
                    user: name,
                });
            }
        }
        Err(AuthFailure::BadCredentials)
    }
}

/// Splits `expiry:user` (or a bare `expiry`, which coturn also accepts).
fn parse_rest_username(username: &[u8]) -> Option<(u64, &[u8])> {
    let (ts, user) = match username.iter().position(|&b| b == b':') {
        Some(i) => (&username[..i], &username[i + 1..]),
        None => (username, &username[..0]),
    };
    if ts.is_empty() || ts.len() > 20 || !ts.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(ts)
        .ok()?
        .parse()
        .ok()
        .map(|t| (t, user))
}

fn integrity_ok(
    msg: &Message<'_>,
    kind: IntegrityKind,
    offset: usize,
    tag: &[u8],
    key: &[u8; 16],
) -> bool {
    match kind {
        IntegrityKind::Sha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
            integrity_input(msg.raw, offset, tag.len(), |b| mac.update(b));
            mac.finalize().into_bytes().as_slice().ct_eq(tag).into()
        }
        IntegrityKind::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            integrity_input(msg.raw, offset, tag.len(), |b| mac.update(b));
            mac.finalize().into_bytes()[..tag.len()].ct_eq(tag).into()
        }
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for i in 0..N {
        out[i] = nib(s[2 * i])? << 4 | nib(s[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credential_matches_coturn_format() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (u, p) = rest_credential(b"north", "alice", Duration::from_secs(3600), now);
        assert_eq!(u, "1700003600:alice");
        // Independent value: printf '1700003600:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(p, "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    }

    #[test]
    fn nonce_binds_time_and_address() {
        let a = Authenticator::new("r", &[], &[], [7; 32], Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut n = [0u8; 40];
        a.nonce(1000, ip, &mut n);
        assert!(a.nonce_valid(&n, 1000, ip));
        assert!(a.nonce_valid(&n, 1599, ip));
        assert!(!a.nonce_valid(&n, 1600, ip));
        assert!(!a.nonce_valid(&n, 1000, "192.0.2.2".parse().unwrap()));
        let mut forged = n;
        forged[39] = if forged[39] == b'0' { b'1' } else { b'0' };
        assert!(!a.nonce_valid(&forged, 1000, ip));
        assert!(!a.nonce_valid(b"garbage", 1000, ip));
    }

    #[test]
    fn rest_usernames() {
        assert_eq!(parse_rest_username(b"123:bob"), Some((123, &b"bob"[..])));
        assert_eq!(parse_rest_username(b"123"), Some((123, &b""[..])));
        assert_eq!(parse_rest_username(b"bob:123"), None);
        assert_eq!(parse_rest_username(b""), None);
        assert_eq!(parse_rest_username(b"99999999999999999999999:x"), None);
    }
}
