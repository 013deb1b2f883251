//! One task per player connection: it owns the socket, reads client frames, writes replies and
//! queued deliveries, and cleans up after itself.

mod bets;
mod rooms;
mod session;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::mpsc;

use super::handle::{CloseCause, ConnHandle, Outbound, StreamPosition};
use super::limits::{Admission, RateLimiter};
use super::membership::Key;
use super::state::Gateway;
use crate::clock::{mono_ms, now_ms};
use crate::protocol::{decode, ClientFrame, ErrorCode, Rejection, ServerFrame};

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

    fn user(&self) -> Arc<str> {
        // Callers run after `decode` enforced authentication.
        self.user.clone().unwrap_or_else(|| Arc::from(""))
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
