//! The messages the bus carries: bets on their way to an engine, frames on their way to
//! players. Re-exported by the bus module; a leaf of its own so that [`super::history`], which
//! the bus module uses, can name them without naming the bus module back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A bet on its way from a gateway to an engine. The gateway has already checked its shape
/// (integer amount > 0, non-empty idempotency key); the engine applies every game rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BetRequest {
    pub idempotency_key: String,
    pub user_id: String,
    pub game_id: String,
    /// Minor units.
    pub amount: i64,
    /// The client's selection, passed through untouched; the engine validates it.
    pub selection: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_seed: Option<String>,
    /// Gateway that received it (diagnostics only: replies are addressed to the user).
    pub gateway_id: String,
    /// Milliseconds since the Unix epoch when the gateway received it.
    pub received_at_ms: u64,
}

/// A bet handed to an engine, with the bus's handle used to acknowledge it once it has been
/// settled or rejected durably. Unacknowledged bets are redelivered (to this or another engine).
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedBet {
    pub delivery_id: String,
    pub bet: BetRequest,
    /// Handed out before (taken over from an engine that stopped): whoever settled or rejected
    /// it already told the player, so a known outcome is not sent again.
    pub redelivered: bool,
}

/// Who a [`Delivery`] is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "camelCase")]
pub enum Target {
    /// Every member of a room, on every gateway.
    Room(String),
    /// Every connection of one user, on whichever gateway holds it.
    User(String),
    /// Every connection everywhere (system announcements).
    All,
}

/// A frame for players. `frame` is the exact JSON text sent to clients, serialised once by the
/// producer and forwarded byte for byte by every gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub target: Target,
    /// Milliseconds since the Unix epoch when the producer emitted it (delivery latency origin).
    pub emitted_at_ms: u64,
    /// A room-scoped [`Target::Room`] delivery to skip on this connection (e.g. the joiner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_connection: Option<String>,
    pub frame: Arc<str>,
}

/// A player's notice that must reach it once per `key` (see [`super::EngineBus::publish_outcomes`]).
#[derive(Clone, Debug)]
pub struct MarkedNotice {
    pub delivery: Delivery,
    pub key: String,
    pub only_if_unsent: bool,
}
