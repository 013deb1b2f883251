//! Player authentication: HS256 JWTs carrying a `userId` claim, at most five minutes old.
//! Every other algorithm (including `none`) is refused by the algorithm allow-list.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::gateway::resume_token::ResumeTokens;

/// Tokens are only used to open a session, so they are short-lived.
pub const MAX_TOKEN_AGE_SECS: u64 = 300;
/// Tolerated clock skew for an `iat` slightly in the future.
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;
/// Longest accepted `userId` (characters).
pub const MAX_USER_ID_LEN: usize = 128;

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
    #[error("JWT secret must not be empty")]
    EmptySecret,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: String,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

/// Verifies player tokens. The secret is kept only inside the keys and is never printed.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    resume: ResumeTokens,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // `iat` age and `exp` are checked by `check_times` (exp only when present).
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation,
            resume: ResumeTokens::new(secret),
        })
    }

    /// Resume tokens signed with the same secret (see [`ResumeTokens`]).
    pub fn resume_tokens(&self) -> &ResumeTokens {
        &self.resume
    }

    /// The user the token names, if it is valid at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<String, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Invalid);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
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
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    check_user_id(user_id)?;
    let claims = Claims {
        user_id: user_id.to_owned(),
        iat: now_secs,
        exp: Some(now_secs.saturating_add(ttl_secs)),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
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
    fn empty_secrets_are_refused() {
        assert_eq!(Authenticator::new(b"").err(), Some(AuthError::EmptySecret));
        assert_eq!(mint_token(b"", "a", NOW, 1), Err(AuthError::EmptySecret));
        assert!(!format!("{:?}", Authenticator::new(SECRET).unwrap()).contains("test-secret"));
    }
}
