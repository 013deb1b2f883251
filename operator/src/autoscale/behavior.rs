//! HorizontalPodAutoscaler v2 `behavior`: stabilization windows and rate-limit policies.
//!
//! A faithful port of the HPA controller's `normalizeDesiredReplicasWithBehaviors`: every
//! unstabilized recommendation is kept with its time; scaling up uses the lowest recommendation
//! of the scale-up window, scaling down the highest of the scale-down window. Every replica change
//! is kept as a scale event; a policy allows, per `periodSeconds`, a change relative to the replica
//! count at the start of the period. Pure: time is a parameter.

use std::time::{Duration, Instant};

use crate::crd::{ScalingPolicyType, ScalingRules, SelectPolicy};

/// Default scale-down stabilization window (the HPA's 300 s).
pub const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);

/// One rate-limit policy, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub kind: ScalingPolicyType,
    pub value: i32,
    pub period: Duration,
}

/// The rules for one direction with the HPA defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub window: Duration,
    pub select: SelectPolicy,
    pub policies: Vec<Policy>,
}

fn policy(kind: ScalingPolicyType, value: i32, secs: u64) -> Policy {
    Policy {
        kind,
        value,
        period: Duration::from_secs(secs),
    }
}

fn resolve(r: Option<&ScalingRules>, window: Duration, defaults: Vec<Policy>) -> Rules {
    let Some(r) = r else {
        return Rules {
            window,
            select: SelectPolicy::Max,
            policies: defaults,
        };
    };
    Rules {
        window: r
            .stabilization_window_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(window),
        select: r.select_policy.unwrap_or(SelectPolicy::Max),
        policies: if r.policies.is_empty() {
            defaults
        } else {
            r.policies
                .iter()
                .map(|p| Policy {
                    kind: p.type_,
                    value: p.value,
                    period: Duration::from_secs(u64::try_from(p.period_seconds).unwrap_or(0)),
                })
                .collect()
        },
    }
}

impl Rules {
    /// Scale-up rules; unset fields take the HPA defaults (window 0 s, select Max,
    /// 100 % or 4 pods per 15 s, whichever is more).
    pub fn scale_up(r: Option<&ScalingRules>) -> Self {
        resolve(
            r,
            Duration::ZERO,
            vec![
                policy(ScalingPolicyType::Percent, 100, 15),
                policy(ScalingPolicyType::Pods, 4, 15),
            ],
        )
    }

    /// Scale-down rules; unset fields take the HPA defaults (window 300 s, select Max,
    /// 100 % per 15 s).
    pub fn scale_down(r: Option<&ScalingRules>) -> Self {
        resolve(
            r,
            DEFAULT_SCALE_DOWN_WINDOW,
            vec![policy(ScalingPolicyType::Percent, 100, 15)],
        )
    }

    fn longest_period(&self) -> Duration {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Behavior {
    pub fn from_spec(b: &crate::crd::ScalingBehavior) -> Self {
        Self {
            up: Rules::scale_up(b.scale_up.as_ref()),
            down: Rules::scale_down(b.scale_down.as_ref()),
        }
    }
}

/// Why the final count differs from the stabilized recommendation (the HPA's `ScalingLimited`
/// reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Held at `maxReplicas`.
    TooManyReplicas,
    /// Held at `minReplicas`.
    TooFewReplicas,
    /// Held back by the scale-up policies.
    ScaleUpLimit,
    /// Held back by the scale-down policies.
    ScaleDownLimit,
}

impl Limit {
    /// The bound's name as the `ScalingLimited` message shows it.
    pub fn bound(self) -> &'static str {
        match self {
            Limit::TooManyReplicas => "maxReplicas",
            Limit::TooFewReplicas => "minReplicas",
            Limit::ScaleUpLimit => "scaleUp policies",
            Limit::ScaleDownLimit => "scaleDown policies",
        }
    }
}

/// Result of [`History::normalize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// Replicas to run.
    pub replicas: i32,
    /// The recommendation after stabilization, before rate limits and bounds.
    pub stabilized: i32,
    /// Set when rate limits or bounds changed the stabilized recommendation.
    pub limit: Option<Limit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamped {
    at: Instant,
    value: i32,
}

/// What one tier's autoscaler remembers: recent recommendations and scale events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    recommendations: Vec<Stamped>,
    up_events: Vec<Stamped>,
    down_events: Vec<Stamped>,
}

/// `t` is strictly inside the window ending at `now` (the HPA's `timestamp.After(cutoff)`).
fn within(t: Instant, now: Instant, window: Duration) -> bool {
    match now.checked_sub(window) {
        Some(cutoff) => t > cutoff,
        // The window reaches before the clock's origin: everything is inside.
        None => true,
    }
}

fn change_in_period(events: &[Stamped], now: Instant, period: Duration) -> i32 {
    events
        .iter()
        .filter(|e| within(e.at, now, period))
        .map(|e| e.value)
        .sum()
}

impl History {
    /// Stabilizes `desired` (the metric recommendation), applies the rate-limit policies and the
    /// bounds, and records `desired` for later stabilization. `current` is the replica count the
    /// workload has now.
    pub fn normalize(
        &mut self,
        now: Instant,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        behavior: &Behavior,
    ) -> Normalized {
        let stabilized = self.stabilize(now, current, desired, behavior);
        let (replicas, limit) = self.rate_limit(now, current, stabilized, min, max, behavior);
        Normalized {
            replicas,
            stabilized,
            limit: (replicas != stabilized).then_some(limit).flatten(),
        }
    }

    fn stabilize(&mut self, now: Instant, current: i32, desired: i32, b: &Behavior) -> i32 {
        let mut up = desired;
        let mut down = desired;
        for r in &self.recommendations {
            if within(r.at, now, b.up.window) {
                up = up.min(r.value);
            }
            if within(r.at, now, b.down.window) {
                down = down.max(r.value);
            }
        }
        // Samples outside both windows can never matter again.
        let keep = b.up.window.max(b.down.window);
        self.recommendations.retain(|r| within(r.at, now, keep));
        self.recommendations.push(Stamped {
            at: now,
            value: desired,
        });
        current.max(up).min(down)
    }

    fn rate_limit(
        &self,
        now: Instant,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        b: &Behavior,
    ) -> (i32, Option<Limit>) {
        if desired > current {
            let limit = self.scale_up_limit(now, current, &b.up).max(current);
            let (allowed, why) = if max > limit {
                (limit, Limit::ScaleUpLimit)
            } else {
                (max, Limit::TooManyReplicas)
            };
            if desired > allowed {
                return (allowed, Some(why));
            }
        } else if desired < current {
            let limit = self.scale_down_limit(now, current, &b.down).min(current);
            let (allowed, why) = if min < limit {
                (limit, Limit::ScaleDownLimit)
            } else {
                (min, Limit::TooFewReplicas)
            };
            if desired < allowed {
                return (allowed, Some(why));
            }
        }
        (desired, None)
    }

    fn period_start(&self, now: Instant, current: i32, period: Duration) -> i32 {
        current - change_in_period(&self.up_events, now, period)
            + change_in_period(&self.down_events, now, period)
    }

    fn scale_up_limit(&self, now: Instant, current: i32, rules: &Rules) -> i32 {
        let pick: fn(i32, i32) -> i32 = match rules.select {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Min => std::cmp::min,
            SelectPolicy::Max => std::cmp::max,
        };
        let mut result: Option<i32> = None;
        for p in &rules.policies {
            let start = self.period_start(now, current, p.period);
            let proposed = match p.kind {
                ScalingPolicyType::Pods => start.saturating_add(p.value),
                // Rounded up so a small fleet can always grow.
                ScalingPolicyType::Percent => {
                    let grown = i64::from(start) * (100 + i64::from(p.value));
                    i32::try_from(div_ceil(grown, 100)).unwrap_or(i32::MAX)
                }
            };
            result = Some(result.map_or(proposed, |r| pick(r, proposed)));
        }
        result.unwrap_or(current)
    }

    fn scale_down_limit(&self, now: Instant, current: i32, rules: &Rules) -> i32 {
        // For scale-down the smallest change is the largest count.
        let pick: fn(i32, i32) -> i32 = match rules.select {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Min => std::cmp::max,
            SelectPolicy::Max => std::cmp::min,
        };
        let mut result: Option<i32> = None;
        for p in &rules.policies {
            let start = self.period_start(now, current, p.period);
            let proposed = match p.kind {
                ScalingPolicyType::Pods => start.saturating_sub(p.value),
                // Truncated, as the HPA does.
                ScalingPolicyType::Percent => {
                    let kept = i64::from(start) * (100 - i64::from(p.value).min(100));
                    i32::try_from(kept / 100).unwrap_or(0)
                }
            };
            result = Some(result.map_or(proposed, |r| pick(r, proposed)));
        }
        result.unwrap_or(current)
    }

    /// Records a replica change that was carried out (the HPA's `storeScaleEvent`).
    pub fn record_scale(&mut self, now: Instant, from: i32, to: i32, behavior: &Behavior) {
        let (events, rules, change) = if to > from {
            (&mut self.up_events, &behavior.up, to - from)
        } else if to < from {
            (&mut self.down_events, &behavior.down, from - to)
        } else {
            return;
        };
        let keep = rules.longest_period();
        events.retain(|e| within(e.at, now, keep));
        events.push(Stamped {
            at: now,
            value: change,
        });
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ScalingBehavior, ScalingPolicy};

    fn rules(
        window: Option<i32>,
        select: Option<SelectPolicy>,
        p: &[(char, i32, i32)],
    ) -> ScalingRules {
        ScalingRules {
            stabilization_window_seconds: window,
            select_policy: select,
            policies: p
                .iter()
                .map(|&(k, value, period_seconds)| ScalingPolicy {
                    type_: if k == 'p' {
                        ScalingPolicyType::Pods
                    } else {
                        ScalingPolicyType::Percent
                    },
                    value,
                    period_seconds,
                })
                .collect(),
        }
    }

    fn behavior(up: Option<ScalingRules>, down: Option<ScalingRules>) -> Behavior {
        Behavior::from_spec(&ScalingBehavior {
            scale_up: up,
            scale_down: down,
        })
    }

    /// Runs a sequence of (seconds, current, desired) through one history, carrying out each
    /// decision, and returns the decided counts.
    fn run(b: &Behavior, min: i32, max: i32, steps: &[(u64, i32, i32)]) -> Vec<Normalized> {
        let t0 = Instant::now();
        let mut h = History::default();
        steps
            .iter()
            .map(|&(s, current, desired)| {
                let now = t0 + Duration::from_secs(s);
                let n = h.normalize(now, current, desired, min, max, b);
                h.record_scale(now, current, n.replicas, b);
                n
            })
            .collect()
    }

    #[test]
    fn defaults_are_the_hpa_defaults() {
        let b = behavior(None, None);
        assert_eq!(b.up.window, Duration::ZERO);
        assert_eq!(b.down.window, Duration::from_secs(300));
        assert_eq!(b.up.select, SelectPolicy::Max);
        assert_eq!(
            b.up.policies,
            vec![
                policy(ScalingPolicyType::Percent, 100, 15),
                policy(ScalingPolicyType::Pods, 4, 15)
            ]
        );
        assert_eq!(
            b.down.policies,
            vec![policy(ScalingPolicyType::Percent, 100, 15)]
        );
        // Only the window given: policies and select keep their defaults.
        let b = behavior(None, Some(rules(Some(60), None, &[])));
        assert_eq!(b.down.window, Duration::from_secs(60));
        assert_eq!(b.down.policies.len(), 1);
    }

    /// HPA docs, default behaviour: scale up at once, by at most max(100 %, 4 pods) per 15 s.
    #[test]
    fn default_scale_up_doubles_or_adds_four_per_period() {
        let b = behavior(None, None);
        // 1 → wants 20: +4 beats +100 % (2).
        let r = run(&b, 1, 100, &[(0, 1, 20)]);
        assert_eq!(r[0].replicas, 5);
        assert_eq!(r[0].limit, Some(Limit::ScaleUpLimit));
        // 10 → wants 40: +100 % (20) beats +4.
        let r = run(&b, 1, 100, &[(0, 10, 40)]);
        assert_eq!(r[0].replicas, 20);
        // Within the same 15 s period the period start stays 1: still capped at 5, then after
        // the period a new doubling/+4 from 5.
        let r = run(&b, 1, 100, &[(0, 1, 20), (5, 5, 20), (16, 5, 20)]);
        let got: Vec<i32> = r.iter().map(|n| n.replicas).collect();
        assert_eq!(got, vec![5, 5, 10]);
    }

    /// HPA docs: "scale down at most 4 pods or 10 %, whichever is less; at most 4 pods a
    /// minute" — here: Pods 4 / 60 s and Percent 10 / 60 s with selectPolicy Min.
    #[test]
    fn select_policy_min_takes_the_smallest_change() {
        let down = rules(
            Some(0),
            Some(SelectPolicy::Min),
            &[('p', 4, 60), ('%', 10, 60)],
        );
        let b = behavior(None, Some(down));
        // 80 pods: Pods → 76, Percent → 72; Min change → 76.
        assert_eq!(run(&b, 1, 100, &[(0, 80, 10)])[0].replicas, 76);
        // 20 pods: Pods → 16, Percent → 18; Min change → 18.
        assert_eq!(run(&b, 1, 100, &[(0, 20, 10)])[0].replicas, 18);
    }

    /// HPA docs example: 80 replicas scaling down with Pods 4/60 s and Percent 10/60 s and the
    /// default selectPolicy Max: the first step removes 8 (10 %), later steps 10 % of the count
    /// at the start of the period, and the Pods policy takes over below 40 replicas.
    #[test]
    fn select_policy_max_takes_the_biggest_change_as_in_the_docs() {
        let down = rules(Some(0), None, &[('p', 4, 60), ('%', 10, 60)]);
        let b = behavior(None, Some(down));
        let r = run(
            &b,
            1,
            100,
            &[(0, 80, 10), (30, 72, 10), (61, 72, 10), (122, 64, 10)],
        );
        let got: Vec<i32> = r.iter().map(|n| n.replicas).collect();
        // 80 → 72 (10 % of 80 beats 4 pods); same period: still 72; each later period removes
        // 10 % of its starting count, truncated as the HPA does (64.8 → 64, 57.6 → 57).
        assert_eq!(got, vec![72, 72, 64, 57]);
        assert_eq!(r[0].limit, Some(Limit::ScaleDownLimit));
        // Below 40 replicas, 4 pods beat 10 %.
        let r = run(&b, 1, 100, &[(0, 30, 1)]);
        assert_eq!(r[0].replicas, 26);
    }

    #[test]
    fn select_policy_disabled_blocks_that_direction() {
        let b = behavior(
            None,
            Some(rules(Some(0), Some(SelectPolicy::Disabled), &[])),
        );
        let r = run(&b, 1, 10, &[(0, 5, 1)]);
        assert_eq!(r[0].replicas, 5);
        assert_eq!(r[0].limit, Some(Limit::ScaleDownLimit));
        // Scale-up still works.
        assert_eq!(run(&b, 1, 10, &[(0, 5, 7)])[0].replicas, 7);
        let b = behavior(Some(rules(None, Some(SelectPolicy::Disabled), &[])), None);
        assert_eq!(run(&b, 1, 10, &[(0, 5, 7)])[0].replicas, 5);
    }

    /// HPA docs: with a scale-down stabilization window, the highest recommendation of the window
    /// is used, so a dip does not shrink the fleet until it lasted the whole window.
    #[test]
    fn scale_down_stabilization_uses_the_highest_recent_recommendation() {
        let b = behavior(None, Some(rules(Some(60), None, &[])));
        let steps = [
            (0, 5, 5),
            (10, 5, 2),  // dip: the window still holds 5
            (30, 5, 3),  // still 5 within 60 s
            (61, 5, 3),  // the 5 at t=0 left the window; max(2, 3, 3) = 3
            (71, 3, 2),  // 2 at t=10 is gone, 3s remain
            (130, 3, 2), // only 2s remain in (70, 130]
        ];
        let got: Vec<i32> = run(&b, 1, 10, &steps).iter().map(|n| n.replicas).collect();
        assert_eq!(got, vec![5, 5, 5, 3, 3, 2]);
    }

    #[test]
    fn default_scale_down_window_is_300_seconds() {
        let b = behavior(None, None);
        let got: Vec<i32> = run(&b, 1, 10, &[(0, 4, 4), (299, 4, 1), (301, 4, 1)])
            .iter()
            .map(|n| n.replicas)
            .collect();
        assert_eq!(got, vec![4, 4, 1]);
    }

    /// A scale-up window makes growth wait until every recommendation of the window agrees.
    #[test]
    fn scale_up_stabilization_uses_the_lowest_recent_recommendation() {
        let b = behavior(Some(rules(Some(30), None, &[])), None);
        let steps = [(0, 2, 2), (10, 2, 6), (20, 2, 6), (31, 2, 6), (41, 6, 6)];
        let got: Vec<i32> = run(&b, 1, 10, &steps).iter().map(|n| n.replicas).collect();
        // The 2 at t=0 leaves the window after t=30.
        assert_eq!(got, vec![2, 2, 2, 6, 6]);
    }

    #[test]
    fn flapping_metrics_do_not_flap_the_fleet() {
        let b = behavior(None, Some(rules(Some(60), None, &[])));
        let steps: Vec<(u64, i32, i32)> = (0..12)
            .map(|i| (i * 5, 4, if i % 2 == 0 { 4 } else { 2 }))
            .collect();
        assert!(run(&b, 1, 10, &steps).iter().all(|n| n.replicas == 4));
    }

    #[test]
    fn bounds_bind_after_rate_limits() {
        let b = behavior(None, Some(rules(Some(0), None, &[])));
        let r = run(&b, 2, 6, &[(0, 4, 9)]);
        assert_eq!(
            (r[0].replicas, r[0].limit),
            (6, Some(Limit::TooManyReplicas))
        );
        let r = run(&b, 2, 6, &[(0, 4, 1)]);
        assert_eq!(
            (r[0].replicas, r[0].limit),
            (2, Some(Limit::TooFewReplicas))
        );
        let r = run(&b, 2, 6, &[(0, 4, 5)]);
        assert_eq!((r[0].replicas, r[0].limit), (5, None));
    }

    #[test]
    fn percent_scale_up_rounds_up_so_one_pod_can_grow() {
        let up = rules(None, None, &[('%', 10, 60)]);
        let b = behavior(Some(up), None);
        // 10 % of 1 is 0.1 pods: rounded up to one more pod.
        assert_eq!(run(&b, 1, 10, &[(0, 1, 5)])[0].replicas, 2);
    }

    #[test]
    fn scale_down_within_a_period_counts_earlier_scale_ups() {
        // Pods 1 / 60 s both ways: after growing 3 → 4, shrinking in the same period counts from
        // the period's start (3), so the floor is 3 - 1 = 2.
        let one = rules(Some(0), None, &[('p', 1, 60)]);
        let b = behavior(Some(one.clone()), Some(one));
        let got: Vec<i32> = run(&b, 1, 10, &[(0, 3, 9), (10, 4, 1)])
            .iter()
            .map(|n| n.replicas)
            .collect();
        assert_eq!(got, vec![4, 2]);
    }
}
