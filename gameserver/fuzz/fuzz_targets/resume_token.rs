//! Resume-token parsing. Three shapes of input, chosen by the first byte:
//! - any text as a token: never a panic, never accepted (it cannot carry a valid signature);
//! - any user, expiry and id fields signed as the documented format says: accepted only when
//!   every field is well formed and unexpired, and then the claim is exactly those fields;
//! - any user id issued a token: it verifies to that user until it expires, and not after.
#![no_main]

use gameserver::gateway::resume_token::{
    ResumeTokenError, ResumeTokens, KEY_LABEL, RESUME_TOKEN_TTL_SECS,
};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdef-0123456789";
const NOW: u64 = 1_800_000_000;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// A token over these fields, signed as the module documents: its own oracle of the format.
fn signed(user_hex: &str, expiry: &str, id: &str) -> String {
    let key = hmac(SECRET, KEY_LABEL);
    let sig = hmac(
        &key,
        format!("resume:v2:{user_hex}:{expiry}:{id}").as_bytes(),
    );
    format!("v2.{user_hex}.{expiry}.{id}.{}", hex::encode(sig))
}

fuzz_target!(|data: &[u8]| {
    let tokens = ResumeTokens::new(SECRET);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => assert!(
            tokens.verify(text, NOW).is_err(),
            "unsigned input accepted: {text:?}"
        ),
        1 => {
            let mut fields = text.splitn(3, '\u{0}');
            let (user_hex, expiry, id) = (
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
            );
            if user_hex.contains('.') || expiry.contains('.') || id.contains('.') {
                return;
            }
            if let Ok(claim) = tokens.verify(&signed(user_hex, expiry, id), NOW) {
                assert_eq!(
                    hex::decode(user_hex).ok(),
                    Some(claim.user.clone().into_bytes())
                );
                assert!(!claim.user.is_empty());
                assert_eq!(expiry.parse::<u64>().ok(), Some(claim.expiry));
                assert!(claim.expiry > NOW, "expired token accepted");
                assert_eq!(claim.id, id);
                assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        _ => {
            let token = tokens.issue(text, NOW);
            let last_second = NOW + RESUME_TOKEN_TTL_SECS - 1;
            match tokens.verify(&token, last_second) {
                Ok(claim) => assert_eq!(claim.user, text),
                // An empty or overlong user id gives a token that is refused, never another user.
                Err(ResumeTokenError::Malformed) => assert!(text.is_empty() || token.len() > 1200),
                Err(e) => panic!("fresh token for {text:?} refused: {e}"),
            }
            let expired = tokens.verify(&token, NOW + RESUME_TOKEN_TTL_SECS);
            assert!(expired.is_err(), "token accepted after its expiry");
        }
    }
});
