//! Shared helpers of the controller tests: a simulated cluster with the CRD, operators running
//! in-process (the real `runtime::run_with`), bounded waits with clear messages.
#![allow(dead_code)]

pub mod bench;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gamefleet_operator::controller::{NoAdvisor, ScaleAdvisor};
use gamefleet_operator::crd::GameFleet;
use gamefleet_operator::leader::LeaseConfig;
use gamefleet_operator::metrics::Metrics;
use gamefleet_operator::runtime::{run_with, RunConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::CustomResourceExt;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub async fn cluster() -> kubesim::Cluster {
    kubesim::Cluster::start(
        kubesim::ClusterConfig::default().bookmark_interval(Duration::from_millis(500)),
    )
    .await
    .expect("kubesim starts")
}

/// Installs the GameFleet CRD (as generated from the Rust types) and creates `namespaces`.
pub async fn prepare(client: &kube::Client, namespaces: &[&str]) {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &GameFleet::crd())
        .await
        .expect("CRD created");
    for ns in namespaces {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &obj)
            .await
            .expect("namespace created");
    }
}

/// One operator replica running in this process, with its own client and metrics.
pub struct RunningOperator {
    pub identity: String,
    pub metrics: Metrics,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningOperator {
    /// Stops it as SIGTERM would: it stops reconciling and releases the Lease.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("operator stops within 10 s")
            .expect("operator task ends cleanly");
    }

    /// Kills it as a crash would: nothing is released.
    pub fn kill(self) {
        self.task.abort();
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    pub fn reconciles(&self) -> u64 {
        self.metrics.reconciles.get()
    }

    pub fn is_leader(&self) -> bool {
        self.metrics.leader.get() == 1
    }
}

/// Starts an operator (without autoscaler) whose requests the cluster's audit log attributes
/// to user `identity`.
pub async fn start_operator(
    cluster: &kubesim::Cluster,
    identity: &str,
    lease: Option<(Duration, Duration)>,
) -> RunningOperator {
    start_operator_with(cluster, identity, lease, Arc::new(NoAdvisor)).await
}

/// [`start_operator`] with `advisor` deciding replica counts (the autoscaler).
pub async fn start_operator_with(
    cluster: &kubesim::Cluster,
    identity: &str,
    lease: Option<(Duration, Duration)>,
    advisor: Arc<dyn ScaleAdvisor>,
) -> RunningOperator {
    start(cluster, identity, lease, None, advisor).await
}

/// [`start_operator`] watching only `namespace` (`--namespace`, as the chart's `watchNamespace`).
pub async fn start_operator_in(
    cluster: &kubesim::Cluster,
    identity: &str,
    lease: Option<(Duration, Duration)>,
    namespace: &str,
) -> RunningOperator {
    start(
        cluster,
        identity,
        lease,
        Some(namespace.into()),
        Arc::new(NoAdvisor),
    )
    .await
}

async fn start(
    cluster: &kubesim::Cluster,
    identity: &str,
    lease: Option<(Duration, Duration)>,
    namespace: Option<String>,
    advisor: Arc<dyn ScaleAdvisor>,
) -> RunningOperator {
    let client = cluster.client_as(identity).await.expect("operator client");
    let cfg = RunConfig {
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        lease: lease.map(|(lease_duration, renew_interval)| LeaseConfig {
            name: "gamefleet-operator".into(),
            namespace: "default".into(),
            identity: identity.into(),
            lease_duration,
            renew_interval,
        }),
        namespace,
        identity: identity.into(),
    };
    let (tx, rx) = oneshot::channel();
    let (mtx, mrx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let res = run_with(
            client,
            cfg,
            advisor,
            async {
                let _ = rx.await;
            },
            move |op| {
                let _ = mtx.send(op.metrics.clone());
            },
        )
        .await;
        if let Err(e) = res {
            panic!("operator failed: {e}");
        }
    });
    let metrics = mrx.await.expect("operator started");
    RunningOperator {
        identity: identity.into(),
        metrics,
        shutdown: Some(tx),
        task,
    }
}

/// Polls `f` every 100 ms until it returns `Some`; panics after `timeout` naming `what`, with the
/// last observation `f` described (`Err`) and the pods' state and logs of `ns`.
pub async fn wait_for<T, F, Fut>(
    cluster: &kubesim::Cluster,
    ns: &str,
    timeout: Duration,
    what: &str,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() > deadline {
            let pods = pod_report(cluster, ns).await;
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}\n{pods}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every pod of `ns` with its phase and the tail of its log, for failure messages.
pub async fn pod_report(cluster: &kubesim::Cluster, ns: &str) -> String {
    let Ok(client) = cluster.client().await else {
        return String::new();
    };
    let pods = Api::<Pod>::namespaced(client, ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = format!("pods in {ns}:\n");
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        let log = cluster.pod_logs(ns, &name);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        out.push_str(&format!("- {name} {phase:?}\n"));
        for l in tail.into_iter().rev() {
            out.push_str(&format!("    {l}\n"));
        }
    }
    out
}

/// The dev Redis of `examples/redis-dev.yaml` in `ns`, and a Secret `secret` holding `data`
/// plus `redis-url` pointing at the Redis Service's cluster IP (the simulated cluster has no
/// DNS).
pub async fn install_redis_and_secret(
    client: &kube::Client,
    ns: &str,
    secret: &str,
    data: &[(&str, &str)],
) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/redis-dev.yaml"),
    )
    .unwrap();
    for doc in text.split("\n---\n") {
        let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
        match v["kind"].as_str() {
            Some("Deployment") => {
                let d: Deployment = serde_json::from_value(v).unwrap();
                Api::<Deployment>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &d)
                    .await
                    .unwrap();
            }
            Some("Service") => {
                let s: Service = serde_json::from_value(v).unwrap();
                Api::<Service>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &s)
                    .await
                    .unwrap();
            }
            other => panic!("unexpected kind {other:?} in redis-dev.yaml"),
        }
    }
    let redis = Api::<Service>::namespaced(client.clone(), ns)
        .get("redis")
        .await
        .unwrap();
    let ip = redis.spec.unwrap().cluster_ip.expect("redis clusterIP");
    let mut string_data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    string_data.insert("redis-url".into(), json!(format!("redis://{ip}:6379")));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret},
        "stringData": string_data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}
