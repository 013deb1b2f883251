//! The player wire protocol: JSON text frames. [`decode`] turns client text into a
//! [`ClientFrame`] or a precise [`Rejection`]; [`ServerFrame`] is every frame the gateway
//! itself writes. Frames produced by engines travel as ready-made text (see `bus::Delivery`).
//! docs/protocol.md is the contract; keep the two in step.

mod decode;
mod limits;
mod server;

pub use decode::{decode, ClientFrame, PlaceBet, Rejection, Resume};
pub use limits::{
    check_client_seed, MAX_CLIENT_SEED_LEN, MAX_GAME_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN,
    MAX_SELECTION_BYTES,
};
pub use server::{
    AuthFailReason, BetRejectReason, ErrorCode, FrameKind, RoomPosition, ServerFrame, StreamResume,
};
