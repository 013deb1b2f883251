//! The shared face of one connection: what the dispatcher and the heartbeat sweeper may do
//! to it (queue a frame, ask it to close) without touching its socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::Utf8Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::bus::history::position_of;
use crate::protocol::{AuthFailReason, FrameKind};

/// One item in a connection's bounded send queue.
#[derive(Debug)]
pub enum Outbound {
    /// Ready-made text; `Utf8Bytes` clones share one buffer, so a broadcast is serialised once.
    Frame {
        text: Utf8Bytes,
        kind: FrameKind,
        /// Producer emission time (ms since epoch) for the latency histogram; 0 when unknown.
        emitted_at_ms: u64,
        /// Where a room or inbox frame sits in its stream (read once, when the bus delivered
        /// it); `None` for frames without a position and for direct replies.
        position: Option<Arc<StreamPosition>>,
    },
    /// A WebSocket ping from the heartbeat.
    Ping,
    /// The gateway is draining: write `server_draining` (with this connection's resume token);
    /// the close follows in about `reconnect_after_ms`.
    Draining { reconnect_after_ms: u64 },
}

/// A frame's place in a room's or a user's history (see `bus::history`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub stream: Stream,
    pub offset: u64,
}

/// A stream with a history: a room or a user's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    Room(String),
    Inbox(String),
}

impl StreamPosition {
    /// The position a ready-made frame carries, if any.
    pub fn of_frame(text: &str) -> Option<Self> {
        let (is_room, id, offset) = position_of(text)?;
        let stream = if is_room {
            Stream::Room(id)
        } else {
            Stream::Inbox(id)
        };
        Some(Self { stream, offset })
    }
}

/// Why a connection ends; decides the close frame and the `ws_disconnects_total` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCause {
    ClientClosed = 1,
    SlowConsumer,
    HeartbeatTimeout,
    AuthTimeout,
    AuthFailed,
    TooManyConnections,
    MessageTooBig,
    ProtocolError,
    InvalidUtf8,
    WriteTimeout,
    WriteFailed,
    Shutdown,
    Draining,
}

impl CloseCause {
    const ALL: [CloseCause; 13] = [
        Self::ClientClosed,
        Self::SlowConsumer,
        Self::HeartbeatTimeout,
        Self::AuthTimeout,
        Self::AuthFailed,
        Self::TooManyConnections,
        Self::MessageTooBig,
        Self::ProtocolError,
        Self::InvalidUtf8,
        Self::WriteTimeout,
        Self::WriteFailed,
        Self::Shutdown,
        Self::Draining,
    ];

    /// How a connection refused with `auth_failed` ends.
    pub fn of_auth_failure(reason: AuthFailReason) -> Self {
        match reason {
            AuthFailReason::InvalidToken => Self::AuthFailed,
            AuthFailReason::TooManyConnections => Self::TooManyConnections,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::SlowConsumer => "slow_consumer",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::AuthTimeout => "auth_timeout",
            Self::AuthFailed => "auth_failed",
            Self::TooManyConnections => "too_many_connections",
            Self::MessageTooBig => "message_too_big",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::WriteTimeout => "write_timeout",
            Self::WriteFailed => "write_failed",
            Self::Shutdown => "shutdown",
            Self::Draining => "draining",
        }
    }

    /// The close frame to attempt, or `None` to drop the socket without one (the peer is gone
    /// or not reading, or it closed first and tungstenite already answered).
    pub fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            Self::ClientClosed
            | Self::HeartbeatTimeout
            | Self::WriteTimeout
            | Self::WriteFailed => None,
            Self::SlowConsumer => Some((1008, "slow consumer: send queue full")),
            Self::AuthTimeout => Some((4001, "authentication timeout")),
            Self::AuthFailed => Some((4001, "Authentication failed")),
            Self::TooManyConnections => Some((4029, "too many connections for this user")),
            Self::MessageTooBig => Some((1009, "message too big")),
            Self::ProtocolError => Some((1002, "protocol error")),
            Self::InvalidUtf8 => Some((1007, "invalid UTF-8")),
            Self::Shutdown => Some((1001, "server shutting down")),
            // 1012 "service restart": reconnect (elsewhere) and resume.
            Self::Draining => Some((1012, "server draining; reconnect and resume")),
        }
    }
}

pub struct ConnHandle {
    pub id: Uuid,
    tx: mpsc::Sender<Outbound>,
    /// Wakes the connection task on kill. Only that task waits, so an AtomicWaker suffices
    /// and re-arming it on every poll costs a few atomics instead of a lock.
    kill_waker: AtomicWaker,
    kill_cause: AtomicU8,
    last_seen_ms: AtomicU64,
}

/// What happened to a frame offered to a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The queue was full: the connection is being closed as a slow consumer.
    Overflowed,
    /// The connection is already gone.
    Closed,
}

impl ConnHandle {
    pub fn new(tx: mpsc::Sender<Outbound>, now_mono_ms: u64) -> Self {
        Self {
            id: Uuid::new_v4(),
            tx,
            kill_waker: AtomicWaker::new(),
            kill_cause: AtomicU8::new(0),
            last_seen_ms: AtomicU64::new(now_mono_ms),
        }
    }

    /// Queue without waiting: a full queue means the client is not keeping up, and waiting
    /// would stall every other member of the room.
    pub fn offer(&self, out: Outbound) -> Offer {
        match self.tx.try_send(out) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill(CloseCause::SlowConsumer);
                Offer::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Ask the connection task to close; the first cause wins.
    pub fn kill(&self, cause: CloseCause) {
        if self
            .kill_cause
            .compare_exchange(0, cause as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.kill_waker.wake();
        }
    }

    pub fn killed(&self) -> Option<CloseCause> {
        CloseCause::from_u8(self.kill_cause.load(Ordering::Acquire))
    }

    /// Resolves once [`kill`](Self::kill) has been called (immediately if it already was).
    /// For the connection's own task only (one waiter).
    pub fn wait_killed(&self) -> Killed<'_> {
        Killed(self)
    }

    pub fn touch(&self, now_mono_ms: u64) {
        self.last_seen_ms.store(now_mono_ms, Ordering::Relaxed);
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
}

/// See [`ConnHandle::wait_killed`].
pub struct Killed<'a>(&'a ConnHandle);

impl Future for Killed<'_> {
    type Output = CloseCause;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseCause> {
        if let Some(c) = self.0.killed() {
            return Poll::Ready(c);
        }
        self.0.kill_waker.register(cx.waker());
        // Re-check: a kill between the first check and registering would otherwise be missed.
        match self.0.killed() {
            Some(c) => Poll::Ready(c),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Outbound {
        Outbound::Frame {
            text: Utf8Bytes::from("{}"),
            kind: FrameKind::Other,
            emitted_at_ms: 0,
            position: None,
        }
    }

    #[tokio::test]
    async fn a_full_queue_kills_the_connection_as_slow_consumer() {
        let (tx, mut rx) = mpsc::channel(2);
        let h = ConnHandle::new(tx, 0);
        assert_eq!(h.offer(frame()), Offer::Queued);
        assert_eq!(h.offer(frame()), Offer::Queued);
        assert_eq!(h.killed(), None);
        assert_eq!(h.offer(frame()), Offer::Overflowed);
        assert_eq!(h.wait_killed().await, CloseCause::SlowConsumer);
        h.kill(CloseCause::Shutdown);
        assert_eq!(
            h.killed(),
            Some(CloseCause::SlowConsumer),
            "first cause wins"
        );
        rx.close();
        while rx.try_recv().is_ok() {}
        assert_eq!(h.offer(frame()), Offer::Closed);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_kill() {
        let (tx, _rx) = mpsc::channel(1);
        let h = Arc::new(ConnHandle::new(tx, 0));
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.wait_killed().await }
        });
        tokio::task::yield_now().await;
        h.kill(CloseCause::HeartbeatTimeout);
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(woken.unwrap().unwrap(), CloseCause::HeartbeatTimeout);
    }

    #[test]
    fn positions_are_read_from_room_and_inbox_frames() {
        let cases = [
            (
                r#"{"type":"game_event","position":{"gameId":"g","offset":4,"epoch":"e"}}"#,
                Some((Stream::Room("g".into()), 4)),
            ),
            (
                r#"{"type":"bet_settled","position":{"userId":"u","offset":9,"epoch":"e"}}"#,
                Some((Stream::Inbox("u".into()), 9)),
            ),
            (r#"{"type":"pong"}"#, None),
        ];
        for (text, want) in cases {
            let want = want.map(|(stream, offset)| StreamPosition { stream, offset });
            assert_eq!(StreamPosition::of_frame(text), want, "{text}");
        }
    }

    #[test]
    fn auth_failures_close_with_their_documented_codes() {
        let code = |r| CloseCause::of_auth_failure(r).close_frame().map(|(c, _)| c);
        assert_eq!(code(AuthFailReason::InvalidToken), Some(4001));
        assert_eq!(code(AuthFailReason::TooManyConnections), Some(4029));
    }

    #[test]
    fn every_cause_round_trips_and_has_a_label() {
        for c in CloseCause::ALL {
            assert_eq!(CloseCause::from_u8(c as u8), Some(c));
            assert!(!c.as_str().is_empty());
        }
        assert_eq!(CloseCause::from_u8(0), None);
    }
}
