//! Spec validation the API server cannot do (or may not do: CEL support varies by server).
//!
//! Pure: a spec in, every problem out, each naming the field, so a `Degraded` condition and a
//! Warning event can tell the user exactly what to fix.

use std::fmt;

use crate::crd::{GameFleetSpec, ScalingRules, SecretKeyRef, TierAutoscaling};

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// JSON path below `spec`, e.g. `gateway.connectionsPerPod`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Every problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    pub problems: Vec<FieldProblem>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("spec.{}: {}", p.field, p.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, field: &str, value: i32, min: i32, max: i32) {
        if value < min || value > max {
            self.add(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn image(&mut self, field: &str, image: &str) {
        if image.trim().is_empty() {
            self.add(field, "must name a container image, got an empty string");
        } else if image.chars().any(char::is_whitespace) {
            self.add(field, format!("must not contain whitespace, got {image:?}"));
        }
    }

    fn secret_ref(&mut self, field: &str, r: &SecretKeyRef) {
        if r.name.trim().is_empty() {
            self.add(format!("{field}.name"), "must name a Secret");
        }
        if r.key.trim().is_empty() {
            self.add(format!("{field}.key"), "must name a key in the Secret");
        }
    }

    /// A Redis URL (a single Redis or a Redis Cluster) given as exactly one of `url` or
    /// `urlSecretRef`.
    fn redis(&mut self, field: &str, url: Option<&str>, secret: Option<&SecretKeyRef>) {
        match (url, secret) {
            (Some(_), Some(_)) => {
                self.add(field, "set exactly one of url or urlSecretRef, got both")
            }
            (None, None) => self.add(field, "set exactly one of url or urlSecretRef, got neither"),
            (Some(url), None) => {
                if let Err(why) = check_redis_url(url) {
                    self.add(format!("{field}.url"), why);
                }
            }
            (None, Some(r)) => self.secret_ref(&format!("{field}.urlSecretRef"), r),
        }
    }

    fn tier(&mut self, field: &str, t: &TierAutoscaling) {
        self.range(&format!("{field}.minReplicas"), t.min_replicas, 1, 1000);
        self.range(&format!("{field}.maxReplicas"), t.max_replicas, 1, 1000);
        if t.min_replicas > t.max_replicas {
            self.add(
                format!("{field}.minReplicas"),
                format!(
                    "must be <= maxReplicas ({}), got {}",
                    t.max_replicas, t.min_replicas
                ),
            );
        }
        for (dir, rules) in [
            ("scaleUp", &t.behavior.scale_up),
            ("scaleDown", &t.behavior.scale_down),
        ] {
            if let Some(rules) = rules {
                self.rules(&format!("{field}.behavior.{dir}"), rules);
            }
        }
    }

    fn rules(&mut self, field: &str, r: &ScalingRules) {
        if let Some(w) = r.stabilization_window_seconds {
            self.range(&format!("{field}.stabilizationWindowSeconds"), w, 0, 3600);
        }
        for (i, p) in r.policies.iter().enumerate() {
            if p.value < 1 {
                self.add(
                    format!("{field}.policies[{i}].value"),
                    format!("must be > 0, got {}", p.value),
                );
            }
            self.range(
                &format!("{field}.policies[{i}].periodSeconds"),
                p.period_seconds,
                1,
                1800,
            );
        }
    }
}

/// Checks a spec; `Err` lists every problem, not only the first.
/// Cluster URLs list their nodes: `redis+cluster://[user:pass@]h1:p1,h2:p2`.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// What a Redis URL must look like: a single Redis, or a Redis Cluster's node list (the bus
/// and the ledger both run on either).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let bad: Vec<&str> = hosts
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|h| {
                h.rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            })
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "a cluster URL lists its nodes as host:port separated by commas \
                 ({CLUSTER_SCHEME}h1:6379,h2:6379), got {bad:?} in {url:?}"
            ));
        }
        return Ok(());
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(());
    }
    Err(format!(
        "must start with redis://, rediss:// or {CLUSTER_SCHEME}, got {url:?}"
    ))
}

pub fn validate(spec: &GameFleetSpec) -> Result<(), InvalidSpec> {
    let mut p = Problems::default();
    check_gateway_scale(&mut p, spec);
    check_rooms_pattern_and_demo(&mut p, spec);
    check_gateway_ports(&mut p, spec);
    check_engine_and_rooms(&mut p, spec);
    check_latency(&mut p, spec);
    check_secrets(&mut p, spec);
    check_autoscaling(&mut p, spec);
    check_drain(&mut p, spec);

    if p.0.is_empty() {
        Ok(())
    } else {
        Err(InvalidSpec { problems: p.0 })
    }
}

/// The gateway's image, replicas and connections per pod.
fn check_gateway_scale(p: &mut Problems, spec: &GameFleetSpec) {
    let g = &spec.gateway;
    p.image("gateway.image", &g.image);
    p.range("gateway.replicas", g.replicas, 0, 1000);
    if g.connections_per_pod < 1 {
        p.add(
            "gateway.connectionsPerPod",
            format!("must be > 0, got {}", g.connections_per_pod),
        );
    }
}

/// The room-name pattern and the demo's starting balance.
fn check_rooms_pattern_and_demo(p: &mut Problems, spec: &GameFleetSpec) {
    if let Some(pattern) = &spec.rooms.name_pattern {
        if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
            p.add(
                "rooms.namePattern",
                format!(
                    "is not a regular expression: {}",
                    e.to_string().lines().last().unwrap_or("invalid")
                ),
            );
        }
    }
    if let Some(d) = spec.demo.as_ref().filter(|d| d.enabled) {
        if d.starting_balance < 1 {
            p.add(
                "demo.startingBalance",
                format!("must be > 0 minor units, got {}", d.starting_balance),
            );
        }
    }
}

/// The gateway's ports, readiness delay and disruption budget.
fn check_gateway_ports(p: &mut Problems, spec: &GameFleetSpec) {
    let g = &spec.gateway;
    p.range("gateway.playerPort", g.player_port, 1, 65535);
    p.range("gateway.adminPort", g.admin_port, 1, 65535);
    if g.player_port == g.admin_port {
        p.add(
            "gateway.adminPort",
            format!("must differ from gateway.playerPort ({})", g.player_port),
        );
    }
    p.range("gateway.service.port", g.service.port, 1, 65535);
    p.range("gateway.minReadySeconds", g.min_ready_seconds, 0, 3600);
    if g.pod_disruption_budget.max_unavailable < 1 {
        p.add(
            "gateway.podDisruptionBudget.maxUnavailable",
            format!(
                "must be > 0 (0 would block every drain), got {}",
                g.pod_disruption_budget.max_unavailable
            ),
        );
    }
}

/// The engine's image, replicas and port; the rooms' limits and timings.
fn check_engine_and_rooms(p: &mut Problems, spec: &GameFleetSpec) {
    let e = &spec.engine;
    if let Some(image) = &e.image {
        p.image("engine.image", image);
    }
    p.range("engine.replicas", e.replicas, 0, 1000);
    p.range("engine.adminPort", e.admin_port, 1, 65535);

    let r = &spec.rooms;
    p.range(
        "rooms.maxPlayersPerRoom",
        r.max_players_per_room,
        1,
        100_000,
    );
    p.range("rooms.bettingWindowMs", r.betting_window_ms, 100, 3_600_000);
    p.range("rooms.roundPauseMs", r.round_pause_ms, 0, 3_600_000);
}

/// The latency targets.
fn check_latency(p: &mut Problems, spec: &GameFleetSpec) {
    let l = &spec.latency;
    p.range("latency.p50TargetMs", l.p50_target_ms, 1, 60_000);
    p.range("latency.p99TargetMs", l.p99_target_ms, 1, 60_000);
    if l.p50_target_ms > l.p99_target_ms {
        p.add(
            "latency.p50TargetMs",
            format!(
                "must be <= latency.p99TargetMs ({}), got {}",
                l.p99_target_ms, l.p50_target_ms
            ),
        );
    }
}

/// The Redis URLs and the auth secrets.
fn check_secrets(p: &mut Problems, spec: &GameFleetSpec) {
    p.redis(
        "redis",
        spec.redis.url.as_deref(),
        spec.redis.url_secret_ref.as_ref(),
    );
    if let Some(l) = &spec.redis.ledger {
        p.redis("redis.ledger", l.url.as_deref(), l.url_secret_ref.as_ref());
    }
    p.secret_ref("auth.jwtSecretRef", &spec.auth.jwt_secret_ref);
    if let Some(r) = &spec.auth.admin_token_secret_ref {
        p.secret_ref("auth.adminTokenSecretRef", r);
    }
}

/// The autoscaling settings.
fn check_autoscaling(p: &mut Problems, spec: &GameFleetSpec) {
    let a = &spec.autoscaling;
    p.range(
        "autoscaling.syncIntervalSeconds",
        a.sync_interval_seconds,
        1,
        3600,
    );
    p.range(
        "autoscaling.targetUtilizationPercent",
        a.target_utilization_percent,
        1,
        100,
    );
    if let Some(url) = &a.prometheus_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            p.add(
                "autoscaling.prometheusUrl",
                format!("must be an http:// or https:// URL, got {url:?}"),
            );
        }
    }
    p.tier("autoscaling.gateway", &a.gateway);
    p.tier("autoscaling.engine", &a.engine);
}

/// The drain timings.
fn check_drain(p: &mut Problems, spec: &GameFleetSpec) {
    let d = &spec.drain;
    p.range("drain.timeoutSeconds", d.timeout_seconds, 1, 3600);
    p.range(
        "drain.reconnectSpreadSeconds",
        d.reconnect_spread_seconds,
        0,
        3600,
    );
    if d.reconnect_spread_seconds > d.timeout_seconds {
        p.add(
            "drain.reconnectSpreadSeconds",
            format!(
                "must be <= drain.timeoutSeconds ({}), got {}",
                d.timeout_seconds, d.reconnect_spread_seconds
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;

    fn fields(spec: &GameFleetSpec) -> Vec<String> {
        match validate(spec) {
            Ok(()) => vec![],
            Err(e) => e.problems.into_iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn the_test_spec_is_valid() {
        assert_eq!(validate(&spec()), Ok(()));
    }

    #[test]
    fn each_invalid_field_is_named() {
        type Edit = fn(&mut GameFleetSpec);
        let cases: &[(&str, Edit, &str)] = &[
            (
                "empty image",
                |s| s.gateway.image = " ".into(),
                "gateway.image",
            ),
            (
                "demo without a balance",
                |s| {
                    s.demo = Some(crate::crd::DemoSpec {
                        enabled: true,
                        starting_balance: 0,
                    })
                },
                "demo.startingBalance",
            ),
            (
                "image with space",
                |s| s.gateway.image = "a b".into(),
                "gateway.image",
            ),
            (
                "engine image",
                |s| s.engine.image = Some(String::new()),
                "engine.image",
            ),
            (
                "negative replicas",
                |s| s.gateway.replicas = -1,
                "gateway.replicas",
            ),
            (
                "zero capacity",
                |s| s.gateway.connections_per_pod = 0,
                "gateway.connectionsPerPod",
            ),
            (
                "port 0",
                |s| s.gateway.player_port = 0,
                "gateway.playerPort",
            ),
            (
                "port clash",
                |s| s.gateway.admin_port = s.gateway.player_port,
                "gateway.adminPort",
            ),
            (
                "service port",
                |s| s.gateway.service.port = 70000,
                "gateway.service.port",
            ),
            (
                "pdb zero",
                |s| s.gateway.pod_disruption_budget.max_unavailable = 0,
                "gateway.podDisruptionBudget.maxUnavailable",
            ),
            (
                "engine replicas",
                |s| s.engine.replicas = -3,
                "engine.replicas",
            ),
            (
                "room size",
                |s| s.rooms.max_players_per_room = 0,
                "rooms.maxPlayersPerRoom",
            ),
            (
                "betting window",
                |s| s.rooms.betting_window_ms = 10,
                "rooms.bettingWindowMs",
            ),
            (
                "negative pause",
                |s| s.rooms.round_pause_ms = -1,
                "rooms.roundPauseMs",
            ),
            (
                "p50 > p99",
                |s| {
                    s.latency.p50_target_ms = 200;
                    s.latency.p99_target_ms = 100;
                },
                "latency.p50TargetMs",
            ),
            ("redis neither", |s| s.redis.url = None, "redis"),
            (
                "ledger redis neither",
                |s| s.redis.ledger = Some(crate::crd::RedisEndpoint::default()),
                "redis.ledger",
            ),
            (
                "ledger redis scheme",
                |s| {
                    s.redis.ledger = Some(crate::crd::RedisEndpoint {
                        url: Some("ledger:6379".into()),
                        url_secret_ref: None,
                    })
                },
                "redis.ledger.url",
            ),
            (
                "ledger redis secret key",
                |s| {
                    s.redis.ledger = Some(crate::crd::RedisEndpoint {
                        url: None,
                        url_secret_ref: Some(SecretKeyRef {
                            name: "ledger".into(),
                            key: String::new(),
                        }),
                    })
                },
                "redis.ledger.urlSecretRef.key",
            ),
            (
                "redis scheme",
                |s| s.redis.url = Some("http://x".into()),
                "redis.url",
            ),
            (
                "jwt secret name",
                |s| s.auth.jwt_secret_ref.name = String::new(),
                "auth.jwtSecretRef.name",
            ),
            (
                "jwt secret key",
                |s| s.auth.jwt_secret_ref.key = String::new(),
                "auth.jwtSecretRef.key",
            ),
            (
                "admin token secret name",
                |s| {
                    s.auth.admin_token_secret_ref = Some(SecretKeyRef {
                        name: String::new(),
                        key: "admin-token".into(),
                    })
                },
                "auth.adminTokenSecretRef.name",
            ),
            (
                "min > max",
                |s| {
                    s.autoscaling.gateway.min_replicas = 5;
                    s.autoscaling.gateway.max_replicas = 2;
                },
                "autoscaling.gateway.minReplicas",
            ),
            (
                "engine min > max",
                |s| {
                    s.autoscaling.engine.min_replicas = 5;
                    s.autoscaling.engine.max_replicas = 2;
                },
                "autoscaling.engine.minReplicas",
            ),
            (
                "sync 0",
                |s| s.autoscaling.sync_interval_seconds = 0,
                "autoscaling.syncIntervalSeconds",
            ),
            (
                "utilization 0",
                |s| s.autoscaling.target_utilization_percent = 0,
                "autoscaling.targetUtilizationPercent",
            ),
            (
                "prometheus url",
                |s| s.autoscaling.prometheus_url = Some("prom:9090".into()),
                "autoscaling.prometheusUrl",
            ),
            (
                "negative window",
                |s| {
                    s.autoscaling.gateway.behavior.scale_down = Some(ScalingRules {
                        stabilization_window_seconds: Some(-1),
                        ..Default::default()
                    })
                },
                "autoscaling.gateway.behavior.scaleDown.stabilizationWindowSeconds",
            ),
            (
                "policy value",
                |s| {
                    s.autoscaling.gateway.behavior.scale_up = Some(ScalingRules {
                        policies: vec![crate::crd::ScalingPolicy {
                            type_: crate::crd::ScalingPolicyType::Pods,
                            value: 0,
                            period_seconds: 60,
                        }],
                        ..Default::default()
                    })
                },
                "autoscaling.gateway.behavior.scaleUp.policies[0].value",
            ),
            (
                "drain timeout 0",
                |s| {
                    s.drain.timeout_seconds = 0;
                    s.drain.reconnect_spread_seconds = 0;
                },
                "drain.timeoutSeconds",
            ),
            (
                "negative spread",
                |s| s.drain.reconnect_spread_seconds = -5,
                "drain.reconnectSpreadSeconds",
            ),
            (
                "spread > timeout",
                |s| {
                    s.drain.timeout_seconds = 10;
                    s.drain.reconnect_spread_seconds = 20;
                },
                "drain.reconnectSpreadSeconds",
            ),
        ];
        for (name, edit, field) in cases {
            let mut s = spec();
            edit(&mut s);
            assert_eq!(fields(&s), vec![field.to_string()], "case {name}");
        }
    }

    #[test]
    fn a_room_pattern_must_be_a_regular_expression() {
        let mut s = spec();
        s.rooms.name_pattern = Some("dice-[0-9]{1,3}|lobby".into());
        assert!(validate(&s).is_ok());
        s.rooms.name_pattern = Some("dice-[0-9".into());
        let text = validate(&s).unwrap_err().to_string();
        assert!(
            text.contains("spec.rooms.namePattern: is not a regular expression:"),
            "{text}"
        );
    }

    #[test]
    fn a_redis_cluster_holds_the_bus_or_the_ledger() {
        let mut s = spec();
        s.redis.ledger = Some(crate::crd::RedisEndpoint {
            url: Some("redis+cluster://ledger-0:6379,ledger-1:6379,ledger-2:6379".into()),
            url_secret_ref: None,
        });
        assert_eq!(validate(&s), Ok(()));
        assert_eq!(check_redis_url("redis+cluster://:pw@a:1,b:2/"), Ok(()));
        let e = check_redis_url("redis+cluster://a:1,b").unwrap_err();
        assert!(e.contains("[\"b\"]"), "{e}");
        assert!(check_redis_url("redis+cluster://").is_err());
        assert!(check_redis_url("http://a")
            .unwrap_err()
            .contains("redis+cluster://"));
        s.redis.url = Some("redis+cluster://a:1,b:2".into());
        assert_eq!(validate(&s), Ok(()));
        s.redis.url = Some("redis+cluster://a:1,b".into());
        let e = validate(&s).unwrap_err().to_string();
        assert!(
            e.contains("spec.redis.url: a cluster URL lists its nodes"),
            "{e}"
        );
    }

    #[test]
    fn both_redis_sources_is_an_error() {
        let mut s = spec();
        s.redis.url_secret_ref = Some(SecretKeyRef {
            name: "r".into(),
            key: "url".into(),
        });
        assert_eq!(fields(&s), vec!["redis".to_string()]);
    }

    #[test]
    fn all_problems_are_reported_with_actionable_messages() {
        let mut s = spec();
        s.gateway.connections_per_pod = 0;
        s.autoscaling.gateway.min_replicas = 4;
        s.autoscaling.gateway.max_replicas = 2;
        let err = validate(&s).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        let text = err.to_string();
        assert!(
            text.contains("spec.gateway.connectionsPerPod: must be > 0, got 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "spec.autoscaling.gateway.minReplicas: must be <= maxReplicas (2), got 4"
            ),
            "{text}"
        );
    }
}
