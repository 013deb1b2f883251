//! Provably-fair rolls (commit / reveal).
//!
//! * The server seed is 32 random bytes written as 64 lowercase hex characters.
//! * Commitment = lowercase hex SHA-256 of the server seed's ASCII text, published before betting.
//! * Client seed mix = lowercase hex SHA-256 of the round's distinct client seeds, sorted
//!   bytewise and joined with "\n" (no seeds: SHA-256 of the empty string).
//! * Digest = HMAC-SHA256(key = server seed ASCII, message = "<clientSeedMix>:<nonce>").
//! * Roll: read the digest as eight big-endian u32 words; the first word below 4,294,960,000
//!   (the largest multiple of 10,000 under 2^32) gives roll = word mod 10,000, so every roll is
//!   equally likely. If all eight are rejected (odds ~1e-45), use the digest of
//!   "<clientSeedMix>:<nonce>:<n>" for n = 1, 2, … the same way.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::rules::ROLL_OUTCOMES;

/// Largest multiple of 10,000 not above 2^32: words at or above it are rejected.
const ACCEPT_BELOW: u64 = (1u64 << 32) / ROLL_OUTCOMES as u64 * ROLL_OUTCOMES as u64;

/// A roll in hundredths, 0..=9999 (0.00–99.99).
pub type Roll = u32;

/// Lowercase hex SHA-256 of the given bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A fresh random server seed (64 hex characters).
pub fn new_server_seed() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The commitment published before a round opens.
pub fn commitment(server_seed: &str) -> String {
    sha256_hex(server_seed.as_bytes())
}

/// The combined client seed of a round (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSeedMix {
    /// Distinct seeds, sorted bytewise.
    pub seeds: Vec<String>,
    /// Lowercase hex SHA-256 of `seeds.join("\n")`.
    pub mix: String,
}

impl ClientSeedMix {
    pub fn new<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let mix = sha256_hex(seeds.join("\n").as_bytes());
        Self { seeds, mix }
    }
}

fn hmac_digest(server_seed: &str, message: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it panic-free.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(server_seed.as_bytes()) else {
        return [0u8; 32];
    };
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The roll for a server seed, client seed mix and round nonce.
pub fn roll(server_seed: &str, client_seed_mix: &str, nonce: u64) -> Roll {
    let base = format!("{client_seed_mix}:{nonce}");
    let mut attempt = 0u64;
    loop {
        let message = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}:{attempt}")
        };
        if let Some(r) = roll_from_digest(&hmac_digest(server_seed, &message)) {
            return r;
        }
        attempt += 1;
    }
}

/// Rejection sampling over one digest; `None` when every word is in the biased tail.
pub fn roll_from_digest(digest: &[u8; 32]) -> Option<Roll> {
    digest.chunks_exact(4).find_map(|w| {
        let word = u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        (word < ACCEPT_BELOW).then(|| (word % u64::from(ROLL_OUTCOMES)) as Roll)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently (Python hashlib/hmac) from the rule in the module docs.
    const SEED: &str = "3f9d2c1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0f9e8d7c6";

    #[test]
    fn commitment_vector() {
        assert_eq!(commitment(SEED), COMMITMENT);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn client_seed_mix_sorts_and_dedups() {
        let a = ClientSeedMix::new(["bob", "alice", "bob"]);
        let b = ClientSeedMix::new(["alice", "bob"]);
        assert_eq!(a, b);
        assert_eq!(a.seeds, ["alice", "bob"]);
        assert_eq!(a.mix, sha256_hex(b"alice\nbob"));
        assert_eq!(
            ClientSeedMix::new(Vec::<String>::new()).mix,
            sha256_hex(b"")
        );
    }

    #[test]
    fn roll_vectors() {
        for (mix, nonce, want) in ROLL_VECTORS {
            assert_eq!(roll(SEED, mix, *nonce), *want, "{mix}:{nonce}");
        }
    }

    #[test]
    fn rejection_sampling_skips_the_biased_tail() {
        let mut d = [0xffu8; 32];
        assert_eq!(roll_from_digest(&d), None);
        // Second word = 4,294,959,999 (last accepted) → 9999.
        d[4..8].copy_from_slice(&(4_294_959_999u32).to_be_bytes());
        assert_eq!(roll_from_digest(&d), Some(9999));
        d[4..8].copy_from_slice(&(4_294_960_000u32).to_be_bytes());
        assert_eq!(roll_from_digest(&d), None);
        d[28..32].copy_from_slice(&12_345u32.to_be_bytes());
        assert_eq!(roll_from_digest(&d), Some(2345));
    }

    #[test]
    fn rolls_are_roughly_uniform() {
        let mut buckets = [0u32; 10];
        for nonce in 0..20_000 {
            buckets[(roll(SEED, "mix", nonce) / 1000) as usize] += 1;
        }
        for b in buckets {
            assert!((1_800..2_200).contains(&b), "{buckets:?}");
        }
    }

    const COMMITMENT: &str = "ea9b44f349cb2479c78e44629fe5e62b8542521b1089a1f65d088ca5b4243719";

    const ROLL_VECTORS: &[(&str, u64, Roll)] = &[
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            1,
            2982,
        ),
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            2,
            8216,
        ),
        (
            "1cb15457d1ddab60e205c0fe3ca2f65d1e27e1b06a5efa0beb2921834771a669",
            1,
            1318,
        ),
        (
            "1cb15457d1ddab60e205c0fe3ca2f65d1e27e1b06a5efa0beb2921834771a669",
            42,
            4616,
        ),
        ("mix", 0, 3069),
        (
            "1cb15457d1ddab60e205c0fe3ca2f65d1e27e1b06a5efa0beb2921834771a669",
            u64::MAX,
            1425,
        ),
    ];
}
