//! Operator metrics (Prometheus text on the operator's own port).

use std::time::Instant;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The operator's metrics, in their own registry (so several operators can run in one process,
/// as the leader-election tests do).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounter,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    pub fleets: IntGauge,
    pub leader: IntGauge,
    pub autoscale: AutoscaleMetrics,
}

/// The autoscaler's view per fleet and tier: its decision and the inputs of the last one.
#[derive(Clone)]
pub struct AutoscaleMetrics {
    /// Labels: namespace, fleet, tier.
    pub desired_replicas: IntGaugeVec,
    /// Labels: namespace, fleet, tier.
    pub current_replicas: IntGaugeVec,
    /// Labels: namespace, fleet, input (connections, p99_ms, backlog, bet_rate).
    pub input: GaugeVec,
    /// Labels: tier.
    pub scrape_failures: IntCounterVec,
}

impl AutoscaleMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let desired_replicas = IntGaugeVec::new(
            Opts::new(
                "gamefleet_autoscaler_desired_replicas",
                "Replicas the autoscaler decided on, per fleet and tier",
            ),
            &["namespace", "fleet", "tier"],
        )?;
        let current_replicas = IntGaugeVec::new(
            Opts::new(
                "gamefleet_autoscaler_current_replicas",
                "Replicas the workload had when the autoscaler last decided",
            ),
            &["namespace", "fleet", "tier"],
        )?;
        let input = GaugeVec::new(
            Opts::new(
                "gamefleet_autoscaler_input",
                "Inputs of the last decision: connections, p99_ms, backlog, bet_rate",
            ),
            &["namespace", "fleet", "input"],
        )?;
        let scrape_failures = IntCounterVec::new(
            Opts::new(
                "gamefleet_autoscaler_scrape_failures_total",
                "Pod /metrics scrapes that failed or timed out, by tier; tier prometheus: failed Prometheus queries",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(desired_replicas.clone()))?;
        registry.register(Box::new(current_replicas.clone()))?;
        registry.register(Box::new(input.clone()))?;
        registry.register(Box::new(scrape_failures.clone()))?;
        Ok(Self {
            desired_replicas,
            current_replicas,
            input,
            scrape_failures,
        })
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "gamefleet_operator_reconciles_total",
            "GameFleet reconciliations started",
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "gamefleet_operator_reconcile_failures_total",
                "GameFleet reconciliations that failed, by reason",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "gamefleet_operator_reconcile_duration_seconds",
                "Time one reconciliation took",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let fleets = IntGauge::new(
            "gamefleet_operator_fleets_managed",
            "GameFleets this operator currently manages",
        )?;
        let leader = IntGauge::new(
            "gamefleet_operator_leader",
            "1 while this replica holds the leader Lease (and reconciles)",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(fleets.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        let autoscale = AutoscaleMetrics::new(&registry)?;
        Ok(Self {
            autoscale,
            registry,
            reconciles,
            failures,
            duration,
            fleets,
            leader,
        })
    }

    /// Counts a reconcile and observes its duration when the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    pub fn failed(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed families cannot fail; an empty answer is the fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Drop-based timer: every exit path of a reconcile is measured.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new().unwrap();
        {
            let _t = m.reconcile_started();
        }
        m.failed("InvalidSpec");
        m.fleets.set(3);
        m.leader.set(1);
        m.autoscale
            .desired_replicas
            .with_label_values(&["games", "dice", "gateway"])
            .set(3);
        m.autoscale
            .input
            .with_label_values(&["games", "dice", "connections"])
            .set(1500.0);
        let text = m.render();
        assert!(
            text.contains("gamefleet_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("gamefleet_operator_reconcile_failures_total{reason=\"InvalidSpec\"} 1")
        );
        assert!(text.contains("gamefleet_operator_reconcile_duration_seconds_count 1"));
        assert!(text.contains("gamefleet_operator_fleets_managed 3"));
        assert!(text.contains("gamefleet_operator_leader 1"));
        assert!(text.contains(
            "gamefleet_autoscaler_desired_replicas{fleet=\"dice\",namespace=\"games\",tier=\"gateway\"} 3"
        ));
        assert!(text.contains(
            "gamefleet_autoscaler_input{fleet=\"dice\",input=\"connections\",namespace=\"games\"} 1500"
        ));
    }
}
