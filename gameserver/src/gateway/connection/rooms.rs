//! Joining and leaving rooms, and telling the room.

use std::sync::Arc;

use super::Conn;
use crate::bus::{Bound, BusError, Delivery, Target};
use crate::clock::now_ms;
use crate::gateway::handle::CloseCause;
use crate::gateway::limits::room_admits;
use crate::gateway::membership::Key;
use crate::protocol::{ErrorCode, ServerFrame};

impl Conn {
    pub(super) async fn join(&mut self, game_id: &str) -> Result<(), CloseCause> {
        let (players, already) = match self.enter_room(game_id).await {
            Ok(joined) => joined,
            Err(code) => return self.error(code, join_refusal(code)).await,
        };
        let position = self
            .gw
            .bus
            .position(&Target::Room(game_id.to_owned()))
            .await
            .ok();
        self.reply(&ServerFrame::GameJoined {
            game_id,
            players,
            position: position.as_ref(),
        })
        .await?;
        if !already {
            self.joined(game_id, players).await;
        }
        Ok(())
    }

    /// What `join_game` and `resume` share: the room checks, the membership on the bus and
    /// here, and the wait for the room's subscription. Returns the room's member count and
    /// whether this connection was in the room already.
    pub(super) async fn enter_room(&mut self, game_id: &str) -> Result<(u64, bool), ErrorCode> {
        if !self.gw.cfg.room_pattern.is_match(game_id) {
            return Err(ErrorCode::InvalidGameId);
        }
        let already = self.rooms.iter().any(|r| &**r == game_id);
        if !already && self.rooms.len() >= self.gw.cfg.rooms_per_connection {
            return Err(ErrorCode::TooManyRooms);
        }
        let players = {
            // Serialises local first-member/last-member transitions with the bus
            // subscribe/unsubscribe calls they trigger.
            let gw = Arc::clone(&self.gw);
            let _membership = gw.membership.lock(Key::Room(game_id)).await;
            self.join_on_bus(game_id, already).await?
        };
        if !already {
            self.wait_subscribed(game_id).await?;
        }
        Ok((players, already))
    }

    /// A new member: the connection keeps the room and the others hear of it.
    pub(super) async fn joined(&mut self, game_id: &str, players: u64) {
        self.rooms.push(Arc::from(game_id));
        self.announce(game_id, players, true).await;
    }

    pub(super) async fn join_on_bus(
        &mut self,
        game_id: &str,
        already: bool,
    ) -> Result<u64, ErrorCode> {
        let bus = &self.gw.bus;
        let players = bus
            .join_room(game_id, &self.id)
            .await
            .map_err(|e| match e {
                BusError::Refused(Bound::LiveRooms) => ErrorCode::RoomLimit,
                e => {
                    tracing::warn!(error = %e, game_id, "join_room failed");
                    ErrorCode::EngineUnavailable
                }
            })?;
        if already {
            return Ok(players);
        }
        if !room_admits(players, self.gw.cfg.room_capacity) {
            if let Err(e) = bus.leave_room(game_id, &self.id).await {
                tracing::warn!(error = %e, game_id, "undoing a full-room join failed");
            }
            return Err(ErrorCode::RoomFull);
        }
        if self.gw.registry.join_room(game_id, &self.handle) {
            if let Err(e) = bus.subscribe_room(game_id).await {
                tracing::warn!(error = %e, game_id, "subscribe_room failed");
                self.gw.registry.leave_room(game_id, &self.handle.id);
                if let Err(e) = bus.leave_room(game_id, &self.id).await {
                    tracing::warn!(error = %e, game_id, "undoing a join failed");
                }
                return Err(ErrorCode::EngineUnavailable);
            }
            self.gw
                .metrics
                .rooms
                .set(self.gw.registry.room_count() as i64);
        }
        Ok(players)
    }

    /// A new member waits (bounded) until the bus receives its room: the subscription may
    /// be pending while the bus's connection is re-established. Outside the membership lock,
    /// so joins of other rooms go on meanwhile. When it does not come in time the join is
    /// undone and refused; the connection stays open.
    pub(super) async fn wait_subscribed(&mut self, game_id: &str) -> Result<(), ErrorCode> {
        let Err(e) = self
            .gw
            .bus
            .wait_subscribed(self.gw.cfg.subscribe_wait)
            .await
        else {
            return Ok(());
        };
        tracing::warn!(error = %e, game_id, "room not received in time; join refused");
        let gw = Arc::clone(&self.gw);
        let _membership = gw.membership.lock(Key::Room(game_id)).await;
        if gw.registry.leave_room(game_id, &self.handle.id) == 0 {
            if let Err(e) = gw.bus.unsubscribe_room(game_id).await {
                tracing::warn!(error = %e, game_id, "unsubscribe_room failed");
            }
            gw.metrics.rooms.set(gw.registry.room_count() as i64);
        }
        if let Err(e) = gw.bus.leave_room(game_id, &self.id).await {
            tracing::warn!(error = %e, game_id, "undoing a join failed");
        }
        Err(ErrorCode::EngineUnavailable)
    }

    pub(super) async fn leave(&mut self, game_id: &str) -> Result<(), CloseCause> {
        let Some(pos) = self.rooms.iter().position(|r| &**r == game_id) else {
            return self
                .error(
                    ErrorCode::NotInRoom,
                    "this connection has not joined that room",
                )
                .await;
        };
        self.rooms.swap_remove(pos);
        let players = self.leave_room(game_id).await;
        self.reply(&ServerFrame::GameLeft { game_id, players })
            .await
    }

    /// Leaves locally and on the bus, tells the room; returns the members left.
    pub(super) async fn leave_room(&mut self, game_id: &str) -> u64 {
        let players = {
            let gw = Arc::clone(&self.gw);
            let _membership = gw.membership.lock(Key::Room(game_id)).await;
            let bus = &gw.bus;
            let local_left = self.gw.registry.leave_room(game_id, &self.handle.id);
            if local_left == 0 {
                if let Err(e) = bus.unsubscribe_room(game_id).await {
                    tracing::warn!(error = %e, game_id, "unsubscribe_room failed");
                }
                self.gw
                    .metrics
                    .rooms
                    .set(self.gw.registry.room_count() as i64);
            }
            match bus.leave_room(game_id, &self.id).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, game_id, "leave_room failed");
                    local_left as u64
                }
            }
        };
        self.announce(game_id, players, false).await;
        players
    }

    /// Tells the rest of the room that this connection's user joined (or left).
    pub(super) async fn announce(&mut self, game_id: &str, player_count: u64, joined: bool) {
        let user = self.user();
        let user_id = &*user;
        let frame = if joined {
            ServerFrame::PlayerJoined {
                game_id,
                user_id,
                player_count,
            }
        } else {
            ServerFrame::PlayerLeft {
                game_id,
                user_id,
                player_count,
            }
        };
        self.publish_to_room(game_id, &frame).await;
    }

    pub(super) async fn publish_to_room(&mut self, game_id: &str, frame: &ServerFrame<'_>) {
        let delivery = Delivery {
            target: Target::Room(game_id.to_owned()),
            emitted_at_ms: now_ms(),
            except_connection: Some(self.id.clone()),
            frame: Arc::from(frame.to_text()),
        };
        if let Err(e) = self.gw.bus.publish(delivery).await {
            tracing::warn!(error = %e, game_id, "publishing a presence frame failed");
        }
    }
}

/// The `error` message for a refused `join_game`.
fn join_refusal(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidGameId => "gameId is not a room of this fleet",
        ErrorCode::TooManyRooms => "this connection is in too many rooms",
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::RoomLimit => "this fleet runs as many rooms as it may: join a room with players",
        _ => "rooms cannot be joined right now; retry later",
    }
}
