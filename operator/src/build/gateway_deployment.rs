//! The gateway Deployment: `gameserver gateway`, holding player WebSockets.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvFromSource, SecretEnvSource};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::{self, Tier};
use super::meta::{names, Component, Owner};
use super::pod::{self, ADMIN_PORT_NAME, PLAYER_PORT_NAME};
use crate::crd::GameFleetSpec;

/// Extra pods a rollout may start before old ones stop. Never below one pod (rounded up), so a
/// rollout always surges rather than dropping capacity (maxUnavailable is 0).
pub const MAX_SURGE: &str = "25%";

/// Listen addresses bind the pod IP, which the kubelet substitutes for `$(POD_IP)`: pods sharing
/// a network namespace (or a host) cannot all bind 0.0.0.0 on the same port.
pub fn args(spec: &GameFleetSpec) -> Vec<String> {
    vec![
        "gateway".into(),
        format!("--listen=$(POD_IP):{}", spec.gateway.player_port),
        format!("--admin-listen=$(POD_IP):{}", spec.gateway.admin_port),
    ]
}

/// How far past `connectionsPerPod` a gateway accepts sockets unless `maxConnections` says.
pub const CONNECTION_HEADROOM: f64 = 4.0;

/// The common environment plus `GATEWAY_ID` (the pod name: the gateway's stable name on the
/// bus), the connection caps, the room names and the token claims the gateway checks.
pub fn env(spec: &GameFleetSpec) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    let mut env = pod::env(spec);
    env.push(pod::field("GATEWAY_ID", "metadata.name"));
    let g = &spec.gateway;
    env.push(pod::value(
        "MAX_CONNECTIONS",
        max_connections(g.connections_per_pod, g.max_connections).to_string(),
    ));
    env.push(pod::value(
        "MAX_CONNECTIONS_PER_IP",
        g.max_connections_per_ip.to_string(),
    ));
    if let Some(p) = &spec.rooms.name_pattern {
        env.push(pod::value("ROOM_PATTERN", p.clone()));
    }
    if let Some(a) = &spec.auth.audience {
        env.push(pod::value("JWT_AUDIENCE", a.clone()));
    }
    if let Some(i) = &spec.auth.issuer {
        env.push(pod::value("JWT_ISSUER", i.clone()));
    }
    if spec.demo.as_ref().is_some_and(|d| d.enabled) {
        env.push(pod::value("DEMO_PAGE", "true"));
    }
    env
}

/// The per-gateway socket cap: as configured, else `connectionsPerPod` × [`CONNECTION_HEADROOM`].
pub fn max_connections(connections_per_pod: i32, configured: Option<i32>) -> i64 {
    configured.map_or_else(
        || (f64::from(connections_per_pod) * CONNECTION_HEADROOM).ceil() as i64,
        i64::from,
    )
}

/// The named JWT keys: every key of the Secret as `JWT_KEY_<kid>`.
pub fn env_from(spec: &GameFleetSpec) -> Option<Vec<EnvFromSource>> {
    let r = spec.auth.jwt_keys_secret_ref.as_ref()?;
    Some(vec![EnvFromSource {
        prefix: Some("JWT_KEY_".into()),
        secret_ref: Some(SecretEnvSource {
            name: r.name.clone(),
            optional: Some(false),
        }),
        ..Default::default()
    }])
}

pub fn build(spec: &GameFleetSpec, owner: &Owner, replicas: i32) -> Deployment {
    let g = &spec.gateway;
    let container = Container {
        name: "gateway".into(),
        image: Some(g.image.clone()),
        args: Some(args(spec)),
        ports: Some(vec![
            pod::port(PLAYER_PORT_NAME, g.player_port),
            pod::port(ADMIN_PORT_NAME, g.admin_port),
        ]),
        env: Some(env(spec)),
        env_from: env_from(spec),
        resources: Some(pod::resources(g.resources.as_ref())),
        ..Default::default()
    };
    deployment::build(
        spec,
        owner,
        Tier {
            component: Component::Gateway,
            name: names::gateway(&owner.name),
            replicas,
            container,
            max_surge: IntOrString::String(MAX_SURGE.into()),
            min_ready_seconds: Some(g.min_ready_seconds),
            node_selector: &g.node_selector,
            tolerations: &g.tolerations,
            affinity: &g.affinity,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, PodSpec, Toleration};

    use super::*;
    use crate::test_support::{fleet, spec};

    fn deploy(spec: &GameFleetSpec, replicas: i32) -> Deployment {
        build(spec, &Owner::of(&fleet()).unwrap(), replicas)
    }

    fn container(d: &Deployment) -> Container {
        d.spec.template.spec.as_ref().unwrap().containers[0].clone()
    }

    fn pod_spec(d: &Deployment) -> PodSpec {
        d.spec.template.spec.clone().unwrap()
    }

    #[test]
    fn metadata() {
        let d = deploy(&spec(), 3);
        assert_eq!(d.metadata.name.as_deref(), Some("dice-gateway"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("games"));
        assert_eq!(
            d.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"],
            "gateway"
        );
        assert_eq!(
            d.metadata.owner_references.as_ref().unwrap()[0].name,
            "dice"
        );
    }

    #[test]
    fn replicas_and_selector() {
        let d = deploy(&spec(), 7);
        let s = d.spec;
        assert_eq!(s.replicas, Some(7));
        let sel = s.selector.match_labels.clone().unwrap();
        assert_eq!(sel.len(), 3);
        assert_eq!(sel["app.kubernetes.io/component"], "gateway");
        assert_eq!(sel["app.kubernetes.io/instance"], "dice");
        // Every selector label is on the pod template.
        let pod_labels = s
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in &sel {
            assert_eq!(pod_labels.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn rolling_update_never_drops_capacity() {
        let mut sp = spec();
        sp.gateway.min_ready_seconds = 8;
        let d = deploy(&sp, 3);
        let s = d.spec;
        assert_eq!(s.min_ready_seconds, Some(8));
        let strategy = s.strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let ru = strategy.rolling_update.unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
    }

    #[test]
    fn container_image_args_ports() {
        let mut sp = spec();
        sp.gateway.player_port = 7000;
        sp.gateway.admin_port = 7001;
        sp.gateway.image_pull_policy = crate::crd::PullPolicy::Always;
        let c = container(&deploy(&sp, 1));
        assert_eq!(c.name, "gateway");
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/gamefleet/gameserver:1.0.0")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.command, None,
            "the image entrypoint is the gameserver binary"
        );
        assert_eq!(
            c.args.unwrap(),
            vec![
                "gateway",
                "--listen=$(POD_IP):7000",
                "--admin-listen=$(POD_IP):7001"
            ]
        );
        let ports = c.ports.unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("player"), 7000)
        );
        assert_eq!(
            (ports[1].name.as_deref(), ports[1].container_port),
            (Some("admin"), 7001)
        );
    }

    #[test]
    fn container_env_probes_resources_security() {
        let c = container(&deploy(&spec(), 1));
        let env = c.env.unwrap();
        let common = pod::env(&spec());
        assert_eq!(env[..common.len()], common[..]);
        let id = &env[common.len()];
        assert_eq!(id.name, "GATEWAY_ID");
        assert_eq!(
            id.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        // POD_IP must be defined for $(POD_IP) in args to expand.
        assert!(env.iter().any(|e| e.name == "POD_IP"));
        assert_eq!(c.readiness_probe, Some(pod::readiness_probe()));
        assert_eq!(c.liveness_probe, Some(pod::liveness_probe()));
        assert_eq!(c.resources, Some(pod::resources(None)));
        assert_eq!(c.security_context, Some(pod::container_security_context()));
    }

    #[test]
    fn pod_spec_hardening_and_drain_budget() {
        let mut sp = spec();
        sp.drain.timeout_seconds = 50;
        let p = pod_spec(&deploy(&sp, 1));
        assert_eq!(p.termination_grace_period_seconds, Some(60));
        assert_eq!(p.security_context, Some(pod::pod_security_context()));
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.enable_service_links, Some(false));
        assert_eq!(p.node_selector, None);
        assert_eq!(p.tolerations, None);
        assert_eq!(p.affinity, None);
    }

    #[test]
    fn scheduling_overrides() {
        let mut sp = spec();
        sp.gateway.node_selector = BTreeMap::from([("pool".to_string(), "edge".to_string())]);
        sp.gateway.tolerations = vec![Toleration {
            key: Some("edge".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }];
        sp.gateway.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity::default()),
            ..Default::default()
        });
        let p = pod_spec(&deploy(&sp, 1));
        assert_eq!(p.node_selector, Some(sp.gateway.node_selector.clone()));
        assert_eq!(p.tolerations, Some(sp.gateway.tolerations.clone()));
        assert_eq!(p.affinity, sp.gateway.affinity);
    }

    #[test]
    fn connection_caps_room_names_claims_and_named_keys_reach_the_gateway() {
        let mut s = spec();
        let env_of = |s: &GameFleetSpec, name: &str| {
            env(s)
                .into_iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value)
        };
        assert_eq!(env_of(&s, "MAX_CONNECTIONS").as_deref(), Some("20000"));
        assert_eq!(env_of(&s, "MAX_CONNECTIONS_PER_IP").as_deref(), Some("0"));
        assert_eq!(env_of(&s, "ROOM_PATTERN"), None);
        assert!(env_from(&s).is_none());
        s.gateway.max_connections = Some(0);
        s.rooms.name_pattern = Some("dice-[0-9]{1,3}".into());
        s.auth.audience = Some("dice".into());
        s.auth.issuer = Some("https://login.example".into());
        s.auth.jwt_keys_secret_ref = Some(crate::crd::SecretRef {
            name: "dice-jwt-keys".into(),
        });
        assert_eq!(env_of(&s, "MAX_CONNECTIONS").as_deref(), Some("0"));
        assert_eq!(
            env_of(&s, "ROOM_PATTERN").as_deref(),
            Some("dice-[0-9]{1,3}")
        );
        assert_eq!(env_of(&s, "JWT_AUDIENCE").as_deref(), Some("dice"));
        assert_eq!(
            env_of(&s, "JWT_ISSUER").as_deref(),
            Some("https://login.example")
        );
        let from = env_from(&s).unwrap();
        assert_eq!(from[0].prefix.as_deref(), Some("JWT_KEY_"));
        assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "dice-jwt-keys");
        assert_eq!(max_connections(333, None), 1332);
    }

    #[test]
    fn demo_mode_turns_the_page_on_only_when_enabled() {
        let demo = |s: &GameFleetSpec| env(s).into_iter().find(|e| e.name == "DEMO_PAGE");
        let mut s = spec();
        assert!(demo(&s).is_none());
        s.demo = Some(crate::crd::DemoSpec::default());
        assert!(
            demo(&s).is_none(),
            "a demo section alone must not open the page"
        );
        s.demo = Some(crate::crd::DemoSpec {
            enabled: true,
            ..Default::default()
        });
        assert_eq!(demo(&s).and_then(|e| e.value).as_deref(), Some("true"));
    }

    #[test]
    fn status_is_never_applied() {
        assert!(deploy(&spec(), 1).status.is_none());
    }
}
