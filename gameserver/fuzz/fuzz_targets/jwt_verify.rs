//! JWT verification. Three shapes of input, chosen by the first byte:
//! - any text as a token: never a panic, and never accepted (it cannot carry a valid HS256
//!   signature, so an `Ok` would be a forgery — `alg: none`, a key confusion, a parser gap);
//! - any bytes as the claims of a correctly signed HS256 token: accepted only with a `userId`
//!   that keeps the documented bounds and an `iat` within the five-minute window;
//! - any bytes as header and claims, correctly signed with the key: accepted only when the
//!   header says HS256 and names no unknown key.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gameserver::auth::{Authenticator, MAX_CLOCK_SKEW_SECS, MAX_TOKEN_AGE_SECS, MAX_USER_ID_LEN};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdef-0123456789";
const NOW: u64 = 1_800_000_000;
const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

fn signed(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(SECRET) else {
        return signing_input;
    };
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// The claims an accepted token must carry, read as the JWT rules say: unknown claims are
/// skipped unread (serde_json then checks neither their UTF-8 nor their number range).
#[derive(serde::Deserialize)]
struct Expected {
    #[serde(rename = "userId")]
    user_id: String,
    iat: u64,
    exp: Option<u64>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// What an accepted token's claims must say.
fn check_accepted(claims: &[u8], user: &str) {
    let n = user.chars().count();
    assert!(n > 0 && n <= MAX_USER_ID_LEN && !user.chars().any(char::is_control));
    let claims: Expected = serde_json::from_slice(claims).expect("accepted claims are readable");
    assert_eq!(claims.user_id, user);
    let iat = claims.iat;
    assert!(iat <= NOW + MAX_CLOCK_SKEW_SECS && NOW - MAX_TOKEN_AGE_SECS <= iat);
    if let Some(exp) = claims.exp {
        assert!(exp >= NOW, "expired token accepted (exp {exp})");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(auth) = Authenticator::new(SECRET) else {
        return;
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                assert!(
                    auth.verify(token, NOW).is_err(),
                    "unsigned input accepted: {token:?}"
                );
            }
        }
        1 => {
            if let Ok(user) = auth.verify(&signed(HEADER, rest), NOW) {
                check_accepted(rest, &user);
            }
        }
        _ => {
            let split = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
            let (header, claims) = rest.split_at(split);
            if let Ok(user) = auth.verify(&signed(header, claims), NOW) {
                let header: Header =
                    serde_json::from_slice(header).expect("accepted header is readable");
                assert_eq!(header.alg, "HS256");
                assert!(header.kid.is_none(), "unknown kid accepted");
                check_accepted(claims, &user);
            }
        }
    }
});
