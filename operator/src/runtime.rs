//! `gamefleet-operator run`: the HTTP endpoints, leader election and the controller, wired.
//!
//! Only the Lease holder runs the controller. A leader that cannot renew within the renew
//! deadline stops reconciling at once (before its Lease can expire and a standby take over), and
//! goes back to being a candidate.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::Client;
use tokio::time::{sleep, Instant};
use tracing::{info, warn};

use crate::controller::{run_controller, ControllerDeps, NoAdvisor, ScaleAdvisor};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::server::{self, Health};

/// Settings of one operator process.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub metrics_listen: SocketAddr,
    /// `None` disables leader election (single replica).
    pub lease: Option<LeaseConfig>,
    /// Only watch this namespace (`None`: all).
    pub namespace: Option<String>,
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started operator: its metrics and bound address, for tests and `main`.
pub struct Operator {
    pub metrics: Metrics,
    pub health: Health,
    pub metrics_addr: SocketAddr,
}

/// Runs until `shutdown` resolves; then stops reconciling and releases the Lease.
pub async fn run(
    client: Client,
    cfg: RunConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with(client, cfg, Arc::new(NoAdvisor), shutdown, |_| {}).await
}

/// [`run`] with an autoscaler and a callback receiving the started [`Operator`].
pub async fn run_with(
    client: Client,
    cfg: RunConfig,
    advisor: Arc<dyn ScaleAdvisor>,
    shutdown: impl Future<Output = ()> + Send,
    started: impl FnOnce(&Operator),
) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let health = Health::new();
    let listener = server::bind(cfg.metrics_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: cfg.metrics_listen,
            source,
        })?;
    let metrics_addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: cfg.metrics_listen,
        source,
    })?;
    info!(%metrics_addr, identity = %cfg.identity, "operator endpoints listening");
    started(&Operator {
        metrics: metrics.clone(),
        health: health.clone(),
        metrics_addr,
    });
    let http = tokio::spawn(server::serve(
        listener,
        server::router(metrics.clone(), health.clone()),
    ));
    let deps = ControllerDeps {
        reporter: Reporter {
            controller: crate::build::FIELD_MANAGER.into(),
            instance: Some(cfg.identity.clone()),
        },
        metrics: metrics.clone(),
        advisor,
    };

    tokio::pin!(shutdown);
    match cfg.lease.clone() {
        None => {
            health.set_ready(true);
            metrics.leader.set(1);
            tokio::select! {
                _ = run_controller(client, cfg.namespace.clone(), deps) => {}
                _ = &mut shutdown => info!("shutting down"),
            }
        }
        Some(lease) => {
            let elector = LeaderElector::new(client.clone(), lease);
            lead_or_wait(
                &elector,
                client,
                &cfg,
                deps,
                &metrics,
                &health,
                &mut shutdown,
            )
            .await;
            metrics.leader.set(0);
            if let Err(e) = elector.release().await {
                warn!(error = %e, "cannot release the Lease; a standby takes over when it expires");
            }
        }
    }
    http.abort();
    Ok(())
}

async fn lead_or_wait(
    elector: &LeaderElector,
    client: Client,
    cfg: &RunConfig,
    deps: ControllerDeps,
    metrics: &Metrics,
    health: &Health,
    shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) {
    let renew = elector.config().renew_interval;
    // Stop leading if the Lease could not be renewed for this long: two thirds of its duration
    // leaves a margin before anyone else may take it.
    let deadline = elector
        .config()
        .lease_duration
        .mul_f64(2.0 / 3.0)
        .max(renew);
    loop {
        // Candidate: try until we hold the Lease.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => health.set_ready(true),
                Err(e) => warn!(error = %e, "leader election: cannot read or write the Lease"),
            }
            tokio::select! {
                _ = sleep(renew) => {}
                _ = &mut *shutdown => return,
            }
        }
        health.set_ready(true);
        metrics.leader.set(1);
        info!(identity = %cfg.identity, "acquired the Lease; reconciling");
        let controller = run_controller(client.clone(), cfg.namespace.clone(), deps.clone());
        tokio::pin!(controller);
        let mut last_renewed = Instant::now();
        let lost = loop {
            tokio::select! {
                _ = &mut controller => break false,
                _ = &mut *shutdown => return,
                _ = sleep(renew) => {
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => break true,
                        Err(e) => warn!(error = %e, "cannot renew the Lease"),
                    }
                    if last_renewed.elapsed() >= deadline {
                        break true;
                    }
                }
            }
        };
        metrics.leader.set(0);
        if lost {
            warn!(identity = %cfg.identity, "lost the Lease; stopped reconciling");
        } else {
            // The controller only ends when its watches end; try again after a pause.
            warn!("controller stopped; restarting");
            sleep(Duration::from_secs(1)).await;
        }
    }
}
