//! Token verification and minting.
//!
//! The algorithm comes from configuration, never from the token header: a token signed with
//! any other algorithm (including `none`) is refused as `token_invalid`. `exp` and `sub` are
//! required; leeway is capped at 60 s by config validation.
//!
//! `iss` and `aud` are required exactly when `auth.issuer` / `auth.audience` are configured: a
//! token without the claim is refused with the same code as one with a wrong value
//! (`token_bad_issuer`, `token_bad_audience`), so an operator reading the refusal learns which
//! claim is at fault. `aud` may be one string or an array (RFC 7519 §4.1.3); an array is valid
//! when it contains the configured audience. A claim of another JSON type counts as missing or
//! as malformed (`token_invalid`): either way the token is refused.
//!
//! Claims: `sub` is the user id, `name` the display name (defaults to `sub`), and the optional
//! grants `room`, `canPublish`, `canSubscribe`, `canPublishData`, `canChat` (default `true`) and `admin` (default
//! `false`) sit at the top level of the payload. `contacts`, an optional array of user ids, lists
//! whose presence the user may see when `presence.visibility` is `contacts`.

use crate::revocation::{Credential, MAX_JTI_BYTES};
use config::{AuthConfig, JwtAlgorithm};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use protocol::{ErrorCode, Failure, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who a connection belongs to and what it may do, from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub name: String,
    pub grants: Grants,
    /// The token's `contacts` claim.
    pub contacts: Contacts,
}

/// Users the token's issuer lists as the user's contacts (claim `contacts`): with
/// `presence.visibility = "contacts"` the user may see their presence. Shared, because every
/// connection of the user keeps a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contacts(Arc<HashSet<UserId>>);

impl Contacts {
    pub fn contains(&self, user: &UserId) -> bool {
        self.0.contains(user)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<UserId> for Contacts {
    fn from_iter<I: IntoIterator<Item = UserId>>(iter: I) -> Self {
        Self(Arc::new(iter.into_iter().collect()))
    }
}

/// Permissions carried by the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// The one named room this token may join (SFU rooms); `None` means no room grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default = "yes")]
    pub can_publish: bool,
    #[serde(default = "yes")]
    pub can_subscribe: bool,
    /// May send data channel messages through the SFU (`canPublishData`).
    #[serde(default = "yes")]
    pub can_publish_data: bool,
    #[serde(default = "yes")]
    pub can_chat: bool,
    #[serde(default)]
    pub admin: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            room: None,
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            can_chat: true,
            admin: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// The JWT payload Chorus reads and mints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's id: the server API can revoke this one token by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<AudienceClaim>,
    /// User ids whose presence this user may see (`presence.visibility = "contacts"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(flatten)]
    pub grants: Grants,
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AudienceClaim {
    One(String),
    Many(Vec<String>),
}

impl AudienceClaim {
    /// Whether `audience` is (one of) the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// Why a token was refused; `code()` is what the client sees and what metrics count.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AuthError {
    pub code: ErrorCode,
    pub message: String,
}

impl AuthError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::new(e.code, e.message)
    }
}

/// Verifies tokens with the configured key. Built once at startup; cheap to share.
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Authenticator {
    /// Loads keys per `config`. `secret_override` replaces the HS256 secret (dev mode's generated
    /// one). Fails with a message naming the key when a key file cannot be used.
    pub fn new(config: &AuthConfig, secret_override: Option<&str>) -> Result<Self, String> {
        let algorithm = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        };
        let read =
            |key: &str, path: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>, String> {
                match path {
                    None => Ok(None),
                    Some(p) => std::fs::read(p)
                        .map(Some)
                        .map_err(|e| format!("invalid value for `{key}`: {}: {e}", p.display())),
                }
            };
        let public = read("auth.public_key_file", &config.public_key_file)?;
        let private = read("auth.private_key_file", &config.private_key_file)?;
        let bad =
            |key: &str, e: jsonwebtoken::errors::Error| format!("invalid value for `{key}`: {e}");
        let (decoding, encoding) = match algorithm {
            Algorithm::HS256 => {
                let secret = secret_override.unwrap_or(&config.secret).as_bytes();
                (
                    DecodingKey::from_secret(secret),
                    Some(EncodingKey::from_secret(secret)),
                )
            }
            Algorithm::RS256 => {
                let public = public.ok_or("invalid value for `auth.public_key_file`: required")?;
                let decoding = DecodingKey::from_rsa_pem(&public)
                    .map_err(|e| bad("auth.public_key_file", e))?;
                let encoding = private
                    .map(|p| EncodingKey::from_rsa_pem(&p))
                    .transpose()
                    .map_err(|e| bad("auth.private_key_file", e))?;
                (decoding, encoding)
            }
            _ => {
                let public = public.ok_or("invalid value for `auth.public_key_file`: required")?;
                let decoding = DecodingKey::from_ec_pem(&public)
                    .map_err(|e| bad("auth.public_key_file", e))?;
                let encoding = private
                    .map(|p| EncodingKey::from_ec_pem(&p))
                    .transpose()
                    .map_err(|e| bad("auth.private_key_file", e))?;
                (decoding, encoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.get().as_secs();
        validation.validate_nbf = true;
        // A configured issuer or audience is only checked on tokens that carry the claim,
        // unless the claim is also required: so it is.
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            decoding,
            encoding,
            validation,
            algorithm,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Verifies `token` and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_until(token).map(|(identity, _)| identity)
    }

    /// Verifies `token` and returns who it names and until when this server accepts it: its
    /// `exp` plus the configured leeway, in Unix seconds. A live session ends then.
    pub fn verify_until(&self, token: &str) -> Result<(Identity, u64), AuthError> {
        self.verify_token(token)
            .map(|(identity, terms)| (identity, terms.until))
    }

    /// [`Authenticator::verify_until`], with what a revocation is checked against. Revocations
    /// themselves are checked by the caller ([`crate::revocation::Revocations::check`]).
    pub fn verify_token(&self, token: &str) -> Result<(Identity, TokenTerms), AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::new(
                ErrorCode::TokenMissing,
                "no token presented",
            ));
        }
        if token.len() > 8192 {
            return Err(AuthError::new(ErrorCode::TokenInvalid, "token is too long"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                let code = match e.kind() {
                    ErrorKind::ExpiredSignature => ErrorCode::TokenExpired,
                    ErrorKind::ImmatureSignature => ErrorCode::TokenNotYetValid,
                    ErrorKind::InvalidSignature => ErrorCode::TokenBadSignature,
                    ErrorKind::InvalidIssuer => ErrorCode::TokenBadIssuer,
                    ErrorKind::InvalidAudience => ErrorCode::TokenBadAudience,
                    ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
                        return AuthError::new(
                            ErrorCode::TokenBadIssuer,
                            "the token has no `iss` claim; this server requires one",
                        );
                    }
                    ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                        return AuthError::new(
                            ErrorCode::TokenBadAudience,
                            "the token has no `aud` claim; this server requires one",
                        );
                    }
                    _ => ErrorCode::TokenInvalid,
                };
                AuthError::new(code, e.to_string())
            })?;
        let claims = data.claims;
        if claims.jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_BYTES) {
            return Err(AuthError::new(
                ErrorCode::TokenInvalid,
                format!("`jti` is longer than {MAX_JTI_BYTES} bytes"),
            ));
        }
        if !protocol::valid_id(&claims.sub) {
            return Err(AuthError::new(
                ErrorCode::TokenInvalid,
                "`sub` must be 1-128 characters without control characters",
            ));
        }
        if !claims.contacts.iter().all(|c| protocol::valid_id(c)) {
            return Err(AuthError::new(
                ErrorCode::TokenInvalid,
                "`contacts` must list user ids of 1-128 characters without control characters",
            ));
        }
        let name = claims
            .name
            .filter(|n| !n.trim().is_empty())
            .map(|n| protocol::truncate(&n, 256).to_owned())
            .unwrap_or_else(|| claims.sub.clone());
        let identity = Identity {
            user_id: UserId(claims.sub),
            name,
            grants: claims.grants,
            contacts: claims.contacts.into_iter().map(UserId).collect(),
        };
        let terms = TokenTerms {
            until: claims.exp.saturating_add(self.validation.leeway),
            credential: Credential {
                user: identity.user_id.clone(),
                jti: claims.jti,
                iat: claims.iat,
            },
        };
        Ok((identity, terms))
    }

    /// Mints a token for `user` valid for `ttl` (the `chorus token` command and dev mode).
    pub fn mint(
        &self,
        user: &str,
        name: &str,
        grants: Grants,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, String> {
        let encoding = self
            .encoding
            .as_ref()
            .ok_or("minting RS256/ES256 tokens needs `auth.private_key_file`".to_string())?;
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            sub: user.into(),
            name: Some(name.into()),
            exp: iat + ttl.as_secs().max(1),
            iat: Some(iat),
            jti: Some(new_jti()),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(AudienceClaim::One),
            contacts: Vec::new(),
            grants,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, encoding)
            .map_err(|e| e.to_string())
    }
}

/// How long a verified token is accepted, and what a revocation is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenTerms {
    /// Unix second until which the token is accepted: its `exp` plus `auth.leeway`.
    pub until: u64,
    pub credential: Credential,
}

/// A fresh `jti` for a minted token: 128 random bits in hex.
fn new_jti() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a token may come from on an HTTP request: `Authorization: Bearer`, then the
/// `access_token` query parameter. (Socket.IO's `auth.token` is read by that transport.)
pub fn token_from_request(headers: &axum::http::HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| {
            t.strip_prefix("Bearer ")
                .or_else(|| t.strip_prefix("bearer "))
        });
    if let Some(token) = bearer {
        return Some(token.trim().to_owned());
    }
    query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "access_token").then(|| percent_decode(v))
        })
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::HumanDuration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs256() -> AuthConfig {
        AuthConfig {
            secret: SECRET.into(),
            ..AuthConfig::default()
        }
    }

    fn token(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn accepts_a_good_token_with_defaults_for_missing_grants() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        let t = token(
            serde_json::json!({"sub": "alice", "name": "Alice", "exp": now() + 60, "admin": true}),
            SECRET,
            Algorithm::HS256,
        );
        let id = auth.verify(&t).unwrap();
        assert_eq!(id.user_id.as_str(), "alice");
        assert_eq!(id.name, "Alice");
        assert!(id.grants.admin && id.grants.can_chat && id.grants.room.is_none());
        assert!(
            id.grants.can_publish_data,
            "canPublishData defaults to true"
        );
    }

    #[test]
    fn can_publish_data_is_read_from_the_token() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        let t = token(
            serde_json::json!({"sub": "eve", "exp": now() + 60, "canPublishData": false}),
            SECRET,
            Algorithm::HS256,
        );
        let grants = auth.verify(&t).unwrap().grants;
        assert!(!grants.can_publish_data);
        assert!(grants.can_publish && grants.can_subscribe);
    }

    #[test]
    fn refuses_each_bad_token_with_its_reason() {
        let auth = Authenticator::new(
            &AuthConfig {
                issuer: Some("app".into()),
                audience: Some("chorus".into()),
                leeway: HumanDuration::secs(5),
                ..hs256()
            },
            None,
        )
        .unwrap();
        let good =
            serde_json::json!({"sub": "a", "exp": now() + 60, "iss": "app", "aud": "chorus"});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let without = |claims: &serde_json::Value, k: &str| {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        let no_exp = without(&good, "exp");
        let cases = [
            (token(good.clone(), SECRET, Algorithm::HS256), None),
            (
                token(with("exp", (now() - 30).into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenExpired),
            ),
            (
                token(no_exp, SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenInvalid),
            ),
            (
                token(
                    good.clone(),
                    "another-secret-another-secret-xx",
                    Algorithm::HS256,
                ),
                Some(ErrorCode::TokenBadSignature),
            ),
            (
                token(good.clone(), SECRET, Algorithm::HS384),
                Some(ErrorCode::TokenInvalid),
            ),
            (
                token(with("iss", "evil".into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenBadIssuer),
            ),
            (
                token(with("aud", "other".into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenBadAudience),
            ),
            // RFC 7519 §4.1.3: an array holding the configured audience is valid.
            (
                token(
                    with("aud", serde_json::json!(["other", "chorus"])),
                    SECRET,
                    Algorithm::HS256,
                ),
                None,
            ),
            (
                token(
                    with("aud", serde_json::json!(["other", "another"])),
                    SECRET,
                    Algorithm::HS256,
                ),
                Some(ErrorCode::TokenBadAudience),
            ),
            (
                token(with("aud", serde_json::json!([])), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenBadAudience),
            ),
            (
                token(with("aud", 7.into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenInvalid),
            ),
            // Configured claims are required: leaving them out is no way around the check.
            (
                token(without(&good, "iss"), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenBadIssuer),
            ),
            (
                token(without(&good, "aud"), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenBadAudience),
            ),
            (
                token(
                    with("iss", serde_json::Value::Null),
                    SECRET,
                    Algorithm::HS256,
                ),
                Some(ErrorCode::TokenBadIssuer),
            ),
            (
                token(with("nbf", (now() + 600).into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenNotYetValid),
            ),
            (
                token(with("sub", "".into()), SECRET, Algorithm::HS256),
                Some(ErrorCode::TokenInvalid),
            ),
            ("garbage".into(), Some(ErrorCode::TokenInvalid)),
            ("".into(), Some(ErrorCode::TokenMissing)),
        ];
        for (t, expected) in cases {
            match (auth.verify(&t), expected) {
                (Ok(_), None) => {}
                (Err(e), Some(code)) => assert_eq!(e.code, code, "{t}: {e}"),
                (r, e) => panic!("{t}: got {r:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn issuer_and_audience_are_optional_when_not_configured() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        for claims in [
            serde_json::json!({"sub": "a", "exp": now() + 60}),
            serde_json::json!({"sub": "a", "exp": now() + 60, "iss": "any", "aud": ["x", "y"]}),
        ] {
            assert!(
                auth.verify(&token(claims, SECRET, Algorithm::HS256))
                    .is_ok()
            );
        }
    }

    #[test]
    fn reads_the_contacts_claim() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        let t = token(
            serde_json::json!({"sub": "a", "exp": now() + 60, "contacts": ["bob", "carol"]}),
            SECRET,
            Algorithm::HS256,
        );
        let id = auth.verify(&t).unwrap();
        assert_eq!(id.contacts.len(), 2);
        assert!(id.contacts.contains(&"bob".into()) && !id.contacts.contains(&"a".into()));
        let none = token(
            serde_json::json!({"sub": "a", "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(auth.verify(&none).unwrap().contacts.is_empty());
        for bad in [
            serde_json::json!("bob"),
            serde_json::json!([""]),
            serde_json::json!([1]),
            serde_json::json!(["x".repeat(129)]),
        ] {
            let t = token(
                serde_json::json!({"sub": "a", "exp": now() + 60, "contacts": bad}),
                SECRET,
                Algorithm::HS256,
            );
            assert_eq!(
                auth.verify(&t).unwrap_err().code,
                ErrorCode::TokenInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_alg_none() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(r#"{{"sub":"a","exp":{}}}"#, now() + 60))
        );
        assert_eq!(auth.verify(&t).unwrap_err().code, ErrorCode::TokenInvalid);
    }

    #[test]
    fn minted_tokens_verify() {
        let auth = Authenticator::new(&hs256(), None).unwrap();
        let grants = Grants {
            room: Some("standup".into()),
            ..Grants::default()
        };
        let t = auth
            .mint(
                "bob",
                "Bob",
                grants.clone(),
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let id = auth.verify(&t).unwrap();
        assert_eq!((id.user_id.as_str(), id.name.as_str()), ("bob", "Bob"));
        assert_eq!(id.grants, grants);
    }

    #[test]
    fn reads_tokens_from_header_or_query() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(
            token_from_request(&h, Some("a=1&access_token=x%2Ey")),
            Some("x.y".into())
        );
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(
            token_from_request(&h, Some("access_token=zzz")),
            Some("abc".into())
        );
        assert_eq!(
            token_from_request(&axum::http::HeaderMap::new(), None),
            None
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
