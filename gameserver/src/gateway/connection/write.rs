//! Writing to the socket: replies, queued deliveries in batches, and what is left at a close.

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::SinkExt;
use tokio::sync::mpsc;

use super::session::resume_token;
use super::{Conn, CLOSE_TIMEOUT, MAX_BATCH};
use crate::clock::now_ms;
use crate::gateway::handle::{CloseCause, Outbound, StreamPosition};
use crate::gateway::state::Gateway;
use crate::protocol::{FrameKind, ServerFrame};

impl Conn {
    /// Writes whatever is queued, bounded by [`CLOSE_TIMEOUT`] (the connection is closing).
    pub(super) async fn flush_pending(&mut self, rx: &mut mpsc::Receiver<Outbound>) {
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

    pub(super) async fn write_queued(
        &mut self,
        first: Outbound,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Result<(), CloseCause> {
        self.write(first, Some(rx)).await
    }

    /// Writes `first` and, if `more` is given, whatever else is already queued (up to
    /// [`MAX_BATCH`]), then flushes once. Bounded by the write timeout and by a kill.
    pub(super) async fn write(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::handle::Stream;

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
}
