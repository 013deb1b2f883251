//! Engine metrics, registered on the process registry served at `/metrics`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EngineMetrics {
    pub rounds: IntCounter,
    pub round_duration: Histogram,
    pub bets_settled: IntCounterVec,
    pub bets_rejected: IntCounterVec,
    pub ledger_ops: IntCounterVec,
    pub rooms: IntGauge,
    /// Room writes the ledger refused because another engine claimed the room since.
    pub stale_owner: IntCounter,
    /// Room tasks stopped because their lease was lost.
    pub leases_lost: IntCounter,
    /// 1 while bet intake is halted on a ledger that lost its identity.
    pub ledger_halted: IntGauge,
}

impl EngineMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            rounds: IntCounter::new("engine_rounds_total", "Rounds rolled and settled")?,
            round_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "engine_round_duration_seconds",
                    "Round duration from opening to the last settlement",
                )
                .buckets(vec![0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0]),
            )?,
            bets_settled: IntCounterVec::new(
                Opts::new("engine_bets_settled_total", "Bets settled, by outcome"),
                &["outcome"],
            )?,
            bets_rejected: IntCounterVec::new(
                Opts::new("engine_bets_rejected_total", "Bets rejected, by reason"),
                &["reason"],
            )?,
            ledger_ops: IntCounterVec::new(
                Opts::new(
                    "engine_ledger_operations_total",
                    "Ledger operations by operation and result",
                ),
                &["op", "result"],
            )?,
            rooms: IntGauge::new("engine_rooms_active", "Rooms whose rounds this engine runs")?,
            stale_owner: IntCounter::new(
                "engine_stale_owner_total",
                "Room writes the ledger refused (STALE_OWNER): another engine owns the room now",
            )?,
            leases_lost: IntCounter::new(
                "engine_room_leases_lost_total",
                "Rooms stopped at once because their lease was lost or not renewed in time",
            )?,
            ledger_halted: IntGauge::new(
                "engine_ledger_halted",
                "1 while bet intake is halted: the ledger's identity marker is missing or changed",
            )?,
        };
        registry.register(Box::new(m.rounds.clone()))?;
        registry.register(Box::new(m.round_duration.clone()))?;
        registry.register(Box::new(m.bets_settled.clone()))?;
        registry.register(Box::new(m.bets_rejected.clone()))?;
        registry.register(Box::new(m.ledger_ops.clone()))?;
        registry.register(Box::new(m.rooms.clone()))?;
        registry.register(Box::new(m.stale_owner.clone()))?;
        registry.register(Box::new(m.leases_lost.clone()))?;
        registry.register(Box::new(m.ledger_halted.clone()))?;
        Ok(m)
    }

    pub fn ledger<T, E>(&self, op: &str, r: &Result<T, E>) {
        let result = if r.is_ok() { "ok" } else { "error" };
        self.ledger_ops.with_label_values(&[op, result]).inc();
    }
}
