//! Replica counts: the seam between the reconciler and the autoscaler.
//!
//! With autoscaling off the spec's counts stand (and `kubectl scale` edits `spec.gateway.replicas`
//! through the scale subresource). With it on, the autoscaler's latest [`ScaleDecision`] is used,
//! always clamped to the configured bounds; until a decision exists, the current counts are kept
//! (clamped), so enabling autoscaling never makes the fleet jump.

use crate::crd::{GameFleetSpec, TierAutoscaling};

/// A recommendation from the autoscaler for one fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleDecision {
    pub gateway: i32,
    pub engine: i32,
    /// Why the gateway count is what it is, for the `Scaled` event
    /// ("connections 48 210 > 40 000 capacity").
    pub gateway_reason: String,
    /// Why the engine count is what it is ("backlog 2 400 > 1 000 capacity").
    pub engine_reason: String,
    /// Bounds or rate limits that held a tier back (the `ScalingLimited` condition).
    pub limits: Vec<ScalingLimit>,
}

impl ScaleDecision {
    /// The reason for `tier` ("gateway" or "engine").
    pub fn reason(&self, tier: &str) -> &str {
        if tier == "engine" {
            &self.engine_reason
        } else {
            &self.gateway_reason
        }
    }
}

/// Replica counts the builders use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredReplicas {
    pub gateway: i32,
    pub engine: i32,
}

/// Which bound held a tier back, for the `ScalingLimited` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingLimit {
    pub tier: &'static str,
    pub wanted: i32,
    pub bound: &'static str,
    pub limit: i32,
}

/// Desired replicas and any bound that limited them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicas {
    pub desired: DesiredReplicas,
    pub limits: Vec<ScalingLimit>,
}

/// Current replica counts of the Deployments (`None` when a Deployment does not exist yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CurrentReplicas {
    pub gateway: Option<i32>,
    pub engine: Option<i32>,
}

/// Decides the replica counts to apply.
pub fn desired_replicas(
    spec: &GameFleetSpec,
    current: CurrentReplicas,
    decision: Option<&ScaleDecision>,
) -> Replicas {
    if !spec.autoscaling.enabled {
        return Replicas {
            desired: DesiredReplicas {
                gateway: spec.gateway.replicas,
                engine: spec.engine.replicas,
            },
            limits: vec![],
        };
    }
    let (gw_wanted, en_wanted) = match decision {
        Some(d) => (d.gateway, d.engine),
        None => (
            current.gateway.unwrap_or(spec.gateway.replicas),
            current.engine.unwrap_or(spec.engine.replicas),
        ),
    };
    // Limits the autoscaler saw (rate limits, bounds); clamping below adds any bound that
    // changed since (it is a no-op for a decision made under the current bounds).
    let mut limits = decision.map(|d| d.limits.clone()).unwrap_or_default();
    let gateway = clamp("gateway", gw_wanted, &spec.autoscaling.gateway, &mut limits);
    let engine = clamp("engine", en_wanted, &spec.autoscaling.engine, &mut limits);
    Replicas {
        desired: DesiredReplicas { gateway, engine },
        limits,
    }
}

fn clamp(
    tier: &'static str,
    wanted: i32,
    bounds: &TierAutoscaling,
    limits: &mut Vec<ScalingLimit>,
) -> i32 {
    if wanted > bounds.max_replicas {
        limits.retain(|l| l.tier != tier);
        limits.push(ScalingLimit {
            tier,
            wanted,
            bound: "maxReplicas",
            limit: bounds.max_replicas,
        });
        bounds.max_replicas
    } else if wanted < bounds.min_replicas {
        limits.retain(|l| l.tier != tier);
        limits.push(ScalingLimit {
            tier,
            wanted,
            bound: "minReplicas",
            limit: bounds.min_replicas,
        });
        bounds.min_replicas
    } else {
        wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;

    fn auto(min: i32, max: i32) -> GameFleetSpec {
        let mut s = spec();
        s.autoscaling.enabled = true;
        s.autoscaling.gateway.min_replicas = min;
        s.autoscaling.gateway.max_replicas = max;
        s.autoscaling.engine.min_replicas = 1;
        s.autoscaling.engine.max_replicas = 3;
        s
    }

    fn decision(gateway: i32, engine: i32) -> ScaleDecision {
        ScaleDecision {
            gateway,
            engine,
            gateway_reason: "test".into(),
            engine_reason: "test".into(),
            limits: vec![],
        }
    }

    #[test]
    fn spec_counts_stand_when_autoscaling_is_off() {
        let mut s = spec();
        s.gateway.replicas = 7;
        s.engine.replicas = 2;
        let current = CurrentReplicas {
            gateway: Some(3),
            engine: Some(1),
        };
        let r = desired_replicas(&s, current, Some(&decision(9, 9)));
        assert_eq!(
            r.desired,
            DesiredReplicas {
                gateway: 7,
                engine: 2
            }
        );
        assert!(r.limits.is_empty());
    }

    /// (min, max, current gateway, decision, expected gateway, expected engine, limiting bound)
    type Case = (
        i32,
        i32,
        Option<i32>,
        Option<(i32, i32)>,
        i32,
        i32,
        Option<&'static str>,
    );

    #[test]
    fn table() {
        // (min, max, current gateway, decision, expected gateway, expected engine, limited bound)
        let cases: &[Case] = &[
            (1, 4, Some(2), None, 2, 1, None),
            (1, 4, None, None, 3, 1, None), // new fleet: spec replicas (3), within bounds
            (1, 4, Some(6), None, 4, 1, Some("maxReplicas")),
            (2, 4, Some(1), None, 2, 1, Some("minReplicas")),
            (1, 4, Some(2), Some((3, 2)), 3, 2, None),
            (1, 4, Some(2), Some((9, 2)), 4, 2, Some("maxReplicas")),
            (2, 4, Some(2), Some((0, 1)), 2, 1, Some("minReplicas")),
        ];
        for (i, (min, max, cur, dec, gw, en, bound)) in cases.iter().enumerate() {
            let s = auto(*min, *max);
            let current = CurrentReplicas {
                gateway: *cur,
                engine: Some(1),
            };
            let d = dec.map(|(g, e)| decision(g, e));
            let r = desired_replicas(&s, current, d.as_ref());
            assert_eq!(r.desired.gateway, *gw, "case {i}");
            assert_eq!(r.desired.engine, *en, "case {i}");
            assert_eq!(r.limits.first().map(|l| l.bound), *bound, "case {i}");
        }
    }

    #[test]
    fn the_autoscalers_limits_are_reported_and_a_new_bound_replaces_them() {
        let s = auto(1, 4);
        let mut d = decision(4, 1);
        d.limits = vec![ScalingLimit {
            tier: "gateway",
            wanted: 8,
            bound: "scaleUp policies",
            limit: 4,
        }];
        let r = desired_replicas(&s, CurrentReplicas::default(), Some(&d));
        assert_eq!(r.desired.gateway, 4);
        assert_eq!(r.limits, d.limits);
        // The bounds were lowered after the decision: the bound is what holds the tier now.
        let s = auto(1, 2);
        let r = desired_replicas(&s, CurrentReplicas::default(), Some(&d));
        assert_eq!(r.desired.gateway, 2);
        assert_eq!(
            r.limits,
            vec![ScalingLimit {
                tier: "gateway",
                wanted: 4,
                bound: "maxReplicas",
                limit: 2
            }]
        );
        assert_eq!(d.reason("gateway"), "test");
    }

    #[test]
    fn engine_bounds_are_applied_too() {
        let s = auto(1, 4);
        let r = desired_replicas(&s, CurrentReplicas::default(), Some(&decision(2, 8)));
        assert_eq!(r.desired.engine, 3);
        assert_eq!(
            r.limits,
            vec![ScalingLimit {
                tier: "engine",
                wanted: 8,
                bound: "maxReplicas",
                limit: 3
            }]
        );
    }
}
