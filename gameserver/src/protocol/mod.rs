//! The player wire protocol: JSON text frames. [`decode`] turns client text into a
//! [`ClientFrame`] or a precise [`Rejection`]; [`ServerFrame`] is every frame the gateway
//! itself writes. Frames produced by engines travel as ready-made text (see `bus::Delivery`).
//! docs/protocol.md is the contract; keep the two in step.

mod decode;
mod server;

pub use decode::{decode, ClientFrame, PlaceBet, Rejection, Resume};
pub use server::{BetRejectReason, ErrorCode, FrameKind, ServerFrame, StreamResume};

/// Longest accepted `gameId` (characters).
pub const MAX_GAME_ID_LEN: usize = 64;
/// Longest accepted `idempotencyKey` (characters).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest accepted `clientSeed` (characters).
pub const MAX_CLIENT_SEED_LEN: usize = 128;
/// Largest accepted `selection`, as compact JSON (bytes). A dice selection is ~35 bytes; the
/// bound keeps what a bet stores (its record, the bet queue, the audit memo) small.
pub const MAX_SELECTION_BYTES: usize = 256;
