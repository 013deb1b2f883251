//! Player authentication: HS256 JWTs carrying a `userId` claim, at most five minutes old.
//! Every other algorithm (including `none`) is refused by the algorithm allow-list.
//!
//! Keys: the primary secret verifies tokens without a `kid` header; named keys (`kid` →
//! secret) verify the tokens that name them, so a new key can be added, issued with, and the
//! old one retired without a moment when valid tokens are refused. When an audience or an
//! issuer is configured, tokens must carry it.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::gateway::resume_token::ResumeTokens;

/// Tokens are only used to open a session, so they are short-lived.
pub const MAX_TOKEN_AGE_SECS: u64 = 300;
/// Tolerated clock skew for an `iat` slightly in the future.
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;
/// Longest accepted `userId` (characters).
pub const MAX_USER_ID_LEN: usize = 128;
/// Shortest secret a gateway starts with (HS256 wants at least its 256-bit output).
pub const MIN_SECRET_BYTES: usize = 32;
/// The placeholders shipped in `examples/secrets.yaml`: known to everyone, so never a secret.
pub const EXAMPLE_SECRETS: [&str; 2] = [
    "change-me-to-a-long-random-string",
    "change-me-to-another-long-random-string",
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token signature, algorithm or format is invalid")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token was issued more than five minutes ago")]
    TooOld,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token has no usable userId claim")]
    BadUserId,
    #[error("token names a key (kid) this server does not have")]
    UnknownKey,
    #[error("token is not for this audience (aud)")]
    WrongAudience,
    #[error("token is not from the configured issuer (iss)")]
    WrongIssuer,
    #[error("JWT secret must not be empty")]
    EmptySecret,
    #[error("{0}")]
    WeakSecret(String),
}

/// Refuses a secret under [`MIN_SECRET_BYTES`] or equal to a shipped placeholder; `name` says
/// which setting it came from.
pub fn check_secret(name: &str, secret: &[u8]) -> Result<(), AuthError> {
    if EXAMPLE_SECRETS.iter().any(|e| e.as_bytes() == secret) {
        return Err(AuthError::WeakSecret(format!(
            "{name} is the example placeholder from examples/secrets.yaml: generate one \
             (e.g. `openssl rand -hex 32`), or pass --allow-insecure-secret for development"
        )));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::WeakSecret(format!(
            "{name} is {} bytes; at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand \
             -hex 32`), or pass --allow-insecure-secret for development",
            secret.len()
        )));
    }
    Ok(())
}

/// What a gateway verifies tokens with.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Verifies tokens without a `kid`; resume tokens are signed with a key derived from it.
    pub secret: Vec<u8>,
    /// Named keys: a token with `kid` is verified with that key only.
    pub keys: Vec<(String, Vec<u8>)>,
    /// Required `aud` claim (any of the token's audiences), if set.
    pub audience: Option<String>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
}

/// Key ids and claims only: secrets never reach a log.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("AuthConfig")
            .field("kids", &kids)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Every configured secret with the setting it came from, for [`check_secret`].
    pub fn secrets(&self) -> impl Iterator<Item = (String, &[u8])> {
        std::iter::once(("the JWT secret".to_owned(), self.secret.as_slice())).chain(
            self.keys
                .iter()
                .map(|(kid, k)| (format!("JWT key {kid:?}"), k.as_slice())),
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: String,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Verifies player tokens. The secrets are kept only inside the keys and are never printed.
#[derive(Clone)]
pub struct Authenticator {
    primary: DecodingKey,
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    resume: ResumeTokens,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// One secret, no `kid`, no audience or issuer.
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        Self::with_config(&AuthConfig {
            secret: secret.to_vec(),
            ..AuthConfig::default()
        })
    }

    pub fn with_config(cfg: &AuthConfig) -> Result<Self, AuthError> {
        if cfg.secret.is_empty() || cfg.keys.iter().any(|(_, k)| k.is_empty()) {
            return Err(AuthError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // `iat` age and `exp` are checked by `check_times` (exp only when present).
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        if let Some(aud) = &cfg.audience {
            validation.set_audience(&[aud]);
            validation.validate_aud = true;
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        Ok(Self {
            primary: DecodingKey::from_secret(&cfg.secret),
            keys: cfg
                .keys
                .iter()
                .map(|(kid, k)| (kid.clone(), DecodingKey::from_secret(k)))
                .collect(),
            validation,
            resume: ResumeTokens::new(&cfg.secret),
        })
    }

    /// Resume tokens, signed with a key derived from the primary secret (see [`ResumeTokens`]).
    pub fn resume_tokens(&self) -> &ResumeTokens {
        &self.resume
    }

    /// The user the token names, if it is valid at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<String, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match &header.kid {
            Some(kid) => self.keys.get(kid).ok_or(AuthError::UnknownKey)?,
            None => &self.primary,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidAudience => AuthError::WrongAudience,
                    ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
                    ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
                    _ => AuthError::Invalid,
                }
            })?;
        let claims = data.claims;
        check_times(claims.iat, claims.exp, now_secs)?;
        check_user_id(&claims.user_id)?;
        Ok(claims.user_id)
    }
}

/// Token age rule: issued at most [`MAX_TOKEN_AGE_SECS`] ago (and not meaningfully in the
/// future), and not past `exp` when it has one.
pub fn check_times(iat: u64, exp: Option<u64>, now: u64) -> Result<(), AuthError> {
    if iat > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(AuthError::IssuedInFuture);
    }
    if now.saturating_sub(iat) > MAX_TOKEN_AGE_SECS {
        return Err(AuthError::TooOld);
    }
    match exp {
        Some(exp) if exp <= now => Err(AuthError::Expired),
        _ => Ok(()),
    }
}

fn check_user_id(user_id: &str) -> Result<(), AuthError> {
    let len = user_id.chars().count();
    if len == 0 || len > MAX_USER_ID_LEN || user_id.chars().any(char::is_control) {
        return Err(AuthError::BadUserId);
    }
    Ok(())
}

/// Mint an HS256 token for `user_id`, issued at `now_secs`, expiring after `ttl_secs`
/// (the gateway accepts it for at most five minutes regardless).
pub fn mint_token(
    secret: &[u8],
    user_id: &str,
    now_secs: u64,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    mint_token_with(secret, &Mint::default(), user_id, now_secs, ttl_secs)
}

/// The optional parts of a minted token.
#[derive(Clone, Debug, Default)]
pub struct Mint {
    /// `kid` header: which named key signed it.
    pub kid: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// [`mint_token`] with a `kid`, an audience and an issuer.
pub fn mint_token_with(
    secret: &[u8],
    mint: &Mint,
    user_id: &str,
    now_secs: u64,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    check_user_id(user_id)?;
    let claims = Claims {
        user_id: user_id.to_owned(),
        iat: now_secs,
        exp: Some(now_secs.saturating_add(ttl_secs)),
        aud: mint.audience.clone(),
        iss: mint.issuer.clone(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = mint.kid.clone();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
        .map_err(|_| AuthError::Invalid)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    crate::clock::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_700_000_000;

    fn sign(alg: Algorithm, claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn time_rules() {
        let cases = [
            (NOW, None, Ok(())),
            (NOW - 300, None, Ok(())),
            (NOW - 301, None, Err(AuthError::TooOld)),
            (NOW + 30, None, Ok(())),
            (NOW + 31, None, Err(AuthError::IssuedInFuture)),
            (NOW, Some(NOW + 1), Ok(())),
            (NOW - 10, Some(NOW), Err(AuthError::Expired)),
            (NOW - 10, Some(NOW - 1), Err(AuthError::Expired)),
            (0, None, Err(AuthError::TooOld)),
        ];
        for (iat, exp, want) in cases {
            assert_eq!(check_times(iat, exp, NOW), want, "iat={iat} exp={exp:?}");
        }
    }

    #[test]
    fn accepts_a_fresh_hs256_token() {
        let auth = Authenticator::new(SECRET).unwrap();
        let token = sign(
            Algorithm::HS256,
            json!({"userId":"alice","iat":NOW}),
            SECRET,
        );
        assert_eq!(auth.verify(&token, NOW + 10).unwrap(), "alice");
        let minted = mint_token(SECRET, "bob", NOW, 60).unwrap();
        assert_eq!(auth.verify(&minted, NOW).unwrap(), "bob");
    }

    #[test]
    fn rejects_bad_tokens() {
        let auth = Authenticator::new(SECRET).unwrap();
        let none_token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"userId":"alice","iat":{NOW}}}"#))
        );
        let cases = [
            ("empty", String::new(), AuthError::Invalid),
            ("garbage", "a.b.c".to_string(), AuthError::Invalid),
            ("alg none", none_token, AuthError::Invalid),
            (
                "HS384",
                sign(
                    Algorithm::HS384,
                    json!({"userId":"alice","iat":NOW}),
                    SECRET,
                ),
                AuthError::Invalid,
            ),
            (
                "HS512",
                sign(
                    Algorithm::HS512,
                    json!({"userId":"alice","iat":NOW}),
                    SECRET,
                ),
                AuthError::Invalid,
            ),
            (
                "wrong secret",
                sign(
                    Algorithm::HS256,
                    json!({"userId":"alice","iat":NOW}),
                    b"other",
                ),
                AuthError::Invalid,
            ),
            (
                "no userId",
                sign(Algorithm::HS256, json!({"sub":"alice","iat":NOW}), SECRET),
                AuthError::Invalid,
            ),
            (
                "numeric userId",
                sign(Algorithm::HS256, json!({"userId":7,"iat":NOW}), SECRET),
                AuthError::Invalid,
            ),
            (
                "empty userId",
                sign(Algorithm::HS256, json!({"userId":"","iat":NOW}), SECRET),
                AuthError::BadUserId,
            ),
            (
                "no iat",
                sign(
                    Algorithm::HS256,
                    json!({"userId":"alice","exp":NOW+60}),
                    SECRET,
                ),
                AuthError::Invalid,
            ),
            (
                "too old",
                sign(
                    Algorithm::HS256,
                    json!({"userId":"alice","iat":NOW-301}),
                    SECRET,
                ),
                AuthError::TooOld,
            ),
            (
                "expired",
                sign(
                    Algorithm::HS256,
                    json!({"userId":"alice","iat":NOW-20,"exp":NOW-1}),
                    SECRET,
                ),
                AuthError::Expired,
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(auth.verify(&token, NOW), Err(want), "{name}");
        }
    }

    #[test]
    fn named_keys_rotate_without_refusing_valid_tokens() {
        let cfg = AuthConfig {
            secret: SECRET.to_vec(),
            keys: vec![
                ("k1".into(), b"old-key".to_vec()),
                ("k2".into(), b"new-key".to_vec()),
            ],
            ..AuthConfig::default()
        };
        let auth = Authenticator::with_config(&cfg).unwrap();
        let with = |kid: &str, key: &[u8]| {
            let m = Mint {
                kid: Some(kid.into()),
                ..Mint::default()
            };
            mint_token_with(key, &m, "alice", NOW, 60).unwrap()
        };
        assert_eq!(auth.verify(&with("k1", b"old-key"), NOW).unwrap(), "alice");
        assert_eq!(auth.verify(&with("k2", b"new-key"), NOW).unwrap(), "alice");
        // A kid selects its key only: another configured key does not verify it.
        assert_eq!(
            auth.verify(&with("k1", b"new-key"), NOW),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.verify(&with("k3", b"new-key"), NOW),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            auth.verify(&mint_token(SECRET, "bob", NOW, 60).unwrap(), NOW)
                .unwrap(),
            "bob"
        );
    }

    #[test]
    fn audience_and_issuer_are_required_when_configured() {
        let cfg = AuthConfig {
            secret: SECRET.to_vec(),
            audience: Some("dice".into()),
            issuer: Some("https://login.example".into()),
            ..AuthConfig::default()
        };
        let auth = Authenticator::with_config(&cfg).unwrap();
        let mint = |aud: Option<&str>, iss: Option<&str>| {
            let m = Mint {
                audience: aud.map(Into::into),
                issuer: iss.map(Into::into),
                ..Mint::default()
            };
            mint_token_with(SECRET, &m, "alice", NOW, 60).unwrap()
        };
        let iss = Some("https://login.example");
        assert_eq!(auth.verify(&mint(Some("dice"), iss), NOW).unwrap(), "alice");
        assert_eq!(
            auth.verify(&mint(Some("poker"), iss), NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            auth.verify(&mint(None, iss), NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            auth.verify(&mint(Some("dice"), Some("evil")), NOW),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            auth.verify(&mint(Some("dice"), None), NOW),
            Err(AuthError::WrongIssuer)
        );
        // Unconfigured, both are ignored.
        let plain = Authenticator::new(SECRET).unwrap();
        assert_eq!(
            plain.verify(&mint(Some("poker"), None), NOW).unwrap(),
            "alice"
        );
    }

    #[test]
    fn weak_and_example_secrets_are_named() {
        assert!(check_secret("s", &[7u8; 32]).is_ok());
        let short = check_secret("JWT_SECRET", b"short")
            .unwrap_err()
            .to_string();
        assert!(
            short.contains("JWT_SECRET is 5 bytes; at least 32"),
            "{short}"
        );
        for e in EXAMPLE_SECRETS {
            let msg = check_secret("JWT_SECRET", e.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(msg.contains("example placeholder"), "{msg}");
        }
    }

    #[test]
    fn empty_secrets_are_refused() {
        assert_eq!(Authenticator::new(b"").err(), Some(AuthError::EmptySecret));
        assert_eq!(mint_token(b"", "a", NOW, 1), Err(AuthError::EmptySecret));
        assert!(!format!("{:?}", Authenticator::new(SECRET).unwrap()).contains("test-secret"));
    }
}
