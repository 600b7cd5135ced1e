//! ICE server lists with ephemeral TURN credentials.
//!
//! TURN credentials use coturn's `use-auth-secret` (TURN REST API) format, so any TURN server
//! sharing the secret accepts them: username `<expiry unix seconds>:<userId>`, credential
//! `base64(HMAC-SHA1(secret, username))`.

use base64::Engine;
use config::IceConfig;
use hmac::{Hmac, Mac};
use protocol::{IceServer, UserId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds the `iceServers` list handed to one user.
#[derive(Clone, Debug)]
pub struct IceServers {
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    turn_secret: Vec<u8>,
    ttl: Duration,
}

impl IceServers {
    pub fn new(config: &IceConfig) -> Self {
        Self {
            stun_urls: config.stun_urls.clone(),
            turn_urls: config.turn_urls.clone(),
            turn_secret: config.turn_secret.as_bytes().to_vec(),
            ttl: config.credential_ttl.get(),
        }
    }

    /// The list for `user` at wall-clock time `now`.
    pub fn for_user(&self, user: &UserId, now: SystemTime) -> Vec<IceServer> {
        let mut list = Vec::with_capacity(2);
        if !self.stun_urls.is_empty() {
            list.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn_urls.is_empty() {
            let (username, credential) = turn_credential(&self.turn_secret, user, self.ttl, now);
            list.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        list
    }
}

/// One TURN REST credential: (username, password).
pub fn turn_credential(
    secret: &[u8],
    user: &UserId,
    ttl: Duration,
    now: SystemTime,
) -> (String, String) {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
    let username = format!("{}:{}", expiry.as_secs(), user);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_coturn_rest_format() {
        // Reference value computed independently:
        // printf '%s' '1000060:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let (u, p) = turn_credential(
            b"secret",
            &"alice".into(),
            Duration::from_secs(60),
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        );
        assert_eq!(u, "1000060:alice");
        assert_eq!(p, "5UotjgfMURFfaxdiX+k10SZcnM4=");
    }

    #[test]
    fn lists_stun_and_turn_only_when_configured() {
        let mut c = IceConfig::default();
        assert!(
            IceServers::new(&c)
                .for_user(&"a".into(), SystemTime::now())
                .is_empty()
        );
        c.stun_urls = vec!["stun:s:3478".into()];
        c.turn_urls = vec!["turn:t:3478".into()];
        c.turn_secret = "k".into();
        let list = IceServers::new(&c).for_user(&"a".into(), SystemTime::now());
        assert_eq!(list.len(), 2);
        assert!(list[0].username.is_none());
        assert!(list[1].username.as_deref().unwrap().ends_with(":a"));
    }
}
