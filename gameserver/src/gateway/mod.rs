//! The WebSocket gateway: player connections, rooms, the user index, heartbeats and limits.
//! It holds no game logic: bets go to engines through [`GatewayBus`](crate::bus::GatewayBus),
//! and whatever engines publish comes back as ready-made frames that are fanned out byte for
//! byte.

mod config;
mod connection;
mod dispatch;
pub mod drain;
mod handle;
pub mod heartbeat;
pub mod limits;
mod membership;
pub mod presence;
mod registry;
pub mod resume_token;
mod state;

use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use config::{room_pattern, GatewayConfig, DEFAULT_PRESENCE_INTERVAL, DEFAULT_ROOM_PATTERN};
pub use handle::CloseCause;
pub use state::{Gateway, GatewayError};

impl Gateway {
    /// Starts the delivery fan-out and the heartbeat sweeper. On `shutdown` every connection
    /// is closed with 1001. Once `health.draining` is cancelled (SIGTERM, `POST /drain`) the
    /// gateway drains (see [`drain`]) and then [`drained`](Self::drained) resolves.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let deliveries = self
            .bus
            .take_deliveries()
            .ok_or(GatewayError::DeliveriesTaken)?;
        tokio::spawn(dispatch::run(
            Arc::clone(self),
            deliveries,
            shutdown.clone(),
        ));
        tokio::spawn(heartbeat::sweep(Arc::clone(self), shutdown.clone()));
        let gw = Arc::clone(self);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            gw.registry.for_each(|c| c.kill(CloseCause::Shutdown));
        });
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = gw.health.draining.cancelled() => {}
            }
            drain::run(&gw).await;
            gw.drained.cancel();
        });
        Ok(())
    }

    /// Completes a WebSocket upgrade with this gateway's limits and buffers.
    pub fn accept(self: &Arc<Self>, upgrade: WebSocketUpgrade) -> Response {
        if self.health.is_draining() {
            self.metrics.refused_upgrades.inc();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "1")],
                "gateway is draining: reconnect to another gateway\n",
            )
                .into_response();
        }
        let gw = Arc::clone(self);
        upgrade
            .max_message_size(self.cfg.max_message_bytes)
            .max_frame_size(self.cfg.max_message_bytes)
            .read_buffer_size(self.cfg.read_buffer_bytes)
            .write_buffer_size(self.cfg.write_buffer_bytes)
            .on_upgrade(move |ws| connection::run(gw, ws))
    }

    /// The player-facing routes: WebSocket upgrades on `/ws` and `/` (reference clients use
    /// the root path).
    pub fn router(self: &Arc<Self>) -> Router {
        let gw = Arc::clone(self);
        let handler = move |upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
            let gw = Arc::clone(&gw);
            async move {
                match upgrade {
                    Ok(upgrade) => gw.accept(upgrade),
                    Err(rejection) => rejection.into_response(),
                }
            }
        };
        Router::new()
            .route("/ws", any(handler.clone()))
            .route("/", any(handler))
    }
}
