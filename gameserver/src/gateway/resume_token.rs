//! Resume tokens: an opaque, HMAC-SHA256-signed proof that a connection belonged to a user,
//! valid for a limited time and for one resume. A client presents it after a reconnect (to any
//! gateway sharing the JWT secret) to resume its session without a fresh JWT; the gateway
//! marks its id used on the bus, so a copied token is worth nothing once its owner resumed.
//!
//! Format: `v2.<hex(userId)>.<expiry unix secs>.<hex(16 random bytes: the id)>.<hex(HMAC-SHA256(
//! key, "resume:v2:" + hex(userId) + ":" + expiry + ":" + id))>`. The key is derived from the
//! JWT secret for this purpose only (HMAC-SHA256(secret, [`KEY_LABEL`])), so a resume token can
//! never pass as a JWT signature or the other way round.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a resume token stays valid after it was issued.
pub const RESUME_TOKEN_TTL_SECS: u64 = 15 * 60;
/// Longest token accepted before any parsing (a user id is at most 128 characters).
const MAX_TOKEN_LEN: usize = 1200;
/// What the signing key is derived with.
pub const KEY_LABEL: &[u8] = b"gamefleet resume-token key v2";
/// Bytes of a token's id.
const ID_BYTES: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeTokenError {
    #[error("resume token is malformed")]
    Malformed,
    #[error("resume token signature is invalid")]
    BadSignature,
    #[error("resume token has expired")]
    Expired,
    #[error("resume token was already used")]
    Used,
}

/// A genuine, unexpired token's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeClaim {
    pub user: String,
    /// Unique per token: what single use is recorded under.
    pub id: String,
    /// Unix seconds after which the token is refused (how long its use must be remembered).
    pub expiry: u64,
}

/// Signs and verifies resume tokens. The key never appears in `Debug`.
#[derive(Clone)]
pub struct ResumeTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for ResumeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeTokens { .. }")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac)
}

impl ResumeTokens {
    /// Tokens signed with the key derived from `secret` (the JWT secret).
    pub fn new(secret: &[u8]) -> Self {
        let key = hmac(secret, &[KEY_LABEL])
            .map(|m| m.finalize().into_bytes().to_vec())
            .unwrap_or_default();
        Self { key }
    }

    fn mac(&self, user_hex: &str, expiry: u64, id: &str) -> Option<Hmac<Sha256>> {
        hmac(
            &self.key,
            &[format!("resume:v2:{user_hex}:{expiry}:{id}").as_bytes()],
        )
    }

    /// A token for `user_id`, valid until `now_secs + RESUME_TOKEN_TTL_SECS`, with a fresh id.
    pub fn issue(&self, user_id: &str, now_secs: u64) -> String {
        let mut id = [0u8; ID_BYTES];
        if getrandom::fill(&mut id).is_err() {
            // No randomness: a token that can never verify (the client re-authenticates).
            return String::new();
        }
        self.issue_with_id(user_id, now_secs, &hex::encode(id))
    }

    fn issue_with_id(&self, user_id: &str, now_secs: u64, id: &str) -> String {
        let user_hex = hex::encode(user_id.as_bytes());
        let expiry = now_secs.saturating_add(RESUME_TOKEN_TTL_SECS);
        let sig = self
            .mac(&user_hex, expiry, id)
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        format!("v2.{user_hex}.{expiry}.{id}.{sig}")
    }

    /// The token's claim, if it is genuine and unexpired at `now_secs`. Whether it was used
    /// already is for the caller to check (the record of uses is shared by all gateways).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<ResumeClaim, ResumeTokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ResumeTokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("v2"), Some(user_hex), Some(expiry), Some(id), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ResumeTokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| ResumeTokenError::Malformed)?;
        if id.len() != 2 * ID_BYTES || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResumeTokenError::Malformed);
        }
        let sig = hex::decode(sig).map_err(|_| ResumeTokenError::Malformed)?;
        let mac = self
            .mac(user_hex, expiry, id)
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
        Ok(ResumeClaim {
            user,
            id: id.to_owned(),
            expiry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_rejection() {
        let t = ResumeTokens::new(b"secret");
        let tok = t.issue("alice", 1_000);
        let claim = t.verify(&tok, 1_000).unwrap();
        assert_eq!(claim.user, "alice");
        assert_eq!(claim.expiry, 1_000 + RESUME_TOKEN_TTL_SECS);
        // Every token has its own id.
        assert_ne!(
            t.verify(&t.issue("alice", 1_000), 1_000).unwrap().id,
            claim.id
        );
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
        let parts: Vec<&str> = tok.split('.').collect();
        // A later expiry, or another id, with the original signature.
        let extended = format!("v2.{}.{}.{}.{}", parts[1], 99_999_999, parts[3], parts[4]);
        let renamed = format!(
            "v2.{}.{}.{}.{}",
            parts[1],
            parts[2],
            "0".repeat(32),
            parts[4]
        );
        for bad in [extended, renamed] {
            assert_eq!(t.verify(&bad, 1_000), Err(ResumeTokenError::BadSignature));
        }
        for bad in [
            "",
            "v2",
            "v1.61.5.00",
            "v2.61.x.00000000000000000000000000000000.00",
            "v2.61.5.0000.00",
            "v2.61.5.00000000000000000000000000000000.zz",
            "v2.61.5.00000000000000000000000000000000.00.extra",
        ] {
            assert_eq!(t.verify(bad, 0), Err(ResumeTokenError::Malformed), "{bad}");
        }
        assert_eq!(
            t.verify(&"a".repeat(5000), 0),
            Err(ResumeTokenError::Malformed)
        );
    }

    #[test]
    fn the_key_is_derived_not_the_jwt_secret() {
        // A token signed with the raw secret (what a JWT-key holder could forge) is refused.
        let secret = b"secret";
        let t = ResumeTokens::new(secret);
        let raw = ResumeTokens {
            key: secret.to_vec(),
        };
        let forged = raw.issue_with_id("alice", 1_000, &"ab".repeat(16));
        assert_eq!(
            t.verify(&forged, 1_000),
            Err(ResumeTokenError::BadSignature)
        );
    }
}
