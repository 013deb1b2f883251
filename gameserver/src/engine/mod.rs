//! The engine runtime: consumes bets from the bus, runs rounds for active rooms, settles bets
//! through the ledger and publishes frames back through the bus. Game rules live in
//! [`crate::game`]; this module only schedules and does I/O.

mod config;
pub mod frames;
pub mod metrics;
pub mod phase;
mod room;
mod runtime;
mod shared;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bus::EngineBus;
use crate::ledger::Ledger;

pub use config::{EngineConfig, EngineError};
pub use metrics::EngineMetrics;

/// Run the engine until `shutdown` is cancelled, then drain: stop reading bets, close and
/// settle the rounds in progress (with the bets already read), give the rooms up and return.
pub async fn run(
    bus: Arc<dyn EngineBus>,
    ledger: Arc<dyn Ledger>,
    cfg: EngineConfig,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    cfg.validate()?;
    let metrics = EngineMetrics::register(&registry)?;
    runtime::Runtime::new(bus, ledger, cfg, metrics, shutdown)
        .run()
        .await;
    Ok(())
}
