//! Fan-out of bus deliveries to local connections: one place where a broadcast becomes bytes,
//! shared by every recipient.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::handle::{ConnHandle, Outbound, Stream, StreamPosition};
use super::presence::{Change, Coalescer, Summary, MAX_NAMES};
use super::state::Gateway;
use crate::bus::{Delivery, Target};
use crate::clock::mono_ms;
use crate::protocol::FrameKind;

pub(super) async fn run(
    gw: Arc<Gateway>,
    mut deliveries: mpsc::Receiver<Delivery>,
    shutdown: CancellationToken,
) {
    let interval = gw.cfg.presence_interval;
    if interval.is_zero() {
        // Presence coalescing off: every join and leave goes to the room as it comes.
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = deliveries.recv() => d,
            };
            let Some(d) = delivery else { return closed() };
            fan_out(&gw, d);
        }
    }
    let mut presence = Coalescer::new(interval, MAX_NAMES);
    // Summaries become due an interval after the room's previous frame; checking four times
    // an interval keeps the wait past that short.
    let mut tick = tokio::time::interval((interval / 4).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            d = deliveries.recv() => {
                let Some(d) = d else { return closed() };
                deliver(&gw, &mut presence, d);
            }
            _ = tick.tick() => {
                for (game_id, summary) in presence.due(mono_ms()) {
                    send_presence(&gw, &game_id, &summary);
                }
            }
        }
    }
}

fn closed() {
    tracing::warn!("the bus closed the delivery stream; no more room events");
}

/// One delivery with presence coalescing on: a join or leave is folded into its room's
/// summary; any other room frame first flushes the room's pending summary.
fn deliver(gw: &Gateway, presence: &mut Coalescer, d: Delivery) {
    let Target::Room(game_id) = &d.target else {
        return fan_out(gw, d);
    };
    let now = mono_ms();
    let Some(change) = Change::of_frame(&d.frame, d.except_connection.clone()) else {
        if let Some(summary) = presence.take(game_id, now) {
            send_presence(gw, game_id, &summary);
        }
        return fan_out(gw, d);
    };
    if let Some(summary) = presence.record(game_id, change, now) {
        send_presence(gw, game_id, &summary);
    }
}

/// One `presence` frame, serialised once, to every local member of the room.
fn send_presence(gw: &Gateway, game_id: &str, summary: &Summary) {
    let text = Utf8Bytes::from(summary.to_frame(game_id));
    let position = summary.position.as_ref().map(|p| {
        Arc::new(StreamPosition {
            stream: Stream::Room(game_id.to_owned()),
            offset: p.offset,
        })
    });
    let skip = summary
        .skip_connection()
        .and_then(|s| Uuid::parse_str(s).ok());
    gw.registry.for_each_in_room(game_id, |conn| {
        if Some(conn.id) == skip {
            return;
        }
        conn.offer(Outbound::Frame {
            text: text.clone(),
            kind: FrameKind::Presence,
            // Held back on purpose: kept out of the delivery latency histogram.
            emitted_at_ms: 0,
            position: position.clone(),
        });
    });
}

/// Lets `Bytes` share the producer's `Arc<str>` instead of copying it.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

pub(super) fn fan_out(gw: &Gateway, delivery: Delivery) {
    let kind = FrameKind::of_frame(&delivery.frame);
    let position = StreamPosition::of_frame(&delivery.frame).map(Arc::new);
    let text = match Utf8Bytes::try_from(Bytes::from_owner(SharedText(delivery.frame))) {
        Ok(t) => t,
        // An Arc<str> is always UTF-8; this arm only keeps the type checker honest.
        Err(_) => return,
    };
    let except = delivery
        .except_connection
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok());
    let emitted_at_ms = delivery.emitted_at_ms;
    let offer = |conn: &Arc<ConnHandle>| {
        if Some(conn.id) != except {
            conn.offer(Outbound::Frame {
                text: text.clone(),
                kind,
                emitted_at_ms,
                position: position.clone(),
            });
        }
    };
    match &delivery.target {
        Target::Room(room) => gw.registry.for_each_in_room(room, offer),
        Target::User(user) => gw.registry.for_each_of_user(user, offer),
        Target::All => gw.registry.for_each(offer),
    }
}
