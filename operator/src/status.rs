//! Status: a pure computation from what was observed to the `GameFleet` status.
//!
//! Conditions follow the Kubernetes API conventions (type/status/reason/message/
//! lastTransitionTime/observedGeneration); a condition keeps its lastTransitionTime while its
//! status stays the same, so an unchanged world yields an identical status and no write.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::build::{selector_string, Component, Owner};
use crate::crd::{DrainingStatus, GameFleet, GameFleetStatus, TierStatus};
use crate::scaling::Replicas;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Progressing reasons of a rollout (new pod template) in progress and done.
pub const ROLLING_OUT: &str = "RollingOut";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";

/// Live load, when an autoscaler or metrics source has sampled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSample {
    pub total_connections: i64,
    pub p99_ms: Option<i64>,
}

/// How the reconcile went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every object was applied.
    Applied,
    /// Something stopped the reconcile; `reason` is CamelCase, `message` names the cause.
    Failed { reason: String, message: String },
}

/// What the reconciler saw.
#[derive(Clone, Debug, Default)]
pub struct Observation<'a> {
    pub gateway: Option<&'a Deployment>,
    pub engine: Option<&'a Deployment>,
    pub load: Option<LoadSample>,
    /// Gateways shutting down, when any are.
    pub draining: Option<DrainingStatus>,
}

/// Computes the full status. `desired` is `None` when the spec could not be used (invalid), in
/// which case the Deployments' own replica counts stand.
pub fn compute(
    fleet: &GameFleet,
    desired: Option<&Replicas>,
    obs: &Observation<'_>,
    outcome: &Outcome,
    now: &Time,
) -> GameFleetStatus {
    let previous = fleet.status.clone().unwrap_or_default();
    let generation = fleet.metadata.generation;

    let gw_desired = desired
        .map(|r| r.desired.gateway)
        .or_else(|| spec_replicas(obs.gateway))
        .unwrap_or(0);
    let en_desired = desired
        .map(|r| r.desired.engine)
        .or_else(|| spec_replicas(obs.engine))
        .unwrap_or(0);
    let gateway = tier(obs.gateway, gw_desired);
    let engine = tier(obs.engine, en_desired);

    let mut conditions = vec![
        ready(&gateway, &engine),
        progressing(obs, &gateway, &engine, outcome),
        degraded(outcome),
        scaling_limited(fleet, desired),
    ];
    for c in &mut conditions {
        c.observed_generation = generation;
        c.last_transition_time = previous
            .conditions
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .map(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
    }

    let gateway_selector =
        Owner::of(fleet).map(|o| selector_string(&o.selector(Some(Component::Gateway))));
    GameFleetStatus {
        observed_generation: generation,
        gateways_ready: Some(format!(
            "{}/{}",
            gateway.ready_replicas, gateway.desired_replicas
        )),
        engines_ready: Some(format!(
            "{}/{}",
            engine.ready_replicas, engine.desired_replicas
        )),
        gateway,
        engine,
        gateway_selector,
        // Without a fresh sample, keep what the last sampler wrote rather than erase it.
        total_connections: obs
            .load
            .map(|l| l.total_connections)
            .or(previous.total_connections),
        observed_p99_ms: match obs.load {
            Some(l) => l.p99_ms,
            None => previous.observed_p99_ms,
        },
        last_scale_time: previous.last_scale_time,
        draining: obs.draining.clone(),
        conditions,
    }
}

fn spec_replicas(d: Option<&Deployment>) -> Option<i32> {
    d?.spec.replicas
}

fn tier(d: Option<&Deployment>, desired: i32) -> TierStatus {
    let s = d.and_then(|d| d.status.clone()).unwrap_or_default();
    TierStatus {
        desired_replicas: desired,
        replicas: s.replicas.unwrap_or(0),
        ready_replicas: s.ready_replicas.unwrap_or(0),
        updated_replicas: s.updated_replicas.unwrap_or(0),
        available_replicas: s.available_replicas.unwrap_or(0),
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        // Filled in by `compute`.
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

/// Ready: the fleet can serve players (every desired gateway and engine is ready).
fn ready(gw: &TierStatus, en: &TierStatus) -> Condition {
    let counts = format!(
        "{}/{} gateways and {}/{} engines ready",
        gw.ready_replicas, gw.desired_replicas, en.ready_replicas, en.desired_replicas
    );
    if gw.desired_replicas == 0 || en.desired_replicas == 0 {
        condition(READY, false, "ScaledToZero", counts)
    } else if gw.ready_replicas < gw.desired_replicas {
        condition(READY, false, "GatewaysNotReady", counts)
    } else if en.ready_replicas < en.desired_replicas {
        condition(READY, false, "EnginesNotReady", counts)
    } else {
        condition(READY, true, "AllReplicasReady", counts)
    }
}

/// Why one tier is still moving, if it is.
fn tier_progress(
    name: &str,
    d: Option<&Deployment>,
    t: &TierStatus,
) -> Option<(&'static str, String)> {
    let Some(d) = d else {
        return Some(("Creating", format!("{name} Deployment does not exist yet")));
    };
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = d
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    if observed < generation {
        return Some((
            ROLLING_OUT,
            format!("{name} Deployment generation {generation} not yet observed"),
        ));
    }
    if t.updated_replicas < t.replicas {
        return Some((
            ROLLING_OUT,
            format!(
                "{name}: {} of {} pods updated",
                t.updated_replicas, t.desired_replicas
            ),
        ));
    }
    if t.replicas < t.desired_replicas {
        return Some((
            "ScalingUp",
            format!("{name}: {} of {} pods", t.replicas, t.desired_replicas),
        ));
    }
    if t.replicas > t.desired_replicas {
        return Some((
            "ScalingDown",
            format!(
                "{name}: {} pods, scaling down to {}",
                t.replicas, t.desired_replicas
            ),
        ));
    }
    if t.available_replicas < t.desired_replicas {
        return Some((
            "PodsStarting",
            format!(
                "{name}: {} of {} pods available",
                t.available_replicas, t.desired_replicas
            ),
        ));
    }
    None
}

/// Progressing: True while a rollout or scale is under way.
fn progressing(
    obs: &Observation<'_>,
    gw: &TierStatus,
    en: &TierStatus,
    outcome: &Outcome,
) -> Condition {
    if let Outcome::Failed { reason, message } = outcome {
        return condition(
            PROGRESSING,
            false,
            reason,
            format!("reconcile blocked: {message}"),
        );
    }
    let moving: Vec<(&'static str, String)> = [
        tier_progress("gateway", obs.gateway, gw),
        tier_progress("engine", obs.engine, en),
    ]
    .into_iter()
    .flatten()
    .collect();
    match moving.first() {
        None => match &obs.draining {
            // Replicas are settled but old gateways are still handing their players over.
            Some(d) => condition(PROGRESSING, true, "DrainingGateways", draining_message(d)),
            None => condition(
                PROGRESSING,
                false,
                ROLLOUT_COMPLETE,
                "all replicas updated and available".into(),
            ),
        },
        Some((reason, _)) => {
            let message = moving
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            condition(PROGRESSING, true, reason, message)
        }
    }
}

fn draining_message(d: &DrainingStatus) -> String {
    match d.connections {
        Some(c) => format!("{} gateways draining, {c} connections left", d.gateways),
        None => format!("{} gateways draining", d.gateways),
    }
}

/// The event to record when a rollout starts or finishes, from the status before and after.
pub fn rollout_event(
    previous: Option<&GameFleetStatus>,
    new: &GameFleetStatus,
) -> Option<(&'static str, String)> {
    let rolling = |s: &GameFleetStatus| {
        find(s, PROGRESSING).is_some_and(|c| c.status == "True" && c.reason == ROLLING_OUT)
    };
    let was = previous.is_some_and(rolling);
    let is = rolling(new);
    let message = |s: &GameFleetStatus| {
        find(s, PROGRESSING)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    match (was, is) {
        (false, true) => Some((
            "RolloutStarted",
            format!("Rollout started: {}", message(new)),
        )),
        (true, false) => Some((
            "RolloutFinished",
            format!(
                "Rollout finished: {} gateways and {} engines updated",
                new.gateway.updated_replicas, new.engine.updated_replicas
            ),
        )),
        _ => None,
    }
}

/// Degraded: the operator cannot bring the fleet to its spec.
fn degraded(outcome: &Outcome) -> Condition {
    match outcome {
        Outcome::Applied => condition(DEGRADED, false, "AsExpected", "spec applied".into()),
        Outcome::Failed { reason, message } => condition(DEGRADED, true, reason, message.clone()),
    }
}

/// ScalingLimited: the autoscaler wanted more (or fewer) pods than the bounds allow.
fn scaling_limited(fleet: &GameFleet, desired: Option<&Replicas>) -> Condition {
    if !fleet.spec.autoscaling.enabled {
        return condition(
            SCALING_LIMITED,
            false,
            "AutoscalingDisabled",
            "replica counts come from the spec".into(),
        );
    }
    let limits = desired.map(|r| r.limits.as_slice()).unwrap_or_default();
    match limits.first() {
        None => condition(
            SCALING_LIMITED,
            false,
            "WithinBounds",
            "desired replicas are within bounds".into(),
        ),
        Some(first) => {
            let reason = match first.bound {
                "maxReplicas" => "TooManyReplicas",
                "minReplicas" => "TooFewReplicas",
                "scaleUp policies" => "ScaleUpLimit",
                _ => "ScaleDownLimit",
            };
            let message = limits
                .iter()
                .map(|l| {
                    format!(
                        "{} wants {}, held at {} {}",
                        l.tier, l.wanted, l.bound, l.limit
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            condition(SCALING_LIMITED, true, reason, message)
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(status: &'a GameFleetStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::scaling::{DesiredReplicas, ScalingLimit};
    use crate::test_support::fleet;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn deploy(
        spec_replicas: i32,
        replicas: i32,
        ready: i32,
        updated: i32,
        available: i32,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(spec_replicas),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn replicas(gateway: i32, engine: i32) -> Replicas {
        Replicas {
            desired: DesiredReplicas { gateway, engine },
            limits: vec![],
        }
    }

    fn cond<'a>(s: &'a GameFleetStatus, t: &str) -> &'a Condition {
        find(s, t).unwrap_or_else(|| panic!("no {t} condition"))
    }

    #[test]
    fn all_ready() {
        let f = fleet();
        let gw = deploy(3, 3, 3, 3, 3);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let s = compute(&f, Some(&replicas(3, 1)), &obs, &Outcome::Applied, &t(100));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(
            s.gateway,
            TierStatus {
                desired_replicas: 3,
                replicas: 3,
                ready_replicas: 3,
                updated_replicas: 3,
                available_replicas: 3
            }
        );
        assert_eq!(s.gateways_ready.as_deref(), Some("3/3"));
        assert_eq!(s.engines_ready.as_deref(), Some("1/1"));
        assert_eq!(
            s.gateway_selector.as_deref(),
            Some("app.kubernetes.io/component=gateway,app.kubernetes.io/instance=dice,app.kubernetes.io/name=gameserver")
        );
        let r = cond(&s, READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AllReplicasReady")
        );
        assert_eq!(r.message, "3/3 gateways and 1/1 engines ready");
        assert_eq!(r.observed_generation, Some(4));
        assert_eq!(r.last_transition_time, t(100));
        let p = cond(&s, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("False", "RolloutComplete")
        );
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("False", "AsExpected")
        );
        let l = cond(&s, SCALING_LIMITED);
        assert_eq!(
            (l.status.as_str(), l.reason.as_str()),
            ("False", "AutoscalingDisabled")
        );
        assert_eq!(s.conditions.len(), 4);
    }

    #[test]
    fn ready_and_progressing_table() {
        // (gateway deploy, engine deploy, ready status/reason, progressing status/reason)
        type D = Option<Deployment>;
        type Pair = (&'static str, &'static str);
        let cases: Vec<(D, D, Pair, Pair)> = vec![
            (
                None,
                None,
                ("False", "GatewaysNotReady"),
                ("True", "Creating"),
            ),
            (
                Some(deploy(3, 1, 1, 1, 1)),
                Some(deploy(1, 1, 1, 1, 1)),
                ("False", "GatewaysNotReady"),
                ("True", "ScalingUp"),
            ),
            (
                Some(deploy(3, 3, 3, 3, 3)),
                Some(deploy(1, 1, 0, 1, 0)),
                ("False", "EnginesNotReady"),
                ("True", "PodsStarting"),
            ),
            (
                Some(deploy(3, 4, 3, 1, 3)),
                Some(deploy(1, 1, 1, 1, 1)),
                ("True", "AllReplicasReady"),
                ("True", "RollingOut"),
            ),
            (
                Some(deploy(3, 5, 5, 5, 5)),
                Some(deploy(1, 1, 1, 1, 1)),
                ("True", "AllReplicasReady"),
                ("True", "ScalingDown"),
            ),
            (
                Some(deploy(3, 3, 3, 3, 2)),
                Some(deploy(1, 1, 1, 1, 1)),
                ("True", "AllReplicasReady"),
                ("True", "PodsStarting"),
            ),
        ];
        for (i, (gw, en, ready, prog)) in cases.iter().enumerate() {
            let obs = Observation {
                gateway: gw.as_ref(),
                engine: en.as_ref(),
                load: None,
                draining: None,
            };
            let s = compute(
                &fleet(),
                Some(&replicas(3, 1)),
                &obs,
                &Outcome::Applied,
                &t(1),
            );
            let r = cond(&s, READY);
            assert_eq!(
                (r.status.as_str(), r.reason.as_str()),
                *ready,
                "case {i} ready"
            );
            let p = cond(&s, PROGRESSING);
            assert_eq!(
                (p.status.as_str(), p.reason.as_str()),
                *prog,
                "case {i} progressing: {}",
                p.message
            );
        }
    }

    #[test]
    fn unobserved_deployment_generation_is_progressing() {
        let mut gw = deploy(3, 3, 3, 3, 3);
        gw.metadata.generation = Some(3);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let s = compute(
            &fleet(),
            Some(&replicas(3, 1)),
            &obs,
            &Outcome::Applied,
            &t(1),
        );
        let p = cond(&s, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "RollingOut")
        );
    }

    #[test]
    fn scaled_to_zero_is_not_ready() {
        let gw = deploy(0, 0, 0, 0, 0);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let s = compute(
            &fleet(),
            Some(&replicas(0, 1)),
            &obs,
            &Outcome::Applied,
            &t(1),
        );
        assert_eq!(cond(&s, READY).reason, "ScaledToZero");
    }

    #[test]
    fn failure_is_degraded_and_blocks_progress() {
        let gw = deploy(3, 3, 3, 3, 3);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let outcome = Outcome::Failed {
            reason: "InvalidSpec".into(),
            message: "spec.gateway.connectionsPerPod: must be > 0, got 0".into(),
        };
        // Invalid spec: no desired replicas, the Deployments' counts stand.
        let s = compute(&fleet(), None, &obs, &outcome, &t(1));
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(
            d.message,
            "spec.gateway.connectionsPerPod: must be > 0, got 0"
        );
        let p = cond(&s, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("False", "InvalidSpec")
        );
        // The running pods still serve.
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.gateway.desired_replicas, 3);
    }

    #[test]
    fn scaling_limited_when_autoscaling_hits_a_bound() {
        let mut f = fleet();
        f.spec.autoscaling.enabled = true;
        let mut r = replicas(4, 1);
        let obs = Observation::default();
        let s = compute(&f, Some(&r), &obs, &Outcome::Applied, &t(1));
        let l = cond(&s, SCALING_LIMITED);
        assert_eq!(
            (l.status.as_str(), l.reason.as_str()),
            ("False", "WithinBounds")
        );
        r.limits.push(ScalingLimit {
            tier: "gateway",
            wanted: 9,
            bound: "maxReplicas",
            limit: 4,
        });
        let s = compute(&f, Some(&r), &obs, &Outcome::Applied, &t(1));
        let l = cond(&s, SCALING_LIMITED);
        assert_eq!(
            (l.status.as_str(), l.reason.as_str()),
            ("True", "TooManyReplicas")
        );
        assert_eq!(l.message, "gateway wants 9, held at maxReplicas 4");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let gw = deploy(3, 3, 3, 3, 3);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let mut f = fleet();
        let first = compute(&f, Some(&replicas(3, 1)), &obs, &Outcome::Applied, &t(100));
        f.status = Some(first.clone());
        // Same world later: identical status, so nothing is written.
        let second = compute(&f, Some(&replicas(3, 1)), &obs, &Outcome::Applied, &t(200));
        assert_eq!(first, second);
        // Ready flips: only Ready gets the new time.
        let gw2 = deploy(3, 3, 2, 3, 2);
        let obs2 = Observation {
            gateway: Some(&gw2),
            engine: Some(&en),
            load: None,
            draining: None,
        };
        let third = compute(&f, Some(&replicas(3, 1)), &obs2, &Outcome::Applied, &t(300));
        assert_eq!(cond(&third, READY).last_transition_time, t(300));
        assert_eq!(cond(&third, DEGRADED).last_transition_time, t(100));
    }

    #[test]
    fn load_sample_updates_and_absence_keeps_previous() {
        let mut f = fleet();
        let obs = Observation {
            load: Some(LoadSample {
                total_connections: 48_210,
                p99_ms: Some(131),
            }),
            ..Default::default()
        };
        let s = compute(&f, Some(&replicas(3, 1)), &obs, &Outcome::Applied, &t(1));
        assert_eq!(s.total_connections, Some(48_210));
        assert_eq!(s.observed_p99_ms, Some(131));
        f.status = Some(s);
        let s2 = compute(
            &f,
            Some(&replicas(3, 1)),
            &Observation::default(),
            &Outcome::Applied,
            &t(2),
        );
        assert_eq!(s2.total_connections, Some(48_210));
        assert_eq!(s2.observed_p99_ms, Some(131));
    }

    #[test]
    fn draining_gateways_are_reported_and_keep_the_fleet_progressing() {
        let gw = deploy(3, 3, 3, 3, 3);
        let en = deploy(1, 1, 1, 1, 1);
        let obs = Observation {
            gateway: Some(&gw),
            engine: Some(&en),
            load: None,
            draining: Some(DrainingStatus {
                gateways: 2,
                connections: Some(180),
            }),
        };
        let s = compute(
            &fleet(),
            Some(&replicas(3, 1)),
            &obs,
            &Outcome::Applied,
            &t(1),
        );
        assert_eq!(
            s.draining,
            Some(DrainingStatus {
                gateways: 2,
                connections: Some(180)
            })
        );
        let p = cond(&s, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "DrainingGateways")
        );
        assert_eq!(p.message, "2 gateways draining, 180 connections left");
        // Once they are gone: complete, and the field disappears.
        let done = Observation {
            draining: None,
            ..obs
        };
        let s = compute(
            &fleet(),
            Some(&replicas(3, 1)),
            &done,
            &Outcome::Applied,
            &t(2),
        );
        assert_eq!(s.draining, None);
        assert_eq!(cond(&s, PROGRESSING).reason, ROLLOUT_COMPLETE);
    }

    #[test]
    fn rollout_events_on_start_and_finish() {
        let en = deploy(1, 1, 1, 1, 1);
        let status_with = |gw: &Deployment| {
            let obs = Observation {
                gateway: Some(gw),
                engine: Some(&en),
                ..Default::default()
            };
            compute(
                &fleet(),
                Some(&replicas(3, 1)),
                &obs,
                &Outcome::Applied,
                &t(1),
            )
        };
        let settled = status_with(&deploy(3, 3, 3, 3, 3));
        let rolling = status_with(&deploy(3, 4, 3, 1, 3));
        let draining = {
            let gw = deploy(3, 3, 3, 3, 3);
            let obs = Observation {
                gateway: Some(&gw),
                engine: Some(&en),
                load: None,
                draining: Some(DrainingStatus {
                    gateways: 1,
                    connections: None,
                }),
            };
            compute(
                &fleet(),
                Some(&replicas(3, 1)),
                &obs,
                &Outcome::Applied,
                &t(1),
            )
        };
        let started = rollout_event(Some(&settled), &rolling).unwrap();
        assert_eq!(started.0, "RolloutStarted");
        assert_eq!(started.1, "Rollout started: gateway: 1 of 3 pods updated");
        assert_eq!(rollout_event(Some(&rolling), &rolling), None);
        let finished = rollout_event(Some(&rolling), &draining).unwrap();
        assert_eq!(finished.0, "RolloutFinished");
        assert_eq!(
            finished.1,
            "Rollout finished: 3 gateways and 1 engines updated"
        );
        assert_eq!(rollout_event(Some(&settled), &settled), None);
        assert_eq!(rollout_event(None, &settled), None);
        // A fleet first seen mid-rollout (e.g. after an operator restart) announces it.
        assert_eq!(rollout_event(None, &rolling).unwrap().0, "RolloutStarted");
    }
}
