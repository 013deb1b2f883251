//! The engine Deployment: `gameserver engine`, running rounds and the ledger.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::{self, Tier};
use super::meta::{names, Component, Owner};
use super::pod::{self, ADMIN_PORT_NAME};
use crate::crd::GameFleetSpec;

/// Engines hand their rooms to a live engine on shutdown, so a rollout starts the new engine
/// first (surge 1) and never stops one before its replacement is ready (maxUnavailable 0).
pub const MAX_SURGE: i32 = 1;

/// Engines have no player port; only the admin port (see the gateway for why `$(POD_IP)`).
pub fn args(spec: &GameFleetSpec) -> Vec<String> {
    vec![
        "engine".into(),
        format!("--admin-listen=$(POD_IP):{}", spec.engine.admin_port),
    ]
}

/// The common environment (which carries the drain budget, `DRAIN_TIMEOUT_SECONDS`, read by
/// both roles: the engine gives its rooms up before the kubelet's SIGKILL) plus the admin API
/// token when one is configured.
pub fn env(spec: &GameFleetSpec) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    let mut env = pod::env(spec);
    if let Some(r) = &spec.auth.admin_token_secret_ref {
        env.push(pod::secret("ADMIN_TOKEN", r));
    }
    // Only engines touch the ledger.
    if let Some(l) = &spec.redis.ledger {
        env.extend(pod::redis_url(
            "LEDGER_REDIS_URL",
            l.url.as_deref(),
            l.url_secret_ref.as_ref(),
        ));
    }
    if spec.redis.allow_ephemeral_ledger {
        env.push(pod::value("ALLOW_EPHEMERAL_LEDGER", "true"));
    }
    if let Some(d) = spec.demo.as_ref().filter(|d| d.enabled) {
        env.push(pod::value(
            "STARTING_BALANCE",
            d.starting_balance.to_string(),
        ));
    }
    env
}

/// The engine image: its own, or the gateway's (one binary runs both roles).
pub fn image(spec: &GameFleetSpec) -> String {
    spec.engine
        .image
        .clone()
        .unwrap_or_else(|| spec.gateway.image.clone())
}

pub fn build(spec: &GameFleetSpec, owner: &Owner, replicas: i32) -> Deployment {
    let e = &spec.engine;
    let container = Container {
        name: "engine".into(),
        image: Some(image(spec)),
        args: Some(args(spec)),
        ports: Some(vec![pod::port(ADMIN_PORT_NAME, e.admin_port)]),
        env: Some(env(spec)),
        resources: Some(pod::resources(e.resources.as_ref())),
        ..Default::default()
    };
    deployment::build(
        spec,
        owner,
        Tier {
            component: Component::Engine,
            name: names::engine(&owner.name),
            replicas,
            container,
            max_surge: IntOrString::Int(MAX_SURGE),
            min_ready_seconds: None,
            node_selector: &e.node_selector,
            tolerations: &e.tolerations,
            affinity: &e.affinity,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::test_support::{fleet, spec};

    fn deploy(spec: &GameFleetSpec, replicas: i32) -> Deployment {
        build(spec, &Owner::of(&fleet()).unwrap(), replicas)
    }

    #[test]
    fn demo_mode_credits_a_starting_balance_only_when_enabled() {
        let balance = |s: &GameFleetSpec| {
            env(s)
                .into_iter()
                .find(|e| e.name == "STARTING_BALANCE")
                .and_then(|e| e.value)
        };
        let mut s = spec();
        assert_eq!(balance(&s), None);
        s.demo = Some(crate::crd::DemoSpec {
            enabled: false,
            starting_balance: 250,
        });
        assert_eq!(balance(&s), None);
        s.demo = Some(crate::crd::DemoSpec {
            enabled: true,
            starting_balance: 250,
        });
        assert_eq!(balance(&s).as_deref(), Some("250"));
    }

    #[test]
    fn metadata_replicas_selector() {
        let d = deploy(&spec(), 2);
        assert_eq!(d.metadata.name.as_deref(), Some("dice-engine"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("games"));
        assert_eq!(
            d.metadata.owner_references.as_ref().unwrap()[0].kind,
            "GameFleet"
        );
        let s = d.spec;
        assert_eq!(s.replicas, Some(2));
        assert_eq!(
            s.selector.match_labels.unwrap()["app.kubernetes.io/component"],
            "engine"
        );
        assert_eq!(
            s.template.metadata.unwrap().labels.unwrap()["app.kubernetes.io/component"],
            "engine"
        );
        let ru = s.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(ru.max_surge, Some(IntOrString::Int(1)));
    }

    #[test]
    fn image_defaults_to_the_gateway_image() {
        let mut sp = spec();
        assert_eq!(image(&sp), "ghcr.io/gamefleet/gameserver:1.0.0");
        sp.engine.image = Some("example/engine:2".into());
        let d = deploy(&sp, 1);
        let c = &d.spec.template.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("example/engine:2"));
    }

    #[test]
    fn container() {
        let mut sp = spec();
        sp.engine.admin_port = 9500;
        sp.drain.timeout_seconds = 20;
        sp.engine.node_selector = BTreeMap::from([("pool".to_string(), "cpu".to_string())]);
        let d = deploy(&sp, 1);
        let p = d.spec.template.spec.unwrap();
        let c = &p.containers[0];
        assert_eq!(c.name, "engine");
        assert_eq!(
            c.args.clone().unwrap(),
            vec!["engine", "--admin-listen=$(POD_IP):9500"]
        );
        let ports = c.ports.clone().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("admin"), 9500)
        );
        assert_eq!(c.env.clone().unwrap(), env(&sp));
        assert_eq!(c.readiness_probe, Some(pod::readiness_probe()));
        assert_eq!(c.liveness_probe, Some(pod::liveness_probe()));
        assert_eq!(c.security_context, Some(pod::container_security_context()));
        assert_eq!(c.resources, Some(pod::resources(None)));
        assert_eq!(p.termination_grace_period_seconds, Some(30));
        assert_eq!(p.security_context, Some(pod::pod_security_context()));
        assert_eq!(p.node_selector, Some(sp.engine.node_selector.clone()));
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn an_ephemeral_ledger_is_allowed_only_when_asked_and_only_to_engines() {
        let mut sp = spec();
        let has = |env: &[k8s_openapi::api::core::v1::EnvVar]| {
            env.iter()
                .find(|e| e.name == "ALLOW_EPHEMERAL_LEDGER")
                .map(|e| e.value.clone())
        };
        assert_eq!(
            has(&env(&sp)),
            None,
            "engines refuse a ledger without AOF by default"
        );
        sp.redis.allow_ephemeral_ledger = true;
        assert_eq!(has(&env(&sp)), Some(Some("true".into())));
        assert_eq!(
            has(&crate::build::gateway_deployment::env(&sp)),
            None,
            "gateways have no ledger"
        );
    }

    #[test]
    fn engine_env_adds_admin_token_and_shares_the_drain_timeout_name() {
        let mut sp = spec();
        sp.drain.timeout_seconds = 20;
        let find = |env: &[k8s_openapi::api::core::v1::EnvVar], n: &str| {
            env.iter().find(|e| e.name == n).cloned()
        };
        let e = env(&sp);
        assert_eq!(&e[..pod::env(&sp).len()], pod::env(&sp).as_slice());
        assert_eq!(
            find(&e, "DRAIN_TIMEOUT_SECONDS").unwrap().value.as_deref(),
            Some("20"),
            "the gateway's name and unit"
        );
        assert!(
            find(&e, "DRAIN_TIMEOUT_MS").is_none(),
            "the old engine-only name is not set"
        );
        assert!(
            find(&e, "ADMIN_TOKEN").is_none(),
            "no admin API unless configured"
        );
        sp.auth.admin_token_secret_ref = Some(crate::crd::SecretKeyRef {
            name: "dice-secrets".into(),
            key: "admin-token".into(),
        });
        let t = find(&env(&sp), "ADMIN_TOKEN").unwrap();
        assert_eq!(t.value, None);
        assert!(
            find(&env(&sp), "LEDGER_REDIS_URL").is_none(),
            "one Redis unless split"
        );
        sp.redis.ledger = Some(crate::crd::RedisEndpoint {
            url: None,
            url_secret_ref: Some(crate::crd::SecretKeyRef {
                name: "ledger-redis".into(),
                key: "url".into(),
            }),
        });
        let l = find(&env(&sp), "LEDGER_REDIS_URL").unwrap();
        assert_eq!(l.value, None, "from the Secret, never inline");
        assert_eq!(
            l.value_from.unwrap().secret_key_ref.unwrap().name,
            "ledger-redis"
        );
        assert!(
            find(
                &crate::build::gateway_deployment::env(&sp),
                "LEDGER_REDIS_URL"
            )
            .is_none(),
            "gateways never see the ledger"
        );
        let sel = t.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("dice-secrets", "admin-token")
        );
    }
}
