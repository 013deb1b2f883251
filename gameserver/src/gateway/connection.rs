//! One task per player connection: it owns the socket, reads client frames, writes replies and
//! queued deliveries, and cleans up after itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use tokio::sync::mpsc;

use super::handle::{CloseCause, ConnHandle, Outbound, Stream, StreamPosition};
use super::limits::{room_admits, Admission, RateLimiter};
use super::membership::Key;
use super::presence::{fold_replay, MAX_NAMES};
use super::resume_token::ResumeTokenError;
use super::Gateway;
use crate::auth::now_secs;
use crate::bus::{BetRequest, Bound, BusError, Delivery, Position, Target};
use crate::clock::{mono_ms, now_ms};
use crate::protocol::{
    decode, AuthFailReason, BetRejectReason, ClientFrame, ErrorCode, FrameKind, PlaceBet,
    Rejection, Resume, ServerFrame, StreamResume,
};

/// Frames written per flush when several are queued (fewer syscalls under load).
const MAX_BATCH: usize = 16;
/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a connection signs in with.
#[derive(Clone, Copy)]
enum Credentials<'a> {
    /// `authenticate`.
    Jwt(&'a str),
    /// `resume`: a resume token and/or a JWT.
    Resume {
        resume_token: &'a str,
        jwt: Option<&'a str>,
    },
}

struct Conn {
    gw: Arc<Gateway>,
    handle: Arc<ConnHandle>,
    id: String,
    ws: WebSocket,
    user: Option<Arc<str>>,
    rooms: Vec<Arc<str>>,
    limiter: RateLimiter,
    /// After a resume: per stream, the last position replayed. Queued live frames at or before
    /// it are duplicates and dropped; the first newer one ends the check for that stream.
    recovering: Vec<StreamPosition>,
}

pub(super) async fn run(gw: Arc<Gateway>, ws: WebSocket) {
    let (tx, mut rx) = mpsc::channel(gw.cfg.send_queue.max(1));
    let handle = Arc::new(ConnHandle::new(tx, mono_ms()));
    gw.registry.insert(Arc::clone(&handle));
    gw.metrics.active_connections.inc();
    let limiter = RateLimiter::new(gw.cfg.messages_per_second);
    let mut conn = Conn {
        id: handle.id.to_string(),
        gw,
        handle,
        ws,
        user: None,
        rooms: Vec::new(),
        limiter,
        recovering: Vec::new(),
    };
    let cause = conn.serve(&mut rx).await;
    drop(rx);
    Box::pin(conn.finish(cause)).await;
}

impl Conn {
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Outbound>) -> CloseCause {
        let id = self.id.clone();
        let hello = ServerFrame::Connected {
            connection_id: &id,
            server_time: now_ms(),
        };
        if let Err(cause) = Box::pin(self.reply(&hello)).await {
            return cause;
        }
        let handle = Arc::clone(&self.handle);
        let auth_deadline = tokio::time::sleep(self.gw.cfg.auth_timeout);
        tokio::pin!(auth_deadline);
        loop {
            tokio::select! {
                biased;
                cause = handle.wait_killed() => {
                    if cause == CloseCause::Draining {
                        // The drain notice (and events already queued) go out before the close.
                        Box::pin(self.flush_pending(rx)).await;
                    }
                    return cause;
                }
                out = rx.recv() => {
                    let Some(out) = out else { return CloseCause::Shutdown };
                    if let Err(cause) = Box::pin(self.write_queued(out, rx)).await {
                        return cause;
                    }
                }
                msg = self.ws.recv() => {
                    let result = match msg {
                        None => Err(CloseCause::ClientClosed),
                        Some(Err(e)) => Err(read_error_cause(e)),
                        // Boxed: the message-handling state is large and only lives while a
                        // message is handled, so idle connections do not carry it.
                        Some(Ok(msg)) => Box::pin(self.on_message(msg)).await,
                    };
                    if let Err(cause) = result {
                        return cause;
                    }
                }
                _ = &mut auth_deadline, if self.user.is_none() => return CloseCause::AuthTimeout,
            }
        }
    }

    async fn on_message(&mut self, msg: Message) -> Result<(), CloseCause> {
        self.handle.touch(mono_ms());
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                if !self.admit().await? {
                    return Ok(());
                }
                self.gw.metrics.received("binary");
                return self
                    .error(ErrorCode::InvalidPayload, "binary frames are not supported")
                    .await;
            }
            // Pongs only prove liveness (done above); tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(_) => return Err(CloseCause::ClientClosed),
        };
        if !self.admit().await? {
            return Ok(());
        }
        match decode(&text, self.user.is_some()) {
            Err(Rejection::Error { code, message }) => {
                self.gw.metrics.received("invalid");
                self.error(code, message).await
            }
            Err(Rejection::BetRejected {
                idempotency_key,
                reason,
                message,
            }) => {
                self.gw.metrics.received("place_bet");
                self.bet_rejected(&idempotency_key, reason, message).await
            }
            Ok(frame) => self.on_frame(frame).await,
        }
    }

    /// Applies the rate limit; `Ok(false)` means drop the message.
    async fn admit(&mut self) -> Result<bool, CloseCause> {
        match self.limiter.admit(mono_ms()) {
            Admission::Allow => Ok(true),
            Admission::Drop => Ok(false),
            Admission::Reject => {
                self.error(ErrorCode::RateLimited, "too many messages per second")
                    .await?;
                Ok(false)
            }
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), CloseCause> {
        match frame {
            ClientFrame::Ping => {
                self.gw.metrics.received("ping");
                self.reply(&ServerFrame::Pong {
                    server_time: now_ms(),
                })
                .await
            }
            ClientFrame::Authenticate { token } => {
                self.gw.metrics.received("authenticate");
                self.authenticate(&token).await
            }
            ClientFrame::JoinGame { game_id } => {
                self.gw.metrics.received("join_game");
                self.join(&game_id).await
            }
            ClientFrame::LeaveGame { game_id } => {
                self.gw.metrics.received("leave_game");
                self.leave(&game_id).await
            }
            ClientFrame::PlaceBet(bet) => {
                self.gw.metrics.received("place_bet");
                self.place_bet(bet).await
            }
            ClientFrame::Resume(resume) => {
                self.gw.metrics.received("resume");
                Box::pin(self.resume(resume)).await
            }
        }
    }

    async fn authenticate(&mut self, token: &str) -> Result<(), CloseCause> {
        let Some(user) = self.sign_in(Credentials::Jwt(token)).await? else {
            return Ok(());
        };
        let inbox = self.gw.bus.position(&Target::User(user.to_string())).await;
        let resume_token = self.resume_token();
        self.reply(&ServerFrame::Authenticated {
            user_id: &user,
            resume_token: resume_token.as_deref(),
            inbox: inbox.as_ref().ok(),
        })
        .await
    }

    /// What `authenticate` and `resume` share: a second sign-in is refused (`Ok(None)`), a
    /// user the credentials do not prove gets `auth_failed` and the close, and a proven one is
    /// indexed under the connection.
    async fn sign_in(
        &mut self,
        credentials: Credentials<'_>,
    ) -> Result<Option<Arc<str>>, CloseCause> {
        if self.user.is_some() {
            self.error(
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
            )
            .await?;
            return Ok(None);
        }
        let Some(user) = identify(&self.gw, &self.id, credentials).await else {
            return self.auth_failed(AuthFailReason::InvalidToken).await;
        };
        let user: Arc<str> = Arc::from(user);
        self.register_user(&user).await?;
        Ok(Some(user))
    }

    /// Answers `auth_failed` and ends the connection (always `Err`).
    async fn auth_failed<T>(&mut self, reason: AuthFailReason) -> Result<T, CloseCause> {
        self.reply(&ServerFrame::AuthFailed { reason }).await?;
        Err(CloseCause::of_auth_failure(reason))
    }

    /// Indexes the connection under its user and starts the user's direct frames here.
    async fn register_user(&mut self, user: &Arc<str>) -> Result<(), CloseCause> {
        let gw = Arc::clone(&self.gw);
        let membership = gw.membership.lock(Key::User(user)).await;
        if !gw
            .registry
            .add_user(user, &self.handle, gw.cfg.connections_per_user)
        {
            drop(membership);
            return self.auth_failed(AuthFailReason::TooManyConnections).await;
        }
        if gw.registry.user_connections(user) == 1 {
            // A subscription asked for while the bus is reconnecting is made once it is back.
            if let Err(e) = gw.bus.subscribe_user(user).await {
                tracing::warn!(error = %e, "subscribe_user failed");
            }
        }
        drop(membership);
        gw.metrics.authenticated_connections.inc();
        self.user = Some(Arc::clone(user));
        Ok(())
    }

    /// `resume`: authenticate (resume token or JWT), rejoin the rooms, replay what was missed
    /// in each room and in the user's inbox, then answer `resumed`.
    async fn resume(&mut self, r: Resume) -> Result<(), CloseCause> {
        let credentials = Credentials::Resume {
            resume_token: &r.resume_token,
            jwt: r.token.as_deref(),
        };
        let Some(user) = self.sign_in(credentials).await? else {
            return Ok(());
        };
        let mut rooms = std::collections::BTreeMap::new();
        for (game_id, since) in &r.rooms {
            let outcome = self.rejoin(game_id, since.as_ref()).await?;
            rooms.insert(game_id.as_str(), outcome);
        }
        let inbox = self
            .replay(Target::User(user.to_string()), r.inbox.as_ref())
            .await?;
        let token = self.resume_token().unwrap_or_default();
        self.reply(&ServerFrame::Resumed {
            user_id: &user,
            resume_token: &token,
            rooms,
            inbox,
        })
        .await
    }

    /// Rejoins one room during a resume and replays its missed events.
    async fn rejoin(
        &mut self,
        game_id: &str,
        since: Option<&Position>,
    ) -> Result<StreamResume, CloseCause> {
        let (players, already) = match self.enter_room(game_id).await {
            Ok(joined) => joined,
            Err(code) => {
                return Ok(StreamResume {
                    recovered: false,
                    replayed: 0,
                    position: None,
                    players: None,
                    error: Some(code),
                })
            }
        };
        if !already {
            self.joined(game_id, players).await;
        }
        let mut outcome = self.replay(Target::Room(game_id.to_owned()), since).await?;
        outcome.players = Some(players);
        Ok(outcome)
    }

    /// Writes what `stream` received after `since` and arms the duplicate check for it.
    /// Called after the live path (room or user subscription) is in place, so nothing falls
    /// between the replay and live frames; the overlap is dropped by the check.
    async fn replay(
        &mut self,
        stream: Target,
        since: Option<&Position>,
    ) -> Result<StreamResume, CloseCause> {
        let key = match &stream {
            Target::Room(g) => Stream::Room(g.clone()),
            Target::User(u) => Stream::Inbox(u.clone()),
            // Broadcasts have no history; callers only pass rooms and users.
            Target::All => Stream::Inbox(String::new()),
        };
        let recovery = match self.gw.bus.history(&stream, since).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading history failed");
                return Ok(StreamResume {
                    recovered: false,
                    replayed: 0,
                    position: None,
                    players: None,
                    error: Some(ErrorCode::EngineUnavailable),
                });
            }
        };
        let frames = match &key {
            // Joins and leaves are replayed the way live members get them.
            Stream::Room(game_id) if !self.gw.cfg.presence_interval.is_zero() => {
                fold_replay(game_id, recovery.frames, MAX_NAMES)
            }
            _ => recovery.frames,
        };
        let replayed = frames.len();
        for frame in frames {
            let out = Outbound::Frame {
                kind: FrameKind::of_frame(&frame),
                text: Utf8Bytes::from(frame.to_string()),
                emitted_at_ms: 0,
                // Written directly, never checked against the replay itself.
                position: None,
            };
            self.write(out, None).await?;
        }
        self.recovering.retain(|p| p.stream != key);
        self.recovering.push(StreamPosition {
            stream: key,
            offset: recovery.position.offset,
        });
        self.gw
            .metrics
            .resumed_streams
            .with_label_values(&[if recovery.recovered {
                "recovered"
            } else {
                "not_recovered"
            }])
            .inc();
        Ok(StreamResume {
            recovered: recovery.recovered,
            replayed,
            position: Some(recovery.position),
            players: None,
            error: None,
        })
    }

    /// A fresh resume token for this connection's user (none before authentication).
    fn resume_token(&self) -> Option<String> {
        resume_token(&self.gw, self.user.as_deref())
    }

    /// Writes whatever is queued, bounded by [`CLOSE_TIMEOUT`] (the connection is closing).
    async fn flush_pending(&mut self, rx: &mut mpsc::Receiver<Outbound>) {
        let mut items = Vec::new();
        while let Ok(out) = rx.try_recv() {
            // As on the live path: frames a resume already replayed are not sent again (a
            // connection resumed just before its gateway drains still has them queued).
            if let Outbound::Frame { position, .. } = &out {
                if is_duplicate(&mut self.recovering, position.as_deref()) {
                    continue;
                }
            }
            items.push(materialize(&self.gw, self.user.as_deref(), out));
        }
        if items.is_empty() {
            return;
        }
        let ws = &mut self.ws;
        let kinds: Vec<FrameKind> = items.iter().map(|(_, k, _)| *k).collect();
        let work = async {
            for (msg, _, _) in items {
                ws.feed(msg).await?;
            }
            ws.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(CLOSE_TIMEOUT, work).await {
            for kind in kinds {
                self.gw.metrics.sent(kind, 1);
            }
        }
    }

    fn user(&self) -> Arc<str> {
        // Callers run after `decode` enforced authentication.
        self.user.clone().unwrap_or_else(|| Arc::from(""))
    }

    async fn join(&mut self, game_id: &str) -> Result<(), CloseCause> {
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
    async fn enter_room(&mut self, game_id: &str) -> Result<(u64, bool), ErrorCode> {
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
    async fn joined(&mut self, game_id: &str, players: u64) {
        self.rooms.push(Arc::from(game_id));
        self.announce(game_id, players, true).await;
    }

    async fn join_on_bus(&mut self, game_id: &str, already: bool) -> Result<u64, ErrorCode> {
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
    async fn wait_subscribed(&mut self, game_id: &str) -> Result<(), ErrorCode> {
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

    async fn leave(&mut self, game_id: &str) -> Result<(), CloseCause> {
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
    async fn leave_room(&mut self, game_id: &str) -> u64 {
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
    async fn announce(&mut self, game_id: &str, player_count: u64, joined: bool) {
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

    async fn publish_to_room(&mut self, game_id: &str, frame: &ServerFrame<'_>) {
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

    async fn place_bet(&mut self, bet: PlaceBet) -> Result<(), CloseCause> {
        if !self.rooms.iter().any(|r| **r == *bet.game_id) {
            return self
                .bet_rejected(
                    &bet.idempotency_key,
                    BetRejectReason::NotInRoom,
                    "join the room before betting in it",
                )
                .await;
        }
        let request = BetRequest {
            idempotency_key: bet.idempotency_key,
            user_id: self.user().to_string(),
            game_id: bet.game_id,
            amount: bet.amount,
            selection: bet.selection,
            client_seed: bet.client_seed,
            gateway_id: self.gw.cfg.gateway_id.clone(),
            received_at_ms: now_ms(),
        };
        let submitting = std::time::Instant::now();
        let submitted = self.gw.bus.submit_bet(&request).await;
        self.gw
            .metrics
            .bet_submit_ms
            .observe(submitting.elapsed().as_secs_f64() * 1000.0);
        match submitted {
            Ok(()) => {
                self.gw
                    .metrics
                    .bets
                    .with_label_values(&["acknowledged"])
                    .inc();
                self.reply(&ServerFrame::BetAcknowledged {
                    idempotency_key: &request.idempotency_key,
                    status: "processing",
                })
                .await
            }
            Err(BusError::Refused(Bound::BetRate)) => {
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::RateLimited,
                    "too many bets per second; the bet was not placed",
                )
                .await
            }
            Err(BusError::Refused(bound)) => {
                tracing::warn!(%bound, game_id = %request.game_id, "bet refused");
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::EngineUnavailable,
                    "the room's engines are behind; the bet was not placed: retry later",
                )
                .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "submit_bet failed");
                // A timed-out XADD may still have landed: only a retry with the same key can
                // tell, and it never places the bet twice.
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::EngineUnavailable,
                    "bets cannot be accepted right now; the bet may not have been placed: retry \
                     with the same idempotencyKey",
                )
                .await
            }
        }
    }

    async fn bet_rejected(
        &mut self,
        idempotency_key: &str,
        reason: BetRejectReason,
        message: &str,
    ) -> Result<(), CloseCause> {
        self.gw.metrics.bets.with_label_values(&["rejected"]).inc();
        self.gw
            .metrics
            .bet_rejections
            .with_label_values(&[reason.as_str()])
            .inc();
        self.reply(&ServerFrame::BetRejected {
            idempotency_key,
            reason,
            message,
        })
        .await
    }

    async fn error(&mut self, code: ErrorCode, message: &str) -> Result<(), CloseCause> {
        self.gw
            .metrics
            .errors
            .with_label_values(&[code.as_str()])
            .inc();
        self.reply(&ServerFrame::Error { code, message }).await
    }

    async fn reply(&mut self, frame: &ServerFrame<'_>) -> Result<(), CloseCause> {
        let out = Outbound::Frame {
            text: Utf8Bytes::from(frame.to_text()),
            kind: frame.kind(),
            emitted_at_ms: 0,
            position: None,
        };
        self.write(out, None).await
    }

    async fn write_queued(
        &mut self,
        first: Outbound,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Result<(), CloseCause> {
        self.write(first, Some(rx)).await
    }

    /// Writes `first` and, if `more` is given, whatever else is already queued (up to
    /// [`MAX_BATCH`]), then flushes once. Bounded by the write timeout and by a kill.
    async fn write(
        &mut self,
        first: Outbound,
        mut more: Option<&mut mpsc::Receiver<Outbound>>,
    ) -> Result<(), CloseCause> {
        let handle = Arc::clone(&self.handle);
        let timeout = self.gw.cfg.write_timeout;
        let mut kinds = [(FrameKind::Other, 0u64); MAX_BATCH];
        let mut n = 0;
        let (gw, user) = (&self.gw, self.user.as_deref());
        let materialize = |out| materialize(gw, user, out);
        let queued = more.is_some();
        let recovering = &mut self.recovering;
        let ws = &mut self.ws;
        let work = async {
            let mut next = Some(first);
            while let Some(out) = next.take() {
                if let Outbound::Frame { position, .. } = &out {
                    if queued && is_duplicate(recovering, position.as_deref()) {
                        if n < MAX_BATCH {
                            next = more.as_mut().and_then(|rx| rx.try_recv().ok());
                        }
                        continue;
                    }
                }
                let (msg, kind, emitted_at_ms) = materialize(out);
                let is_frame = !matches!(msg, Message::Ping(_));
                ws.feed(msg).await?;
                if is_frame {
                    kinds[n] = (kind, emitted_at_ms);
                    n += 1;
                }
                if n < MAX_BATCH {
                    next = more.as_mut().and_then(|rx| rx.try_recv().ok());
                }
            }
            ws.flush().await
        };
        // Most writes complete at once; only a write that has to wait arms the timer and the
        // kill check (both cost more than the write itself on the hot path).
        let result = {
            let mut work = std::pin::pin!(work);
            match futures_util::FutureExt::now_or_never(work.as_mut()) {
                Some(r) => Ok(r),
                None => tokio::select! {
                    biased;
                    cause = handle.wait_killed() => return Err(cause),
                    r = tokio::time::timeout(timeout, work) => r,
                },
            }
        };
        match result {
            Err(_) => return Err(CloseCause::WriteTimeout),
            Ok(Err(e)) => {
                tracing::debug!(connection = %self.id, error = %e, "write failed");
                return Err(CloseCause::WriteFailed);
            }
            Ok(Ok(())) => {}
        }
        let now = now_ms();
        let metrics = &self.gw.metrics;
        for (kind, emitted_at_ms) in &kinds[..n] {
            metrics.sent(*kind, 1);
            if *emitted_at_ms > 0 {
                metrics
                    .message_latency_ms
                    .observe(now.saturating_sub(*emitted_at_ms) as f64);
            }
        }
        Ok(())
    }

    /// Cleanup first (so the room hears `player_left` at once), then the close frame.
    async fn finish(mut self, cause: CloseCause) {
        let rooms = std::mem::take(&mut self.rooms);
        for room in &rooms {
            self.leave_room(room).await;
        }
        if let Some(user) = self.user.clone() {
            let gw = Arc::clone(&self.gw);
            let _membership = gw.membership.lock(Key::User(&user)).await;
            gw.registry.remove_user(&user, &self.handle.id);
            if gw.registry.user_connections(&user) == 0 {
                if let Err(e) = gw.bus.unsubscribe_user(&user).await {
                    tracing::warn!(error = %e, "unsubscribe_user failed");
                }
            }
            gw.metrics.authenticated_connections.dec();
        }
        self.gw.registry.remove(&self.handle.id);
        self.gw.metrics.active_connections.dec();
        self.gw
            .metrics
            .disconnects
            .with_label_values(&[cause.as_str()])
            .inc();
        tracing::debug!(connection = %self.id, cause = cause.as_str(), "connection closed");
        let Some((code, reason)) = cause.close_frame() else {
            return;
        };
        let ws = &mut self.ws;
        let close = async {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            };
            if ws.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // Read until the peer's close reply so unread input does not turn our close into
            // a TCP reset that could destroy the close frame in flight.
            while let Some(Ok(msg)) = ws.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// Whether a queued frame was already replayed by a resume (see `Conn::recovering`).
fn is_duplicate(recovering: &mut Vec<StreamPosition>, position: Option<&StreamPosition>) -> bool {
    let Some(position) = position else {
        return false;
    };
    let Some(i) = recovering.iter().position(|r| r.stream == position.stream) else {
        return false;
    };
    if position.offset <= recovering[i].offset {
        return true;
    }
    // Live frames have caught up with the replay: no more checks for this stream.
    recovering.swap_remove(i);
    false
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

/// The user the credentials prove, if any. For `resume`: the resume token's user, else
/// the JWT's; both valid but naming different users proves nobody.
async fn identify(gw: &Gateway, connection: &str, credentials: Credentials<'_>) -> Option<String> {
    let now = now_secs();
    let (resume_token, jwt) = match credentials {
        Credentials::Jwt(token) => {
            return match gw.auth.verify(token, now) {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(connection = %connection, reason = %e, "authentication failed");
                    None
                }
            };
        }
        Credentials::Resume { resume_token, jwt } => (resume_token, jwt),
    };
    let by_resume = match use_resume_token(gw, resume_token, now).await {
        Ok(u) => Some(u),
        Err(e) => {
            if !resume_token.is_empty() {
                tracing::debug!(connection = %connection, reason = %e, "resume token refused");
            }
            None
        }
    };
    let by_jwt = jwt
        .filter(|t| !t.is_empty())
        .and_then(|t| gw.auth.verify(t, now).ok());
    match (by_resume, by_jwt) {
        (Some(a), Some(b)) if a != b => None,
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// The user of a genuine, unexpired resume token that no gateway has seen used; using it
/// here spends it. When the record of uses cannot be reached the token is refused (a JWT in
/// the same `resume` still works).
async fn use_resume_token(gw: &Gateway, token: &str, now: u64) -> Result<String, ResumeTokenError> {
    let claim = gw.auth.resume_tokens().verify(token, now)?;
    let until_ms = claim.expiry.saturating_mul(1000);
    match gw
        .bus
        .use_once(&format!("resume:{}", claim.id), until_ms)
        .await
    {
        Ok(true) => Ok(claim.user),
        Ok(false) => Err(ResumeTokenError::Used),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a resume token's use; refusing it");
            Err(ResumeTokenError::Used)
        }
    }
}

fn resume_token(gw: &Gateway, user: Option<&str>) -> Option<String> {
    Some(gw.auth.resume_tokens().issue(user?, now_secs()))
}

/// The frame an [`Outbound`] item becomes on the wire, its kind and emission time.
fn materialize(gw: &Gateway, user: Option<&str>, out: Outbound) -> (Message, FrameKind, u64) {
    match out {
        Outbound::Frame {
            text,
            kind,
            emitted_at_ms,
            ..
        } => (Message::Text(text), kind, emitted_at_ms),
        Outbound::Ping => (
            Message::Ping(Default::default()),
            FrameKind::Other,
            u64::MAX,
        ),
        Outbound::Draining { reconnect_after_ms } => {
            let token = resume_token(gw, user);
            let frame = ServerFrame::ServerDraining {
                reconnect_after_ms,
                resume_token: token.as_deref(),
            };
            (
                Message::Text(Utf8Bytes::from(frame.to_text())),
                FrameKind::ServerDraining,
                0,
            )
        }
    }
}

fn read_error_cause(e: axum::Error) -> CloseCause {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => CloseCause::MessageTooBig,
        Some(tungstenite::Error::Utf8(_)) => CloseCause::InvalidUtf8,
        Some(tungstenite::Error::Protocol(_)) => CloseCause::ProtocolError,
        _ => CloseCause::ClientClosed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, Fut, F: FnOnce(A, B) -> Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn at(stream: Stream, offset: u64) -> StreamPosition {
        StreamPosition { stream, offset }
    }

    #[test]
    fn replayed_positions_are_dropped_until_live_frames_catch_up() {
        let room = || Stream::Room("g".into());
        let inbox = || Stream::Inbox("u".into());
        let mut recovering = vec![at(room(), 5), at(inbox(), 2)];
        assert!(!is_duplicate(&mut recovering, None));
        assert!(is_duplicate(&mut recovering, Some(&at(room(), 4))));
        assert!(is_duplicate(&mut recovering, Some(&at(room(), 5))));
        assert!(!is_duplicate(
            &mut recovering,
            Some(&at(Stream::Room("other".into()), 1))
        ));
        // The first newer frame ends the check for its stream only.
        assert!(!is_duplicate(&mut recovering, Some(&at(room(), 6))));
        assert_eq!(recovering, vec![at(inbox(), 2)]);
        assert!(!is_duplicate(&mut recovering, Some(&at(room(), 3))));
        assert!(is_duplicate(&mut recovering, Some(&at(inbox(), 2))));
    }

    /// Every idle connection keeps its task's future in memory; message handling, writing and
    /// cleanup are boxed so that future stays small (the per-connection RSS budget is 12 KiB).
    #[test]
    fn idle_connection_future_stays_small() {
        let idle = future_size(run);
        let handling = future_size(|c: &mut Conn, m: Message| c.on_message(m));
        assert!(idle <= 1536, "connection future is {idle} bytes");
        assert!(
            idle < handling,
            "message handling ({handling} bytes) must not be inline"
        );
    }
}
