//! The scaling decision for a fleet: per tier, metric recommendations (HPA replica calculation),
//! combined like the HPA combines several metrics (the largest wins), then stabilized,
//! rate-limited and bounded by [`History::normalize`]. Pure: inputs and time are parameters.

use std::time::Instant;

use super::behavior::{Behavior, History, Limit};
use super::calc::{self, Buckets, PodValues, Proposal};

/// Latency observations needed in a sync interval before p99 is trusted as a scaling signal
/// (a handful of slow frames in a quiet fleet must not add pods).
pub const MIN_LATENCY_SAMPLES: f64 = 50.0;

/// Bounds, behaviour and the replica count the workload has now.
#[derive(Clone, Debug, PartialEq)]
pub struct TierInput {
    pub current: i32,
    pub min: i32,
    pub max: i32,
    pub behavior: Behavior,
}

/// What the gateways reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayLoad {
    /// `ws_active_connections` per ready gateway pod.
    pub connections: PodValues,
    /// `ws_message_latency_ms` buckets added over the pods, since the previous scrape.
    pub latency: Option<Buckets>,
}

/// What the engines reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineLoad {
    /// Settled bets per second per ready engine pod (needs two scrapes).
    pub bet_rate: PodValues,
    /// `bet_stream_backlog` (fleet-wide; the largest value any engine reported).
    pub backlog: Option<f64>,
}

/// Targets from the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Targets {
    /// `connectionsPerPod × targetUtilization`.
    pub connections_per_pod: f64,
    pub p99_ms: f64,
    pub backlog_per_pod: f64,
    pub bets_per_second_per_pod: f64,
}

/// The decision for one tier.
#[derive(Clone, Debug, PartialEq)]
pub struct TierDecision {
    pub current: i32,
    /// Replicas to run.
    pub desired: i32,
    /// The metrics' recommendation before stabilization, rate limits and bounds (`None` when no
    /// metric could be used).
    pub recommended: Option<i32>,
    /// Human-readable cause ("connections 48 210 > 40 000 capacity").
    pub reason: String,
    /// What held the count back, and the count the metrics wanted.
    pub limit: Option<(Limit, i32)>,
}

/// Observed load, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observed {
    pub total_connections: Option<f64>,
    pub p99_ms: Option<f64>,
    pub backlog: Option<f64>,
    pub bet_rate: Option<f64>,
}

/// One metric's proposal with the words that explain it.
#[derive(Clone, Debug, PartialEq)]
struct Signal {
    replicas: i32,
    why: String,
}

/// Digits in groups of three, separated by spaces ("48 210").
pub fn grouped(n: f64) -> String {
    let n = n.round();
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn compare(p: &Proposal, current: i32) -> &'static str {
    if p.replicas > current {
        ">"
    } else if p.replicas < current {
        "<"
    } else {
        "≈"
    }
}

fn total_signal(
    name: &str,
    unit: &str,
    p: &Proposal,
    total: f64,
    per_pod: f64,
    current: i32,
) -> Signal {
    Signal {
        replicas: p.replicas,
        why: format!(
            "{name} {}{unit} {} {}{unit} capacity",
            grouped(total),
            compare(p, current),
            grouped(per_pod * f64::from(current.max(0)))
        ),
    }
}

/// The p99 signal: only ever raises the count (a fast fleet is no reason to shrink it).
fn latency_signal(
    current: i32,
    ready: usize,
    buckets: Option<&Buckets>,
    target: f64,
) -> (Option<f64>, Option<Signal>) {
    let Some(b) = buckets else {
        return (None, None);
    };
    let samples = b.last().map(|x| x.1).unwrap_or(0.0);
    let p99 = calc::quantile(0.99, b);
    let Some(p99v) = p99 else {
        return (None, None);
    };
    if samples < MIN_LATENCY_SAMPLES || target <= 0.0 || p99v <= target * (1.0 + calc::TOLERANCE) {
        return (p99, None);
    }
    let ratio = p99v / target;
    let base = i32::try_from(ready).unwrap_or(i32::MAX).max(current).max(1);
    let replicas = (f64::from(base) * ratio).ceil().min(f64::from(i32::MAX)) as i32;
    (
        p99,
        Some(Signal {
            replicas: replicas.max(current),
            why: format!("p99 {} ms > {} ms target", grouped(p99v), grouped(target)),
        }),
    )
}

/// Combines signals as the HPA does: the largest proposal wins; when a required metric is
/// missing, only a scale-up is allowed (never scale down on missing data).
fn combine(current: i32, signals: &[Signal], any_missing: bool) -> Option<Signal> {
    let best = signals.iter().max_by_key(|s| s.replicas)?;
    if any_missing && best.replicas < current {
        return None;
    }
    Some(best.clone())
}

fn finish(
    now: Instant,
    history: &mut History,
    input: &TierInput,
    signal: Option<Signal>,
    missing_note: &str,
) -> TierDecision {
    let current = input.current;
    // As the HPA: outside the bounds, go straight to the nearest bound.
    if current > input.max || current < input.min {
        let desired = current.clamp(input.min, input.max);
        let bound = if current > input.max {
            "maxReplicas"
        } else {
            "minReplicas"
        };
        history.record_scale(now, current, desired, &input.behavior);
        return TierDecision {
            current,
            desired,
            recommended: signal.as_ref().map(|s| s.replicas),
            reason: format!("{current} replicas outside {bound} {desired}"),
            limit: None,
        };
    }
    let Some(signal) = signal else {
        return TierDecision {
            current,
            desired: current,
            recommended: None,
            reason: missing_note.to_string(),
            limit: None,
        };
    };
    let n = history.normalize(
        now,
        current,
        signal.replicas,
        input.min,
        input.max,
        &input.behavior,
    );
    history.record_scale(now, current, n.replicas, &input.behavior);
    let mut reason = signal.why.clone();
    if n.stabilized != signal.replicas {
        reason.push_str(&format!(
            "; stabilized at {} (recommendations of the last {} s)",
            n.stabilized,
            if signal.replicas > current {
                input.behavior.up.window.as_secs()
            } else {
                input.behavior.down.window.as_secs()
            }
        ));
    }
    if let Some(l) = n.limit {
        reason.push_str(&format!("; held at {} by {}", n.replicas, l.bound()));
    }
    TierDecision {
        current,
        desired: n.replicas,
        recommended: Some(signal.replicas),
        reason,
        limit: n.limit.map(|l| (l, n.stabilized)),
    }
}

/// Gateways: connections against `connectionsPerPod × targetUtilization`, raised when p99 breaks
/// its target.
pub fn gateway(
    now: Instant,
    history: &mut History,
    input: &TierInput,
    load: &GatewayLoad,
    targets: &Targets,
) -> (TierDecision, Observed) {
    let current = input.current;
    let conns = calc::per_pod(current, &load.connections, targets.connections_per_pod);
    let total: f64 = load.connections.values.iter().sum();
    let mut signals = vec![];
    if let Some(p) = &conns {
        signals.push(total_signal(
            "connections",
            "",
            p,
            total,
            targets.connections_per_pod,
            current,
        ));
    }
    let (p99, lat) = latency_signal(
        current,
        load.connections.values.len(),
        load.latency.as_ref(),
        targets.p99_ms,
    );
    signals.extend(lat);
    // Pods without metrics are handled inside the calculation; a metric with no value at all
    // blocks any scale-down.
    let missing = conns.is_none();
    let observed = Observed {
        total_connections: (!load.connections.values.is_empty()).then_some(total),
        p99_ms: p99,
        ..Observed::default()
    };
    let signal = combine(current, &signals, missing);
    let d = finish(
        now,
        history,
        input,
        signal,
        "no connection metrics from ready gateways; keeping the current count",
    );
    (d, observed)
}

/// Engines: the fleet-wide bet backlog and the settled-bet rate per engine pod.
pub fn engine(
    now: Instant,
    history: &mut History,
    input: &TierInput,
    load: &EngineLoad,
    targets: &Targets,
) -> (TierDecision, Observed) {
    let current = input.current;
    let mut signals = vec![];
    let backlog = load
        .backlog
        .and_then(|b| calc::fleet_wide(current, b, targets.backlog_per_pod).map(|p| (b, p)));
    if let Some((b, p)) = &backlog {
        signals.push(total_signal(
            "backlog",
            "",
            p,
            *b,
            targets.backlog_per_pod,
            current,
        ));
    }
    let rate = calc::per_pod(current, &load.bet_rate, targets.bets_per_second_per_pod);
    let total_rate: f64 = load.bet_rate.values.iter().sum();
    if let Some(p) = &rate {
        signals.push(total_signal(
            "bet rate",
            "/s",
            p,
            total_rate,
            targets.bets_per_second_per_pod,
            current,
        ));
    }
    let missing = backlog.is_none() || rate.is_none();
    let observed = Observed {
        backlog: load.backlog,
        bet_rate: (!load.bet_rate.values.is_empty()).then_some(total_rate),
        ..Observed::default()
    };
    let signal = combine(current, &signals, missing);
    let d = finish(
        now,
        history,
        input,
        signal,
        "no backlog or bet-rate metrics from ready engines; keeping the current count",
    );
    (d, observed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crd::{ScalingBehavior, ScalingRules};

    fn input(current: i32, min: i32, max: i32, down_window: i32) -> TierInput {
        TierInput {
            current,
            min,
            max,
            behavior: Behavior::from_spec(&ScalingBehavior {
                scale_up: None,
                scale_down: Some(ScalingRules {
                    stabilization_window_seconds: Some(down_window),
                    ..Default::default()
                }),
            }),
        }
    }

    fn targets() -> Targets {
        Targets {
            connections_per_pod: 500.0,
            p99_ms: 100.0,
            backlog_per_pod: 1000.0,
            bets_per_second_per_pod: 2000.0,
        }
    }

    fn conns(values: &[f64], missing: usize, unready: usize) -> GatewayLoad {
        GatewayLoad {
            connections: PodValues {
                values: values.to_vec(),
                missing,
                unready,
            },
            latency: None,
        }
    }

    /// Cumulative buckets (5, 10, 25, 50, 100, 250, 500, +Inf) with `fast` observations ≤ 5 ms
    /// and `slow` in (100, 250].
    fn latency(fast: f64, slow: f64) -> Buckets {
        let t = fast + slow;
        vec![
            (5.0, fast),
            (10.0, fast),
            (25.0, fast),
            (50.0, fast),
            (100.0, fast),
            (250.0, t),
            (500.0, t),
            (f64::INFINITY, t),
        ]
    }

    #[test]
    fn grouped_numbers() {
        assert_eq!(grouped(48210.0), "48 210");
        assert_eq!(grouped(40000.0), "40 000");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1234567.0), "1 234 567");
        assert_eq!(grouped(0.0), "0");
    }

    #[test]
    fn gateway_table() {
        // (current, min, max, per-pod connections, missing, unready, latency, desired, reason)
        type Case = (
            i32,
            i32,
            i32,
            &'static [f64],
            usize,
            usize,
            Option<Buckets>,
            i32,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            // The e2e scenario: 1,500 on one pod at 500 per pod.
            (
                1,
                1,
                4,
                &[1500.0],
                0,
                0,
                None,
                3,
                "connections 1 500 > 500 capacity",
            ),
            // Bounded at max: ScalingLimited.
            (
                2,
                1,
                4,
                &[2000.0, 2000.0],
                0,
                0,
                None,
                4,
                "connections 4 000 > 1 000 capacity; held at 4 by maxReplicas",
            ),
            // Within tolerance: stay.
            (
                2,
                1,
                4,
                &[520.0, 530.0],
                0,
                0,
                None,
                2,
                "connections 1 050 ≈ 1 000 capacity",
            ),
            // Scale down (window 0 in this table).
            (
                3,
                1,
                4,
                &[100.0, 100.0, 100.0],
                0,
                0,
                None,
                1,
                "connections 300 < 1 500 capacity",
            ),
            // A missing pod never lets the fleet shrink on what is left.
            (
                3,
                1,
                4,
                &[10.0, 10.0],
                1,
                0,
                None,
                2,
                "connections 20 < 1 500 capacity",
            ),
            (
                3,
                1,
                4,
                &[],
                3,
                0,
                None,
                3,
                "no connection metrics from ready gateways; keeping the current count",
            ),
            // Latency breaks the SLO: p99 235 ms vs 100 ms → ceil(2 × 2.35) = 5, held at max 4.
            (
                2,
                1,
                4,
                &[400.0, 400.0],
                0,
                0,
                Some(latency(90.0, 10.0)),
                4,
                "p99 235 ms > 100 ms target; held at 4 by maxReplicas",
            ),
            (
                2,
                1,
                10,
                &[400.0, 400.0],
                0,
                0,
                Some(latency(90.0, 10.0)),
                5,
                "p99 235 ms > 100 ms target",
            ),
            // Too few samples: latency ignored.
            (
                2,
                1,
                10,
                &[500.0, 500.0],
                0,
                0,
                Some(latency(9.0, 1.0)),
                2,
                "connections 1 000 ≈ 1 000 capacity",
            ),
            // Latency fine: never a reason to shrink, connections decide.
            (
                2,
                1,
                10,
                &[100.0, 100.0],
                0,
                0,
                Some(latency(100.0, 0.0)),
                1,
                "connections 200 < 1 000 capacity",
            ),
            // Latency raises the count even when connection metrics are missing.
            (
                2,
                1,
                10,
                &[],
                2,
                0,
                Some(latency(90.0, 10.0)),
                5,
                "p99 235 ms > 100 ms target",
            ),
            // Outside the bounds (bounds edited): straight to the bound.
            (
                7,
                1,
                4,
                &[10.0; 7],
                0,
                0,
                None,
                4,
                "7 replicas outside maxReplicas 4",
            ),
        ];
        for (i, (cur, min, max, values, missing, unready, lat, want, reason)) in
            cases.into_iter().enumerate()
        {
            let mut h = History::default();
            let mut load = conns(values, missing, unready);
            load.latency = lat;
            let (d, _) = gateway(
                Instant::now(),
                &mut h,
                &input(cur, min, max, 0),
                &load,
                &targets(),
            );
            assert_eq!(d.desired, want, "case {i}: {}", d.reason);
            assert_eq!(d.reason, reason, "case {i}");
        }
    }

    /// The issue's example: 10 pods at 5,000 × 80 % = 4,000 each, 48,210 connections.
    #[test]
    fn gateway_reason_reads_like_the_issue() {
        let mut h = History::default();
        let t = Targets {
            connections_per_pod: 4000.0,
            ..targets()
        };
        let load = conns(&[4821.0; 10], 0, 0);
        let (d, _) = gateway(Instant::now(), &mut h, &input(10, 1, 20, 0), &load, &t);
        assert_eq!(d.desired, 13);
        assert_eq!(d.reason, "connections 48 210 > 40 000 capacity");
        assert_eq!(d.limit, None);
    }

    #[test]
    fn gateway_limit_is_reported_with_the_wanted_count() {
        let mut h = History::default();
        let (d, obs) = gateway(
            Instant::now(),
            &mut h,
            &input(2, 1, 4, 0),
            &conns(&[2000.0, 2000.0], 0, 0),
            &targets(),
        );
        assert_eq!(d.limit, Some((Limit::TooManyReplicas, 8)));
        assert_eq!(d.recommended, Some(8));
        assert_eq!(obs.total_connections, Some(4000.0));
    }

    #[test]
    fn gateway_scale_down_waits_for_the_window() {
        let t0 = Instant::now();
        let mut h = History::default();
        let at = |s| t0 + Duration::from_secs(s);
        let i = input(3, 1, 4, 10);
        let busy = conns(&[500.0, 500.0, 500.0], 0, 0);
        let quiet = conns(&[200.0, 100.0, 0.0], 0, 0);
        assert_eq!(gateway(at(0), &mut h, &i, &busy, &targets()).0.desired, 3);
        let d = gateway(at(5), &mut h, &i, &quiet, &targets()).0;
        assert_eq!(d.desired, 3);
        assert!(d.reason.contains("stabilized at 3"), "{}", d.reason);
        assert_eq!(gateway(at(11), &mut h, &i, &quiet, &targets()).0.desired, 1);
    }

    #[test]
    fn engine_table() {
        // (current, backlog, per-pod rates, missing rates, desired, reason)
        type Case = (i32, Option<f64>, &'static [f64], usize, i32, &'static str);
        let cases: Vec<Case> = vec![
            (
                1,
                Some(2400.0),
                &[1000.0],
                0,
                3,
                "backlog 2 400 > 1 000 capacity",
            ),
            (
                2,
                Some(0.0),
                &[3000.0, 3000.0],
                0,
                3,
                "bet rate 6 000/s > 4 000/s capacity",
            ),
            (
                3,
                Some(0.0),
                &[100.0, 100.0, 100.0],
                0,
                1,
                "bet rate 300/s < 6 000/s capacity",
            ),
            // First scrape: no rate yet → no scale-down on the backlog alone.
            (
                3,
                Some(0.0),
                &[],
                3,
                3,
                "no backlog or bet-rate metrics from ready engines; keeping the current count",
            ),
            // …but a scale-up on the backlog is allowed.
            (1, Some(2400.0), &[], 1, 3, "backlog 2 400 > 1 000 capacity"),
            // No engine answered.
            (
                2,
                None,
                &[],
                2,
                2,
                "no backlog or bet-rate metrics from ready engines; keeping the current count",
            ),
        ];
        for (i, (cur, backlog, rates, missing, want, reason)) in cases.into_iter().enumerate() {
            let mut h = History::default();
            let load = EngineLoad {
                bet_rate: PodValues {
                    values: rates.to_vec(),
                    missing,
                    unready: 0,
                },
                backlog,
            };
            let (d, _) = engine(
                Instant::now(),
                &mut h,
                &input(cur, 1, 5, 0),
                &load,
                &targets(),
            );
            assert_eq!(d.desired, want, "case {i}: {}", d.reason);
            assert_eq!(d.reason, reason, "case {i}");
        }
    }
}
