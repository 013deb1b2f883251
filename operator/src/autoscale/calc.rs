//! The HPA's replica calculation for one metric, and the p99 of a latency histogram.
//!
//! Ports of the HPA's `calcPlainMetricReplicas` (per-pod values against a per-pod target, with
//! its treatment of pods without metrics and not-ready pods) and `GetExternalPerPodMetricReplicas`
//! (one fleet-wide value against a per-pod target). Pure.

/// Relative deviation from the target that does not cause scaling (the HPA's default 10 %).
pub const TOLERANCE: f64 = 0.1;

/// One metric over a tier's pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodValues {
    /// Values of ready pods that reported the metric.
    pub values: Vec<f64>,
    /// Ready pods whose metric could not be read (scrape failed, no previous sample for a rate).
    pub missing: usize,
    /// Pods that exist but are not ready yet (not scraped).
    pub unready: usize,
}

/// A replica proposal from one metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Average (or, for a fleet-wide metric, total) value the proposal is based on.
    pub usage: f64,
    /// usage / target, as the HPA reports it.
    pub ratio: f64,
}

fn within_tolerance(ratio: f64) -> bool {
    (1.0 - ratio).abs() <= TOLERANCE
}

fn ceil_replicas(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else if c <= 0.0 {
        0
    } else {
        // In range: checked above.
        c as i32
    }
}

fn average(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Per-pod metric against a per-pod `target`. `None` when no ready pod reported the metric
/// (the HPA treats that as a failed metric: no scaling on it).
pub fn per_pod(current: i32, m: &PodValues, target: f64) -> Option<Proposal> {
    if m.values.is_empty() || target <= 0.0 {
        return None;
    }
    let usage = average(&m.values);
    let ratio = usage / target;
    let proposal = |replicas| Proposal {
        replicas,
        usage,
        ratio,
    };
    let scale_up_with_unready = m.unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && m.missing == 0 {
        if within_tolerance(ratio) {
            return Some(proposal(current));
        }
        return Some(proposal(ceil_replicas(ratio * m.values.len() as f64)));
    }
    // Be conservative: on a scale-down a pod without metrics counts as fully loaded, on a
    // scale-up as empty; not-ready pods count as empty on a scale-up (and are left out otherwise).
    let mut sum: f64 = m.values.iter().sum();
    let mut count = m.values.len() + m.missing;
    if ratio < 1.0 {
        sum += target * m.missing as f64;
    }
    if scale_up_with_unready {
        count += m.unready;
    }
    let new_ratio = sum / count as f64 / target;
    if within_tolerance(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        // Too small a change, or the direction flipped: stay.
        return Some(proposal(current));
    }
    let replicas = ceil_replicas(new_ratio * count as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Some(proposal(current));
    }
    Some(proposal(replicas))
}

/// A fleet-wide `total` against a per-pod `target` (the HPA's External metric with an
/// AverageValue target). `current` is the number of pods now.
pub fn fleet_wide(current: i32, total: f64, target: f64) -> Option<Proposal> {
    if target <= 0.0 {
        return None;
    }
    let ratio = if current > 0 {
        total / (target * f64::from(current))
    } else {
        f64::INFINITY
    };
    let replicas = if within_tolerance(ratio) {
        current
    } else {
        ceil_replicas(total / target)
    };
    Some(Proposal {
        replicas,
        usage: total,
        ratio,
    })
}

/// Cumulative histogram buckets: (upper bound, cumulative count), ascending, `+Inf` last.
pub type Buckets = Vec<(f64, f64)>;

/// Bucket-wise difference `now - before` (counters restart from zero when a pod restarts: then
/// the current counts are the increase).
pub fn delta(now: &Buckets, before: Option<&Buckets>) -> Buckets {
    let Some(before) = before else {
        return now.clone();
    };
    let same_bounds = before.len() == now.len() && before.iter().zip(now).all(|(a, b)| a.0 == b.0);
    let reset = before.iter().zip(now).any(|(a, b)| b.1 < a.1);
    if !same_bounds || reset {
        return now.clone();
    }
    now.iter()
        .zip(before)
        .map(|(n, b)| (n.0, n.1 - b.1))
        .collect()
}

/// Adds bucket counts of several pods (same bounds; others are skipped).
pub fn sum(all: &[Buckets]) -> Option<Buckets> {
    let first = all.first()?;
    let mut total = first.clone();
    for b in &all[1..] {
        if b.len() != total.len() || b.iter().zip(&total).any(|(x, y)| x.0 != y.0) {
            continue;
        }
        for (t, x) in total.iter_mut().zip(b) {
            t.1 += x.1;
        }
    }
    Some(total)
}

/// Quantile `q` of a cumulative histogram with linear interpolation inside the bucket, as
/// Prometheus' `histogram_quantile`: observations in the `+Inf` bucket report the highest finite
/// bound. `None` without observations.
pub fn quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(values: &[f64], missing: usize, unready: usize) -> PodValues {
        PodValues {
            values: values.to_vec(),
            missing,
            unready,
        }
    }

    #[test]
    fn per_pod_table() {
        // (current, values, missing, unready, target, expected replicas)
        type Case = (i32, &'static [f64], usize, usize, f64, Option<i32>);
        let cases: &[Case] = &[
            // The formula: 1,500 connections on one pod, 500 per pod → 3.
            (1, &[1500.0], 0, 0, 500.0, Some(3)),
            // HPA docs: ceil(current × current/desired metric) — 200 m vs 100 m target → double.
            (2, &[200.0, 200.0], 0, 0, 100.0, Some(4)),
            // 50 vs 100 → halve.
            (4, &[50.0, 50.0, 50.0, 50.0], 0, 0, 100.0, Some(2)),
            // Within the 10 % tolerance: stay, even though ceil would give 5.
            (4, &[105.0, 105.0, 105.0, 105.0], 0, 0, 100.0, Some(4)),
            (4, &[91.0, 91.0, 91.0, 91.0], 0, 0, 100.0, Some(4)),
            // Just outside the tolerance.
            (4, &[112.0, 112.0, 112.0, 112.0], 0, 0, 100.0, Some(5)),
            // No metrics at all: no proposal (never scale on nothing).
            (3, &[], 3, 0, 100.0, None),
            // Scale-down with a missing pod: it counts as at target, which damps the shrink:
            // (10 + 10 + 100) / 3 / 100 = 0.4 → ceil(1.2) = 2 (instead of 1).
            (3, &[10.0, 10.0], 1, 0, 100.0, Some(2)),
            // The missing pod, counted at target, keeps the fleet where it is: (180 + 100) / 3 → 3.
            (3, &[90.0, 20.0], 1, 0, 100.0, Some(3)),
            // Scale-up with a missing pod: it counts as empty: (300 + 0) / 2 = 1.5 → 3.
            (2, &[300.0], 1, 0, 100.0, Some(3)),
            // Scale-up with a not-ready pod: it counts as empty: (400 + 0) / 2 / 100 = 2 → 4.
            (2, &[400.0], 0, 1, 100.0, Some(4)),
            // Scale-up whose unready pod brings the ratio into tolerance: stay.
            (2, &[210.0], 0, 1, 100.0, Some(2)),
            // Not-ready pods do not hold back a scale-down (they are left out).
            (3, &[10.0], 0, 2, 100.0, Some(1)),
        ];
        for (i, (cur, values, missing, unready, target, want)) in cases.iter().enumerate() {
            let got = per_pod(*cur, &pods(values, *missing, *unready), *target).map(|p| p.replicas);
            assert_eq!(got, *want, "case {i}");
        }
    }

    #[test]
    fn fleet_wide_table() {
        // (current, total, target, expected)
        let cases: &[(i32, f64, f64, i32)] = &[
            (1, 0.0, 500.0, 0),
            (1, 2400.0, 500.0, 5),
            (5, 2400.0, 500.0, 5), // ratio 0.96: within tolerance
            (2, 1050.0, 500.0, 2), // ratio 1.05
            (2, 1200.0, 500.0, 3),
            (0, 10.0, 500.0, 1),
        ];
        for (i, (cur, total, target, want)) in cases.iter().enumerate() {
            assert_eq!(
                fleet_wide(*cur, *total, *target).map(|p| p.replicas),
                Some(*want),
                "case {i}"
            );
        }
        assert_eq!(fleet_wide(1, 10.0, 0.0), None);
    }

    fn b(counts: &[f64]) -> Buckets {
        let bounds = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, f64::INFINITY];
        bounds.iter().copied().zip(counts.iter().copied()).collect()
    }

    #[test]
    fn quantile_interpolates_like_histogram_quantile() {
        // 100 observations: 90 ≤ 5 ms, 100 ≤ 250 ms → p99 is at rank 99: 9/10 of the way
        // through the (100, 250] bucket holding 10.
        let h = b(&[90.0, 90.0, 90.0, 90.0, 90.0, 100.0, 100.0, 100.0]);
        let p99 = quantile(0.99, &h).unwrap();
        assert!((p99 - 235.0).abs() < 1e-9, "{p99}");
        // p50 inside the first bucket: 0 + 5 × 50/90.
        let p50 = quantile(0.5, &h).unwrap();
        assert!((p50 - 5.0 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        // Everything above the last finite bound: the last finite bound.
        let h = b(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0]);
        assert_eq!(quantile(0.99, &h), Some(500.0));
        // No observations.
        assert_eq!(quantile(0.99, &b(&[0.0; 8])), None);
        assert_eq!(quantile(0.99, &vec![]), None);
    }

    #[test]
    fn deltas_between_scrapes_and_counter_resets() {
        let before = b(&[10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]);
        let now = b(&[10.0, 10.0, 10.0, 10.0, 10.0, 15.0, 20.0, 20.0]);
        let d = delta(&now, Some(&before));
        assert_eq!(d, b(&[0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 10.0, 10.0]));
        // Without a previous scrape: cumulative.
        assert_eq!(delta(&now, None), now);
        // A restarted pod (counts went down): its counts are the increase.
        let restarted = b(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(delta(&restarted, Some(&before)), restarted);
        // Sum over pods.
        let s = sum(&[d.clone(), d]).unwrap();
        assert_eq!(s.last().unwrap().1, 20.0);
    }
}
