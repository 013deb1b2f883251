//! The seam between gateways and engines. Gateways and engines never call each other: gateways
//! submit bets and publish presence changes, engines consume bets and publish deliveries.
//! [`memory::MemoryBus`] joins them in one process (local mode); a Redis bus joins processes.

pub mod history;
pub mod memory;
pub mod redis;
mod types;

use std::time::Duration;

use async_trait::async_trait;

pub use history::{Position, Recovery};
pub use types::{BetRequest, Delivery, MarkedNotice, QueuedBet, Target};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus (e.g. Redis) cannot be reached; callers answer `ENGINE_UNAVAILABLE`.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus protocol error: {0}")]
    Protocol(String),
    /// A fleet-wide bound refused the request; nothing was written.
    #[error("refused: {0}")]
    Refused(Bound),
}

/// The fleet-wide bounds that keep one player from filling the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Bound {
    /// The fleet runs its maximum number of live rooms; this join would open another.
    #[error("the fleet's live-room limit is reached")]
    LiveRooms,
    /// The player's bets per second, counted across every gateway.
    #[error("too many bets per second for this player")]
    BetRate,
    /// The room's queue of bets waiting for an engine is full (engines down or far behind).
    #[error("the room's bet queue is full")]
    Backlog,
}

/// What a gateway needs from the bus.
#[async_trait]
pub trait GatewayBus: Send + Sync + 'static {
    /// Returns once the bet is durably queued for the engines.
    async fn submit_bet(&self, bet: &BetRequest) -> Result<(), BusError>;
    /// Publish a frame (e.g. `player_joined`) to its target on every gateway.
    async fn publish(&self, delivery: Delivery) -> Result<(), BusError>;
    /// Start receiving this room's deliveries on this gateway (called for its first local member).
    async fn subscribe_room(&self, game_id: &str) -> Result<(), BusError>;
    /// Stop receiving this room's deliveries (called when its last local member leaves).
    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError>;
    /// Record that a connection joined a room; returns the room's member count across gateways.
    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError>;
    /// Record that a connection left a room; returns the remaining member count.
    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError>;
    /// Start receiving this user's direct frames on this gateway (its first local connection).
    async fn subscribe_user(&self, user_id: &str) -> Result<(), BusError>;
    /// Stop receiving this user's direct frames (its last local connection is gone).
    async fn unsubscribe_user(&self, user_id: &str) -> Result<(), BusError>;
    /// The latest position of a room's or user's history (`Target::All` has none).
    async fn position(&self, stream: &Target) -> Result<Position, BusError>;
    /// What a room or user stream received after `since` (see [`history::recover`]).
    async fn history(
        &self,
        stream: &Target,
        since: Option<&Position>,
    ) -> Result<Recovery, BusError>;
    /// Waits (at most `timeout`) until every room and user subscribed so far is being received.
    /// Subscribing never fails for a lost connection: what is asked for while it is down is
    /// subscribed as soon as it is back, and a join waits for that here. `Unavailable` when it
    /// is not back in time.
    async fn wait_subscribed(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
    /// Records the first use of a single-use id (a resume token's); `Ok(false)` when any
    /// gateway recorded it before. The record is kept until `expires_at_ms` (Unix ms), when
    /// whatever carries the id is refused anyway.
    async fn use_once(&self, id: &str, expires_at_ms: u64) -> Result<bool, BusError>;
    /// The stream of deliveries for this gateway's subscribed rooms, its users and `All`.
    /// Yields `None` for every call after the first.
    fn take_deliveries(&self) -> Option<tokio::sync::mpsc::Receiver<Delivery>>;
}

/// What an engine needs from the bus.
#[async_trait]
pub trait EngineBus: Send + Sync + 'static {
    /// Up to `max` bets, waiting at most `wait` for the first one.
    async fn next_bets(&self, max: usize, wait: Duration) -> Result<Vec<QueuedBet>, BusError>;
    /// The bet is settled or rejected durably; it will not be redelivered.
    async fn ack_bet(&self, delivery_id: &str) -> Result<(), BusError>;
    /// Acknowledge several bets at once (fewer round trips than one by one).
    async fn ack_bets(&self, delivery_ids: &[String]) -> Result<(), BusError> {
        for id in delivery_ids {
            self.ack_bet(id).await?;
        }
        Ok(())
    }
    /// Send a frame to players.
    async fn publish(&self, delivery: Delivery) -> Result<(), BusError>;
    /// Send players their bet outcomes, each marked with its `key` (the user and idempotency
    /// key). One with `only_if_unsent` is skipped when a notice with its key went out before: an
    /// engine finishing what a dead one started tells each player once, whether or not the dead
    /// one got to it. A bus that cannot tell (one process) skips those.
    async fn publish_outcomes(&self, notices: Vec<MarkedNotice>) -> Result<(), BusError> {
        for n in notices {
            if !n.only_if_unsent {
                self.publish(n.delivery).await?;
            }
        }
        Ok(())
    }
    /// Rooms that have at least one member on some gateway (rounds run only there).
    async fn active_rooms(&self) -> Result<Vec<String>, BusError>;
    /// Rooms this engine stopped owning since the last call without giving them up: another
    /// engine holds the lease, or it was not renewed within its lifetime (Redis unreachable).
    /// Their rounds must stop at once. In-memory only: never waits for Redis.
    fn lost_rooms(&self) -> Vec<String> {
        Vec::new()
    }
    /// Stop owning one room now (another engine took it over in the ledger): release its
    /// lease if this engine still holds it and make the bets read for it claimable.
    async fn give_up(&self, _game_id: &str) -> Result<(), BusError> {
        Ok(())
    }
    /// Whether a bet left unacknowledged is handed out again (to this or another engine).
    /// When true, an engine that stops running a room leaves its unplaced bets to the room's
    /// next owner instead of refusing them.
    fn redelivers(&self) -> bool {
        false
    }
    /// Graceful stop, first step: take no new rooms and stop counting this engine as live, so
    /// the others reach for its rooms as soon as it lets them go. Leases it holds are still
    /// renewed by `active_rooms` while its rounds finish.
    async fn begin_drain(&self) -> Result<(), BusError> {
        Ok(())
    }
    /// Graceful stop, last step: give up every room and make bets this engine read but did not
    /// take into the ledger claimable by another engine at once.
    async fn stand_down(&self) -> Result<(), BusError> {
        Ok(())
    }
}
