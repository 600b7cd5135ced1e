//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `<webhook-id>.<webhook-timestamp>.<body>`, keyed with the bytes of a `whsec_` secret. With
//! several secrets (rotation) the header holds one signature per secret, space-separated, and a
//! receiver accepts the request if any one of them verifies with a secret it knows.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The `webhook-signature` header value for `body`, signed with each key.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| format!("v1,{}", sign(key, id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One signature: base64 of HMAC-SHA256(key, `id.timestamp.body`).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What a receiver does: whether any `v1` signature of `header` verifies with `key`. Compared
/// in constant time.
pub fn verify(key: &[u8], header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    header.split(' ').any(|part| {
        let Some(b64) = part.strip_prefix("v1,") else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries' test
    /// vector): this secret, id, timestamp and body sign to this value.
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = config::webhook_secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let timestamp = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, id, timestamp, body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_secret_signs_and_any_one_verifies() {
        let old = vec![1u8; 32];
        let new = vec![2u8; 32];
        let header = signature_header(&[new.clone(), old.clone()], "evt_1", 1700000000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, &header, "evt_1", 1700000000, b"{}"));
        assert!(verify(&new, &header, "evt_1", 1700000000, b"{}"));
        assert!(!verify(&[3u8; 32], &header, "evt_1", 1700000000, b"{}"));
        assert!(
            !verify(&old, &header, "evt_1", 1700000001, b"{}"),
            "timestamp is signed"
        );
        assert!(
            !verify(&old, &header, "evt_2", 1700000000, b"{}"),
            "id is signed"
        );
        assert!(
            !verify(&old, &header, "evt_1", 1700000000, b"{ }"),
            "body is signed"
        );
    }
}
