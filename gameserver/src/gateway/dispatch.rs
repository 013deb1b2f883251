//! Fan-out of bus deliveries to local connections: one place where a broadcast becomes bytes,
//! shared by every recipient.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::handle::{ConnHandle, Outbound, StreamPosition};
use super::Gateway;
use crate::bus::{Delivery, Target};
use crate::protocol::FrameKind;

pub(super) async fn run(
    gw: Arc<Gateway>,
    mut deliveries: mpsc::Receiver<Delivery>,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = deliveries.recv() => d,
        };
        match delivery {
            Some(d) => fan_out(&gw, d),
            None => {
                tracing::warn!("the bus closed the delivery stream; no more room events");
                return;
            }
        }
    }
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
