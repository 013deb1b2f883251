//! The `GameFleet` custom resource (`gamefleet.dev/v1alpha1`).
//!
//! These types are the single source of truth for the CRD: `gamefleet-operator crd` prints the
//! schema generated from them, defaults come from the serde defaults below (schemars copies them
//! into the schema), and rules the API server can check are CEL `x-kubernetes-validations`.
//! Everything the API server cannot check lives in [`crate::validate`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "gamefleet.dev";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Desired state of a fleet of `gameserver` gateways and engines.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gamefleet.dev",
    version = "v1alpha1",
    kind = "GameFleet",
    plural = "gamefleets",
    singular = "gamefleet",
    shortname = "gf",
    category = "gamefleet",
    namespaced,
    status = "GameFleetStatus",
    derive = "PartialEq",
    doc = "A fleet of gameserver gateways (player WebSockets) and engines (rounds and ledger).",
    scale(
        spec_replicas_path = ".spec.gateway.replicas",
        status_replicas_path = ".status.gateway.replicas",
        label_selector_path = ".status.gatewaySelector"
    ),
    // Raw JSON: the structured printcolumn(...) form repeats keys, which clippy flags.
    printcolumn = r#"{"name":"Gateways","type":"string","jsonPath":".status.gatewaysReady","description":"Ready/desired gateway pods"}"#,
    printcolumn = r#"{"name":"Engines","type":"string","jsonPath":".status.enginesReady","description":"Ready/desired engine pods"}"#,
    printcolumn = r#"{"name":"Connections","type":"integer","jsonPath":".status.totalConnections","description":"Player connections over all gateways"}"#,
    printcolumn = r#"{"name":"P99-ms","type":"integer","jsonPath":".status.observedP99Ms","description":"Observed p99 event delivery latency"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GameFleetSpec {
    /// Player-facing WebSocket gateways.
    pub gateway: GatewaySpec,
    /// Engines that run rounds and the ledger.
    #[serde(default)]
    pub engine: EngineSpec,
    /// Room limits and round timing passed to every pod.
    #[serde(default)]
    pub rooms: RoomsSpec,
    /// Latency objectives (the autoscaler treats p99 as a scaling signal).
    #[serde(default)]
    pub latency: LatencySpec,
    /// The Redis that connects gateways and engines.
    pub redis: RedisSpec,
    /// Player authentication.
    pub auth: AuthSpec,
    /// Autoscaling bounds and behaviour per tier.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Connection draining on rollouts and scale-downs.
    #[serde(default)]
    pub drain: DrainSpec,
    /// A fleet to try in a browser: never in production (anyone can log in as anyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo: Option<DemoSpec>,
}

/// Gateway tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Container image running the `gameserver` binary.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy (Always, IfNotPresent, Never).
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: PullPolicy,
    /// Gateway pods when autoscaling is off (also the target of `kubectl scale`).
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Container resources; defaults to requests of 250m CPU / 256Mi memory and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container port players connect to.
    #[serde(default = "default_player_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub player_port: i32,
    /// Container port serving /metrics, /healthz and /readyz.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// The player Service in front of the gateways.
    #[serde(default)]
    pub service: PlayerServiceSpec,
    /// Capacity target: player connections one gateway pod should hold.
    #[serde(default = "default_connections_per_pod")]
    #[schemars(range(min = 1, max = 1000000))]
    pub connections_per_pod: i32,
    /// Open player sockets one gateway accepts before answering 503 (0 = unlimited).
    /// Defaults to 4 × `connectionsPerPod`: far enough above the autoscaler's target that a
    /// surge is seen (and scaled for) rather than refused, a hard stop before a flood takes
    /// the pod's memory and file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000000))]
    pub max_connections: Option<i32>,
    /// Open player sockets from one client address per gateway before answering 429
    /// (0 = unlimited, the default). Only useful when players' own addresses reach the pods
    /// (e.g. `externalTrafficPolicy: Local`): behind a proxy or a node's SNAT every player
    /// shares one address. Players behind one NAT share one too: keep it generous.
    #[serde(default = "default_max_connections_per_ip")]
    #[schemars(range(min = 0, max = 10000000))]
    pub max_connections_per_ip: i32,
    /// Seconds a new pod must be ready before it counts as available during a rollout.
    #[serde(default = "default_min_ready_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub min_ready_seconds: i32,
    /// PodDisruptionBudget for gateways.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
    /// Scheduling: node selector for gateway pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Scheduling: tolerations for gateway pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling: affinity for gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// Engine tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EngineSpec {
    /// Container image; defaults to the gateway image (one binary runs both roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Engine pods when autoscaling is off.
    #[serde(default = "default_engine_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Container resources; defaults as for gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container port serving /metrics, /healthz and /readyz.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// Scheduling: node selector for engine pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Scheduling: tolerations for engine pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling: affinity for engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_engine_replicas(),
            resources: None,
            admin_port: default_admin_port(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

/// Image pull policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Service type of the player Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Service players connect to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlayerServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port players connect to.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations for the Service (e.g. cloud load-balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for PlayerServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// PodDisruptionBudget for gateways.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the PodDisruptionBudget.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Gateway pods that voluntary disruptions may take down at once.
    #[serde(default = "default_pdb_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: default_pdb_max_unavailable(),
        }
    }
}

/// Room limits and round timing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomsSpec {
    /// Players one room admits (`ROOM_FULL` beyond it).
    #[serde(default = "default_max_players_per_room")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_players_per_room: i32,
    /// How long a round accepts bets, in milliseconds.
    #[serde(default = "default_betting_window_ms")]
    #[schemars(range(min = 100, max = 3600000))]
    pub betting_window_ms: i32,
    /// Pause between a round's result and the next round, in milliseconds.
    #[serde(default = "default_round_pause_ms")]
    #[schemars(range(min = 0, max = 3600000))]
    pub round_pause_ms: i32,
    /// Room names players may join: a regular expression matched against the whole `gameId`
    /// (e.g. `dice-[0-9]{1,3}` or `lobby|vip`). Unset: any name of letters, digits and
    /// `_ . : -` up to 64 characters. A fleet that knows its rooms should list them: every
    /// name ever used keeps a few keys in Redis for a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub name_pattern: Option<String>,
    /// Rooms with players at once across the fleet (0 = unlimited); a join that would open
    /// another gets `ROOM_LIMIT`.
    #[serde(default = "default_max_live_rooms")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_live_rooms: i32,
    /// Bets one player may place per second across all gateways (0 = unlimited); more get
    /// `RATE_LIMITED`.
    #[serde(default = "default_bets_per_second_per_user")]
    #[schemars(range(min = 0, max = 100000))]
    pub bets_per_second_per_user: i32,
}

impl Default for RoomsSpec {
    fn default() -> Self {
        Self {
            max_players_per_room: default_max_players_per_room(),
            betting_window_ms: default_betting_window_ms(),
            round_pause_ms: default_round_pause_ms(),
            name_pattern: None,
            max_live_rooms: default_max_live_rooms(),
            bets_per_second_per_user: default_bets_per_second_per_user(),
        }
    }
}

/// Latency objectives for event delivery (engine emission → gateway send).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.p50TargetMs <= self.p99TargetMs").message("latency.p50TargetMs must be <= latency.p99TargetMs"))]
pub struct LatencySpec {
    /// Median delivery latency target in milliseconds.
    #[serde(default = "default_p50_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub p50_target_ms: i32,
    /// 99th percentile delivery latency target in milliseconds.
    #[serde(default = "default_p99_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub p99_target_ms: i32,
}

impl Default for LatencySpec {
    fn default() -> Self {
        Self {
            p50_target_ms: default_p50_ms(),
            p99_target_ms: default_p99_ms(),
        }
    }
}

/// Where the Redis URL comes from: exactly one of `url` or `urlSecretRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("redis: set exactly one of url or urlSecretRef"))]
pub struct RedisSpec {
    /// Redis URL, e.g. `redis://redis:6379`, or a Redis Cluster's nodes,
    /// `redis+cluster://[user:pass@]redis-0:6379,redis-1:6379` (any of them; the rest are
    /// learned from the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub url: Option<String>,
    /// Secret key holding the Redis URL (use when it carries a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// A separate Redis for the ledger (balances, bet records, rounds, audit stream), passed to
    /// engines as `LEDGER_REDIS_URL`; the one above then carries only the bus. Unset: one Redis
    /// for both. May be a Redis Cluster: `redis+cluster://h1:6379,h2:6379,h3:6379`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<RedisEndpoint>,
    /// Let engines run their ledger on a Redis without AOF persistence (development and tests
    /// only): a restart of such a Redis loses every balance and pending bet. Without it engines
    /// refuse to start on one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_ephemeral_ledger: bool,
}

/// A Redis URL given inline or from a Secret: exactly one of `url` or `urlSecretRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("redis.ledger: set exactly one of url or urlSecretRef"))]
pub struct RedisEndpoint {
    /// Redis URL, e.g. `redis://ledger-redis:6379`, or a Redis Cluster's nodes,
    /// `redis+cluster://[user:pass@]ledger-0:6379,ledger-1:6379` (any of them; the rest are
    /// learned from the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub url: Option<String>,
    /// Secret key holding the Redis URL (either form; use it when the URL carries a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// Player authentication.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding the HS256 JWT secret (passed to pods as `JWT_SECRET`).
    pub jwt_secret_ref: SecretKeyRef,
    /// Secret key holding the bearer token of the engines' admin ledger API (credits, debits,
    /// balances; passed to engines as `ADMIN_TOKEN`). Unset leaves that API disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret_ref: Option<SecretKeyRef>,
    /// A Secret whose every key is a named verification key: key = `kid`, value = its HS256
    /// secret (each at least 32 bytes). Tokens with a `kid` header are verified with that key
    /// only; see docs/operations.md for the rotation procedure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_keys_secret_ref: Option<SecretRef>,
    /// Required `aud` claim of player tokens (unset: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub audience: Option<String>,
    /// Required `iss` claim of player tokens (unset: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub issuer: Option<String>,
}

/// A Secret in the fleet's namespace, all of its keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key in a Secret in the fleet's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Autoscaling per tier (the decision itself is made by the autoscaler; see `scaling`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// When false, `gateway.replicas` and `engine.replicas` stand.
    #[serde(default)]
    pub enabled: bool,
    /// How often load is sampled and a decision made, in seconds.
    #[serde(default = "default_sync_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub sync_interval_seconds: i32,
    /// Target fraction of `gateway.connectionsPerPod` to run at, in percent.
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization_percent: i32,
    /// Engine target: bets waiting in the bet streams (`bet_stream_backlog`) per engine pod.
    #[serde(default = "default_engine_backlog_per_pod")]
    #[schemars(range(min = 1, max = 100000000))]
    pub engine_backlog_per_pod: i32,
    /// Engine target: settled bets per second per engine pod.
    #[serde(default = "default_engine_bets_per_second_per_pod")]
    #[schemars(range(min = 1, max = 100000000))]
    pub engine_bets_per_second_per_pod: i32,
    /// Optional Prometheus server to read the inputs from (instant queries) instead of
    /// scraping the pods. It must scrape the pods' admin ports and label each series with
    /// `namespace` and `pod`; the settled-bets rate is `rate(...[1m])`, so its scrape interval
    /// must be 30 s or less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Gateway bounds and behaviour.
    #[serde(default)]
    pub gateway: TierAutoscaling,
    /// Engine bounds and behaviour.
    #[serde(default)]
    pub engine: TierAutoscaling,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            sync_interval_seconds: default_sync_interval(),
            target_utilization_percent: default_target_utilization(),
            engine_backlog_per_pod: default_engine_backlog_per_pod(),
            engine_bets_per_second_per_pod: default_engine_bets_per_second_per_pod(),
            prometheus_url: None,
            gateway: TierAutoscaling::default(),
            engine: TierAutoscaling::default(),
        }
    }
}

/// Replica bounds and HPA v2-style behaviour for one tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling: minReplicas must be <= maxReplicas"))]
pub struct TierAutoscaling {
    /// Lower bound.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Upper bound.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Scale-up and scale-down rules, as in HorizontalPodAutoscaler v2.
    #[serde(default)]
    pub behavior: ScalingBehavior,
}

impl Default for TierAutoscaling {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            behavior: ScalingBehavior::default(),
        }
    }
}

/// `scaleUp`/`scaleDown` rules (HorizontalPodAutoscaler v2 semantics).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Rules for growing; the stabilization window defaults to 0 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Rules for shrinking; the stabilization window defaults to 300 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// One direction's rules.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations considered (HPA: 0 up, 300 down when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy wins when several allow a change (default Max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Rate limits on the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<ScalingPolicy>,
}

/// How several policies combine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// A rate limit: at most `value` pods (or percent) per `periodSeconds`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub type_: ScalingPolicyType,
    /// Amount of change allowed per period.
    #[schemars(range(min = 1))]
    pub value: i32,
    /// Length of the period in seconds.
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// Unit of a [`ScalingPolicy`].
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingPolicyType {
    Pods,
    Percent,
}

/// Connection draining budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.reconnectSpreadSeconds <= self.timeoutSeconds").message("drain.reconnectSpreadSeconds must be <= drain.timeoutSeconds"))]
pub struct DrainSpec {
    /// Longest a pod may take to drain before it is killed.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Window over which a draining gateway spreads its clients' reconnects.
    #[serde(default = "default_reconnect_spread")]
    #[schemars(range(min = 0, max = 3600))]
    pub reconnect_spread_seconds: i32,
}

impl Default for DrainSpec {
    fn default() -> Self {
        Self {
            timeout_seconds: default_drain_timeout(),
            reconnect_spread_seconds: default_reconnect_spread(),
        }
    }
}

/// Demo mode: the gateways serve the dice page at `/` with a token for any user name at
/// `/dev/token`, and the engines credit every new player a starting balance from the house, so
/// a browser on the player Service can play at once. Authentication is then meaningless: for
/// sandboxes and demos only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DemoSpec {
    /// Turns demo mode on.
    #[serde(default)]
    pub enabled: bool,
    /// Minor units credited once to each player at their first bet.
    #[serde(default = "default_starting_balance")]
    #[schemars(range(min = 1, max = 1000000000000_i64))]
    pub starting_balance: i64,
}

fn default_starting_balance() -> i64 {
    100_000
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            starting_balance: default_starting_balance(),
        }
    }
}

/// Observed state, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GameFleetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Gateway replicas.
    #[serde(default)]
    pub gateway: TierStatus,
    /// Engine replicas.
    #[serde(default)]
    pub engine: TierStatus,
    /// "ready/desired" gateways, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways_ready: Option<String>,
    /// "ready/desired" engines, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines_ready: Option<String>,
    /// Label selector of gateway pods (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_selector: Option<String>,
    /// Player connections over all ready gateways, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_connections: Option<i64>,
    /// Observed p99 event delivery latency in milliseconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_p99_ms: Option<i64>,
    /// When the autoscaler last changed a replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Gateway pods shutting down and draining their players (absent when none are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<DrainingStatus>,
    /// Ready, Progressing, Degraded, ScalingLimited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Gateways draining (terminating) and the player connections they still hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DrainingStatus {
    /// Gateway pods being deleted (rollout, scale-down, eviction) that have not exited yet.
    pub gateways: i32,
    /// `ws_active_connections` summed over the draining gateways whose metrics could be read
    /// (absent when none could).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
}

/// Replica counts of one tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TierStatus {
    /// Replicas the operator asks for.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods ready for at least minReadySeconds.
    #[serde(default)]
    pub available_replicas: i32,
}

fn default_true() -> bool {
    true
}
fn default_pull_policy() -> PullPolicy {
    PullPolicy::IfNotPresent
}
fn default_gateway_replicas() -> i32 {
    2
}
fn default_engine_replicas() -> i32 {
    1
}
fn default_player_port() -> i32 {
    8080
}
fn default_admin_port() -> i32 {
    9090
}
fn default_service_port() -> i32 {
    80
}
fn default_connections_per_pod() -> i32 {
    5000
}
fn default_max_connections_per_ip() -> i32 {
    0
}
fn default_max_live_rooms() -> i32 {
    1000
}
fn default_bets_per_second_per_user() -> i32 {
    10
}
fn default_min_ready_seconds() -> i32 {
    5
}
fn default_pdb_max_unavailable() -> i32 {
    1
}
fn default_max_players_per_room() -> i32 {
    100
}
fn default_betting_window_ms() -> i32 {
    10_000
}
fn default_round_pause_ms() -> i32 {
    3_000
}
fn default_p50_ms() -> i32 {
    25
}
fn default_p99_ms() -> i32 {
    100
}
fn default_sync_interval() -> i32 {
    5
}
fn default_target_utilization() -> i32 {
    80
}
fn default_engine_backlog_per_pod() -> i32 {
    500
}
fn default_engine_bets_per_second_per_pod() -> i32 {
    2000
}
fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_drain_timeout() -> i32 {
    30
}
fn default_reconnect_spread() -> i32 {
    5
}
