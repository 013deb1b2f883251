//! The gateway's shared state: what every connection task, the delivery fan-out, the
//! heartbeat sweeper and the drain reach through one `Arc<Gateway>`. Re-exported by the
//! gateway module; a leaf of its own so that those tasks can name it without naming the
//! gateway module back.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::config::GatewayConfig;
use super::membership::MembershipLocks;
use super::registry::Registry;
use crate::admin::Health;
use crate::auth::Authenticator;
use crate::bus::GatewayBus;
use crate::metrics::GatewayMetrics;
use crate::server::{ConnLimits, Refusal, ServeOptions};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("registering gateway metrics failed: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the bus's delivery stream was already taken by another gateway in this process")]
    DeliveriesTaken,
}

pub struct Gateway {
    pub(super) cfg: GatewayConfig,
    pub(super) bus: Arc<dyn GatewayBus>,
    pub(super) auth: Authenticator,
    pub(super) registry: Registry,
    pub(super) metrics: GatewayMetrics,
    pub(super) health: Arc<Health>,
    /// Held (per room or user) across a local membership change and the bus (un)subscribe
    /// it causes.
    pub(super) membership: MembershipLocks,
    /// Cancelled once a drain has finished (no connection left, or its timeout passed).
    pub(super) drained: CancellationToken,
}

impl Gateway {
    pub fn new(
        cfg: GatewayConfig,
        bus: Arc<dyn GatewayBus>,
        auth: Authenticator,
        metrics: &prometheus::Registry,
        health: Arc<Health>,
    ) -> Result<Arc<Self>, GatewayError> {
        Ok(Arc::new(Self {
            cfg,
            bus,
            auth,
            registry: Registry::default(),
            metrics: GatewayMetrics::new(metrics)?,
            health,
            membership: MembershipLocks::default(),
            drained: CancellationToken::new(),
        }))
    }

    /// Start draining (idempotent): `/readyz` fails and upgrades are refused at once.
    pub fn begin_drain(&self) {
        self.health.draining.cancel();
    }

    /// Resolves once a drain has finished.
    pub async fn drained(&self) {
        self.drained.cancelled().await
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    pub fn connection_count(&self) -> usize {
        self.registry.connection_count()
    }

    /// How the player port serves: this gateway's connection caps, refusals counted.
    pub fn serve_options(&self) -> ServeOptions {
        let refused = self.metrics.refused_connections.clone();
        ServeOptions {
            limits: ConnLimits {
                max_total: self.cfg.max_connections,
                max_per_ip: self.cfg.max_connections_per_ip,
            },
            on_refused: Some(Arc::new(move |why: Refusal| {
                refused.with_label_values(&[why.as_str()]).inc();
            })),
        }
    }
}
