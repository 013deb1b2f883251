//! Pure decisions of the workload controllers (table-tested).

use std::cmp::Ordering;

/// Resolves an int-or-percent (`2`, `"25%"`) against `total`.
pub fn int_or_percent(
    v: Option<&serde_json::Value>,
    total: i64,
    round_up: bool,
    default: i64,
) -> i64 {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(serde_json::Value::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) if round_up => (p * total + 99) / 100,
                Some(p) => p * total / 100,
                None => s.parse().unwrap_or(default),
            }
        }
        _ => default,
    }
}

/// One ReplicaSet as the rolling update sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RsState {
    pub replicas: i64,
    pub available: i64,
}

/// One step of a RollingUpdate: new replica counts for the new ReplicaSet and
/// each old one (oldest first), following the Deployment controller's rules.
pub fn rolling_step(
    desired: i64,
    max_surge: i64,
    max_unavailable: i64,
    new: RsState,
    olds: &[RsState],
) -> (i64, Vec<i64>) {
    let max_unavailable = if max_surge == 0 && max_unavailable == 0 {
        1
    } else {
        max_unavailable
    };
    let mut olds_out: Vec<i64> = olds.iter().map(|o| o.replicas).collect();
    let total: i64 = new.replicas + olds_out.iter().sum::<i64>();
    // Scale up the new ReplicaSet within the surge budget.
    let mut new_out = new.replicas;
    if new.replicas < desired {
        let allowed = (desired + max_surge - total).max(0);
        new_out = (new.replicas + allowed).min(desired);
    } else if new.replicas > desired {
        new_out = desired;
    }
    // Scale down old ReplicaSets while keeping the minimum available.
    let min_available = desired - max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let all = new.replicas + olds.iter().map(|o| o.replicas).sum::<i64>();
    // Old pods that are not available can always go.
    let mut budget = (all - min_available - new_unavailable).max(0);
    for (i, o) in olds.iter().enumerate() {
        let unavailable = (o.replicas - o.available).max(0);
        olds_out[i] -= unavailable;
    }
    for o in olds_out.iter_mut() {
        let cut = (*o).min(budget);
        *o -= cut;
        budget -= cut;
    }
    // Never drop below what the surge allowance requires.
    (new_out, olds_out)
}

/// A pod as scale-down ranking sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRank {
    pub name: String,
    pub scheduled: bool,
    /// 0 pending, 1 unknown, 2 running.
    pub phase: u8,
    pub ready: bool,
    pub deletion_cost: i64,
    /// Seconds the pod has been ready (larger = older).
    pub ready_for: i64,
    pub restarts: i64,
    pub created: String,
}

/// Orders pods so the first are deleted first (ReplicaSet scale-down order):
/// unscheduled, pending, not ready, lower pod-deletion-cost, more recently
/// ready, more restarts, newer.
pub fn deletion_order(pods: &mut [PodRank]) {
    pods.sort_by(|a, b| {
        a.scheduled
            .cmp(&b.scheduled)
            .then(a.phase.cmp(&b.phase))
            .then(a.ready.cmp(&b.ready))
            .then(a.deletion_cost.cmp(&b.deletion_cost))
            .then(a.ready_for.cmp(&b.ready_for))
            .then(b.restarts.cmp(&a.restarts))
            .then_with(|| match b.created.cmp(&a.created) {
                Ordering::Equal => b.name.cmp(&a.name),
                o => o,
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_or_percent_table() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 4, true, 0), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, false, 0), 2);
        assert_eq!(int_or_percent(None, 3, false, 7), 7);
    }

    fn rs(replicas: i64, available: i64) -> RsState {
        RsState {
            replicas,
            available,
        }
    }

    #[test]
    fn rolling_update_table() {
        // (desired, surge, unavailable, new, olds) -> (new, olds)
        let cases = [
            // Start: surge 1, unavailable 0 -> one new pod, no old removed yet.
            (3, 1, 0, rs(0, 0), vec![rs(3, 3)], (1, vec![3])),
            // New pod available -> one old can go.
            (3, 1, 0, rs(1, 1), vec![rs(3, 3)], (1, vec![2])),
            // Then surge again.
            (3, 1, 0, rs(1, 1), vec![rs(2, 2)], (2, vec![2])),
            // Surge 0 / unavailable 1: remove first.
            (3, 0, 1, rs(0, 0), vec![rs(3, 3)], (0, vec![2])),
            (3, 0, 1, rs(0, 0), vec![rs(2, 2)], (1, vec![2])),
            // Unavailable old pods are removed regardless.
            (2, 1, 0, rs(1, 0), vec![rs(2, 1)], (1, vec![1])),
            // Done.
            (3, 1, 0, rs(3, 3), vec![rs(0, 0)], (3, vec![0])),
            // Both zero behaves as unavailable 1.
            (2, 0, 0, rs(0, 0), vec![rs(2, 2)], (0, vec![1])),
        ];
        for (desired, surge, unav, new, olds, want) in cases {
            assert_eq!(
                rolling_step(desired, surge, unav, new, &olds),
                want,
                "{desired} {surge} {unav} {new:?} {olds:?}"
            );
        }
    }

    #[test]
    fn scale_down_prefers_low_deletion_cost_then_not_ready() {
        let p = |name: &str, ready: bool, cost: i64| PodRank {
            name: name.into(),
            scheduled: true,
            phase: 2,
            ready,
            deletion_cost: cost,
            ready_for: 10,
            restarts: 0,
            created: "2024-01-01T00:00:00Z".into(),
        };
        let mut pods = vec![
            p("a", true, 100),
            p("b", true, -5),
            p("c", false, 1000),
            p("d", true, 0),
        ];
        deletion_order(&mut pods);
        let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "d", "a"]);
    }
}
