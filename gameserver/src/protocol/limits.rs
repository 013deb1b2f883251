//! The size and shape limits on client-supplied fields. Re-exported by the protocol module; a
//! leaf of its own so that the decoder (`decode.rs`) can apply them without naming the protocol
//! module back.

/// Longest accepted `gameId` (characters).
pub const MAX_GAME_ID_LEN: usize = 64;
/// Longest accepted `idempotencyKey` (characters).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest accepted `clientSeed` (characters).
pub const MAX_CLIENT_SEED_LEN: usize = 128;

/// The `clientSeed` rule, shared by the gateway (which answers at once) and the engine (which
/// re-checks what reaches it from the bus): 1–[`MAX_CLIENT_SEED_LEN`] characters, no control
/// characters (the seed is published with the round and shown by clients).
pub fn check_client_seed(seed: &str) -> Result<(), &'static str> {
    let n = seed.chars().count();
    if n == 0 {
        Err("clientSeed must not be empty (leave it out instead)")
    } else if n > MAX_CLIENT_SEED_LEN {
        Err("clientSeed is longer than 128 characters")
    } else if seed.chars().any(char::is_control) {
        Err("clientSeed must not contain control characters")
    } else {
        Ok(())
    }
}
/// Largest accepted `selection`, as compact JSON (bytes). A dice selection is ~35 bytes; the
/// bound keeps what a bet stores (its record, the bet queue, the audit memo) small.
pub const MAX_SELECTION_BYTES: usize = 256;
