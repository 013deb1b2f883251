//! What the autoscaling scenarios share: their cluster and in-process operator, the fleet they
//! scale, its players' URL, `gameserver bench` runs that drive it, and pod readiness.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gamefleet_operator::autoscale::{Autoscaler, AutoscalerConfig};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::{install_redis_and_secret, prepare, start_operator_with, RunningOperator};

pub fn gameserver_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    for d in [dir, dir.parent().unwrap()] {
        let p = d.join("gameserver");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "gameserver binary not found next to {}: run `cargo build --workspace --bins`",
        exe.display()
    );
}

/// A `gameserver bench` run in its own process group (it spawns workers), killed with the group.
pub struct Bench {
    child: Option<Child>,
    pub started: Instant,
}

impl Bench {
    /// `connections` players signed with `jwt`, named `<prefix>-<n>`, in 20 rooms.
    pub fn start(jwt: &str, url: &str, connections: usize, prefix: &str, extra: &[&str]) -> Bench {
        let mut cmd = Command::new(gameserver_bin());
        cmd.args(["bench", "--url", url, "--connections"])
            .arg(connections.to_string())
            // 20 rooms: the 1,500-connection surge fits the default room capacity (100 players
            // per room, counted across gateways) with room to spare.
            .args([
                "--rooms",
                "20",
                "--connect-rate",
                "5000",
                "--user-prefix",
                prefix,
                "--json",
            ])
            .args(extra)
            .env("JWT_SECRET", jwt)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            // Not read while the bench runs: a full pipe would stall its players (and the
            // gateways would then close them for missed heartbeats).
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        Bench {
            child: Some(cmd.spawn().expect("bench starts")),
            started: Instant::now(),
        }
    }

    pub fn kill_group(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }

    pub async fn report(mut self, timeout: Duration) -> Value {
        let child = self.child.take().expect("bench running");
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .expect("bench finishes in time")
            .expect("bench output");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("bench report is not JSON ({e}): {text}"))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Ready and not terminating.
pub fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A fleet in `ns` of one gateway (at most `max_gateways`, `connections_per_pod` each, scaled
/// down after `scale_down_window_s`) and one engine, autoscaled every second at 100 % target
/// utilisation. The latency targets are out of reach: debug-built gateways announcing a join
/// storm on a busy 2-core machine can pass any realistic one, and these scenarios are about the
/// connection signal (the latency signal is tested in `autoscale::decide`).
pub fn autoscaled_fleet(
    ns: &str,
    connections_per_pod: u32,
    max_gateways: u32,
    scale_down_window_s: u32,
) -> Value {
    json!({
        "apiVersion": "gamefleet.dev/v1alpha1",
        "kind": "GameFleet",
        "metadata": {"name": "dice", "namespace": ns},
        "spec": {
            "gateway": {
                "image": "ghcr.io/gamefleet/gameserver:test",
                "replicas": 1,
                "minReadySeconds": 0,
                "connectionsPerPod": connections_per_pod,
            },
            "engine": {"replicas": 1},
            "rooms": {"bettingWindowMs": 500, "roundPauseMs": 100},
            "latency": {"p50TargetMs": 30000, "p99TargetMs": 60000},
            "redis": {"urlSecretRef": {"name": "dice-secrets", "key": "redis-url"}},
            "auth": {
                "jwtSecretRef": {"name": "dice-secrets", "key": "jwt-secret"},
                "adminTokenSecretRef": {"name": "dice-secrets", "key": "admin-token"},
            },
            "drain": {"timeoutSeconds": 5, "reconnectSpreadSeconds": 1},
            "autoscaling": {
                "enabled": true,
                "syncIntervalSeconds": 1,
                "targetUtilizationPercent": 100,
                "gateway": {
                    "minReplicas": 1,
                    "maxReplicas": max_gateways,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": scale_down_window_s}},
                },
                "engine": {"minReplicas": 1, "maxReplicas": 1},
            },
        }
    })
}

/// The players' WebSocket URL through the fleet's player Service (its cluster IP).
pub async fn players_url(client: &kube::Client, ns: &str) -> String {
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("dice-players")
        .await
        .expect("the player Service");
    let spec = svc.spec.expect("a Service spec");
    let ip = spec.cluster_ip.expect("a cluster IP");
    let port = spec
        .ports
        .and_then(|p| p.first().map(|p| p.port))
        .expect("a port");
    format!("ws://{ip}:{port}/ws")
}

/// A simulated cluster with the CRD and `ns` holding the dev Redis and the `dice-secrets`
/// Secret (`jwt`, `admin`), a client acting as `test_user`, and an operator with the
/// autoscaler (1 s scrape timeout) running in this process as `operator`.
pub async fn autoscaling_cluster(
    ns: &str,
    test_user: &str,
    operator: &str,
    jwt: &str,
    admin: &str,
) -> (kubesim::Cluster, kube::Client, RunningOperator) {
    let cluster = super::cluster().await;
    let client = cluster.client_as(test_user).await.unwrap();
    prepare(&client, &[ns]).await;
    install_redis_and_secret(
        &client,
        ns,
        "dice-secrets",
        &[("jwt-secret", jwt), ("admin-token", admin)],
    )
    .await;
    let operator = start_operator_with(
        &cluster,
        operator,
        None,
        Arc::new(Autoscaler::new(AutoscalerConfig {
            scrape_timeout: Duration::from_secs(1),
        })),
    )
    .await;
    (cluster, client, operator)
}
