//! Resume tokens: an opaque, HMAC-SHA256-signed proof that a connection belonged to a user,
//! valid for a limited time. A client presents it after a reconnect (to any gateway sharing the
//! JWT secret) to resume its session without a fresh JWT.
//!
//! Format: `v1.<hex(userId)>.<expiry unix secs>.<hex(HMAC-SHA256(secret, "resume:v1:" + hex(userId) + ":" + expiry))>`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a resume token stays valid after it was issued.
pub const RESUME_TOKEN_TTL_SECS: u64 = 15 * 60;
/// Longest token accepted before any parsing (a user id is at most 128 characters).
const MAX_TOKEN_LEN: usize = 1200;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeTokenError {
    #[error("resume token is malformed")]
    Malformed,
    #[error("resume token signature is invalid")]
    BadSignature,
    #[error("resume token has expired")]
    Expired,
}

/// Signs and verifies resume tokens with the JWT secret. The key never appears in `Debug`.
#[derive(Clone)]
pub struct ResumeTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for ResumeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeTokens { .. }")
    }
}

impl ResumeTokens {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, user_hex: &str, expiry: u64) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(format!("resume:v1:{user_hex}:{expiry}").as_bytes());
        Some(mac)
    }

    /// A token for `user_id`, valid until `now_secs + RESUME_TOKEN_TTL_SECS`.
    pub fn issue(&self, user_id: &str, now_secs: u64) -> String {
        let user_hex = hex::encode(user_id.as_bytes());
        let expiry = now_secs.saturating_add(RESUME_TOKEN_TTL_SECS);
        let sig = self
            .mac(&user_hex, expiry)
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        format!("v1.{user_hex}.{expiry}.{sig}")
    }

    /// The user the token was issued to, if it is genuine and unexpired at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<String, ResumeTokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ResumeTokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(user_hex), Some(expiry), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ResumeTokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| ResumeTokenError::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| ResumeTokenError::Malformed)?;
        let mac = self
            .mac(user_hex, expiry)
            .ok_or(ResumeTokenError::BadSignature)?;
        // Constant-time comparison.
        mac.verify_slice(&sig)
            .map_err(|_| ResumeTokenError::BadSignature)?;
        if expiry <= now_secs {
            return Err(ResumeTokenError::Expired);
        }
        let user = hex::decode(user_hex).map_err(|_| ResumeTokenError::Malformed)?;
        let user = String::from_utf8(user).map_err(|_| ResumeTokenError::Malformed)?;
        if user.is_empty() {
            return Err(ResumeTokenError::Malformed);
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_rejection() {
        let t = ResumeTokens::new(b"secret");
        let tok = t.issue("alice", 1_000);
        assert_eq!(t.verify(&tok, 1_000).unwrap(), "alice");
        assert_eq!(
            t.verify(&tok, 1_000 + RESUME_TOKEN_TTL_SECS),
            Err(ResumeTokenError::Expired)
        );
        let other = ResumeTokens::new(b"other secret");
        assert_eq!(
            other.verify(&tok, 1_000),
            Err(ResumeTokenError::BadSignature)
        );
        // Another user's name with alice's signature.
        let forged = tok.replacen(&hex::encode("alice"), &hex::encode("bob"), 1);
        assert_eq!(
            t.verify(&forged, 1_000),
            Err(ResumeTokenError::BadSignature)
        );
        // A later expiry with the original signature.
        let parts: Vec<&str> = tok.split('.').collect();
        let extended = format!("v1.{}.{}.{}", parts[1], 99_999_999, parts[3]);
        assert_eq!(
            t.verify(&extended, 1_000),
            Err(ResumeTokenError::BadSignature)
        );
        for bad in [
            "",
            "v1",
            "v2.61.5.00",
            "v1.61.x.00",
            "v1.61.5.zz",
            "v1.61.5.00.extra",
        ] {
            assert_eq!(t.verify(bad, 0), Err(ResumeTokenError::Malformed), "{bad}");
        }
        assert_eq!(
            t.verify(&"a".repeat(5000), 0),
            Err(ResumeTokenError::Malformed)
        );
    }
}
