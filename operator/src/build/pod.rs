//! Pod pieces shared by the gateway and engine Deployments: hardening, probes, env, resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{GameFleetSpec, SecretKeyRef};
use crate::drain;

/// UID/GID the gameserver runs as (the image's non-root user).
pub const RUN_AS_USER: i64 = 65532;

/// Admin/metrics container port name (also the metrics Service's target port).
pub const ADMIN_PORT_NAME: &str = "admin";
/// Player container port name (the player Service's target port).
pub const PLAYER_PORT_NAME: &str = "player";

pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests and limits: the spec's, or defaults sized for a gateway holding a few thousand
/// connections. The memory limit bounds a leak; no CPU limit (throttling hurts latency).
pub fn resources(spec: Option<&ResourceRequirements>) -> ResourceRequirements {
    if let Some(r) = spec {
        return r.clone();
    }
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("250m")),
            ("memory".to_string(), q("256Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("512Mi"))])),
        ..Default::default()
    }
}

/// Readiness on `/readyz`: checked often and failing fast, so a draining gateway leaves the
/// Service within about a second.
pub fn readiness_probe() -> Probe {
    http_probe("/readyz", 1, 1, 1)
}

/// Liveness on `/healthz`: tolerant, so a busy process is not killed for one slow answer.
pub fn liveness_probe() -> Probe {
    http_probe("/healthz", 10, 3, 2)
}

fn http_probe(path: &str, period: i32, failures: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(ADMIN_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(timeout),
        success_threshold: Some(1),
        ..Default::default()
    }
}

pub fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A Redis URL variable from its Secret when one is named, else inline.
pub fn redis_url(name: &str, url: Option<&str>, r: Option<&SecretKeyRef>) -> Option<EnvVar> {
    match (url, r) {
        (_, Some(r)) => Some(secret(name, r)),
        (Some(url), None) => Some(value(name, url)),
        (None, None) => None,
    }
}

pub fn secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

pub fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// Environment common to both tiers: secrets, identity (downward API), room and drain settings.
/// The gameserver reads each of these as the env fallback of a CLI flag.
pub fn env(spec: &GameFleetSpec) -> Vec<EnvVar> {
    let mut env = vec![secret("JWT_SECRET", &spec.auth.jwt_secret_ref)];
    env.extend(redis_url(
        "REDIS_URL",
        spec.redis.url.as_deref(),
        spec.redis.url_secret_ref.as_ref(),
    ));
    env.push(field("POD_NAME", "metadata.name"));
    env.push(field("POD_NAMESPACE", "metadata.namespace"));
    env.push(field("POD_IP", "status.podIP"));
    let r = &spec.rooms;
    env.push(value("ROOM_CAPACITY", r.max_players_per_room.to_string()));
    env.push(value("BETTING_WINDOW_MS", r.betting_window_ms.to_string()));
    env.push(value("RESULT_PAUSE_MS", r.round_pause_ms.to_string()));
    // Both tiers: gateways refuse what is over these, engines only read them.
    env.push(value("MAX_LIVE_ROOMS", r.max_live_rooms.to_string()));
    env.push(value(
        "BETS_PER_SECOND_PER_USER",
        r.bets_per_second_per_user.to_string(),
    ));
    for (k, v) in drain::env(&spec.drain) {
        env.push(value(k, v));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;

    fn find<'a>(env: &'a [EnvVar], name: &str) -> &'a EnvVar {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn jwt_secret_comes_from_the_secret() {
        let env = env(&spec());
        let jwt = find(&env, "JWT_SECRET");
        assert_eq!(jwt.value, None);
        let sel = jwt
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(sel.name, "dice-secrets");
        assert_eq!(sel.key, "jwt-secret");
        assert_eq!(sel.optional, Some(false));
    }

    #[test]
    fn redis_url_from_value_or_secret() {
        let env1 = env(&spec());
        assert_eq!(
            find(&env1, "REDIS_URL").value.as_deref(),
            Some("redis://redis:6379")
        );
        let mut s = spec();
        s.redis.url = None;
        s.redis.url_secret_ref = Some(SecretKeyRef {
            name: "redis-auth".into(),
            key: "url".into(),
        });
        let env2 = env(&s);
        let r = find(&env2, "REDIS_URL");
        assert_eq!(r.value, None);
        let sel = r
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("redis-auth", "url"));
    }

    #[test]
    fn rooms_drain_and_identity_env() {
        let mut s = spec();
        s.rooms.max_players_per_room = 42;
        s.rooms.betting_window_ms = 1500;
        s.rooms.round_pause_ms = 250;
        s.drain.timeout_seconds = 60;
        s.drain.reconnect_spread_seconds = 9;
        let env = env(&s);
        let v = |n: &str| find(&env, n).value.clone().unwrap();
        assert_eq!(v("ROOM_CAPACITY"), "42");
        assert_eq!(v("BETTING_WINDOW_MS"), "1500");
        assert_eq!(v("RESULT_PAUSE_MS"), "250");
        assert_eq!(v("DRAIN_TIMEOUT_SECONDS"), "60");
        assert_eq!(v("RECONNECT_SPREAD_SECONDS"), "9");
        let path = |n: &str| {
            find(&env, n)
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path
                .clone()
        };
        assert_eq!(path("POD_NAME"), "metadata.name");
        assert_eq!(path("POD_NAMESPACE"), "metadata.namespace");
        assert_eq!(path("POD_IP"), "status.podIP");
    }

    #[test]
    fn hardening() {
        let p = pod_security_context();
        assert_eq!(p.run_as_non_root, Some(true));
        assert_eq!(p.run_as_user, Some(65532));
        assert_eq!(p.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = container_security_context();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.read_only_root_filesystem, Some(true));
        assert_eq!(c.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    }

    #[test]
    fn default_and_explicit_resources() {
        let d = resources(None);
        let req = d.requests.unwrap();
        assert_eq!(req["cpu"].0, "250m");
        assert_eq!(req["memory"].0, "256Mi");
        assert_eq!(d.limits.unwrap()["memory"].0, "512Mi");
        let custom = ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
            ..Default::default()
        };
        assert_eq!(resources(Some(&custom)), custom);
    }

    #[test]
    fn probes_use_the_admin_port() {
        let r = readiness_probe();
        let get = r.http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some("/readyz"));
        assert_eq!(get.port, IntOrString::String("admin".into()));
        assert_eq!(r.period_seconds, Some(1));
        assert_eq!(r.failure_threshold, Some(1));
        let l = liveness_probe();
        assert_eq!(l.http_get.unwrap().path.as_deref(), Some("/healthz"));
        assert_eq!(l.failure_threshold, Some(3));
    }
}
