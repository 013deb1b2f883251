//! Fixtures shared by unit tests.

use kube::api::ObjectMeta;

use crate::crd::{
    AuthSpec, AutoscalingSpec, DrainSpec, EngineSpec, GameFleet, GameFleetSpec, GatewaySpec,
    LatencySpec, PdbSpec, PlayerServiceSpec, PullPolicy, RedisSpec, RoomsSpec, SecretKeyRef,
};

/// A valid spec with every default spelled out.
pub fn spec() -> GameFleetSpec {
    GameFleetSpec {
        gateway: GatewaySpec {
            image: "ghcr.io/gamefleet/gameserver:1.0.0".into(),
            image_pull_policy: PullPolicy::IfNotPresent,
            replicas: 3,
            resources: None,
            player_port: 8080,
            admin_port: 9090,
            service: PlayerServiceSpec::default(),
            connections_per_pod: 5000,
            max_connections: None,
            max_connections_per_ip: 0,
            min_ready_seconds: 5,
            pod_disruption_budget: PdbSpec::default(),
            node_selector: Default::default(),
            tolerations: vec![],
            affinity: None,
        },
        engine: EngineSpec::default(),
        rooms: RoomsSpec::default(),
        latency: LatencySpec::default(),
        redis: RedisSpec {
            url: Some("redis://redis:6379".into()),
            url_secret_ref: None,
            ledger: None,
            allow_ephemeral_ledger: false,
        },
        auth: AuthSpec {
            jwt_secret_ref: SecretKeyRef {
                name: "dice-secrets".into(),
                key: "jwt-secret".into(),
            },
            admin_token_secret_ref: None,
            jwt_keys_secret_ref: None,
            audience: None,
            issuer: None,
        },
        autoscaling: AutoscalingSpec::default(),
        drain: DrainSpec::default(),
        demo: None,
    }
}

/// A fleet as the API server would return it (namespace, uid, generation set).
pub fn fleet() -> GameFleet {
    fleet_with(spec())
}

pub fn fleet_with(spec: GameFleetSpec) -> GameFleet {
    let mut f = GameFleet::new("dice", spec);
    f.metadata = ObjectMeta {
        name: Some("dice".into()),
        namespace: Some("games".into()),
        uid: Some("5b1c7c6e-1111-4222-8333-944455556666".into()),
        generation: Some(4),
        ..Default::default()
    };
    f
}
