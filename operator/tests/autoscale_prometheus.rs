//! Autoscaling from Prometheus (`spec.autoscaling.prometheusUrl`) end to end: a real
//! `prometheus` server scrapes the fleet's real pods in the simulated cluster (file-based
//! discovery kept in step with the ready pods, labelled `namespace` and `pod` as Kubernetes
//! discovery would), and the operator reads its inputs from Prometheus alone. Gateways grow from
//! 1 to 3 under 500 connections at 200 per pod; while Prometheus is down the load leaves and no
//! gateway is removed (missing data never scales down); once Prometheus is back, the fleet
//! shrinks to 1.
//!
//! Needs the `prometheus` binary (scripts/install-tools); without it the test is skipped,
//! except under CI (`CI=true`), where it fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::bench::{autoscaled_fleet, autoscaling_cluster, players_url, ready, Bench};
use common::wait_for;
use gamefleet_operator::crd::GameFleet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const NS: &str = "promscale";
const OPERATOR: &str = "prom-operator";
const TEST: &str = "prom-test";
const SECRET: &str = "prom-test-secret-of-at-least-32-bytes";
const ADMIN: &str = "prom-admin";

/// `$PROMETHEUS`, the repo's tool cache, or `prometheus` on PATH; `None` (skip) outside CI.
fn prometheus_bin() -> Option<PathBuf> {
    let cached = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/gamefleet/tools/bin/prometheus");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    let found = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or(Some(cached).filter(|p| p.is_file()))
        .or(on_path);
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "prometheus not found (CI=true: run scripts/install-tools or set $PROMETHEUS)"
        );
        eprintln!("SKIPPED: prometheus not found (run scripts/install-tools or set $PROMETHEUS)");
    }
    found
}

/// A Prometheus server scraping the targets listed in `<dir>/targets.json` every second.
struct Prometheus {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Prometheus {
    fn new(bin: PathBuf, dir: &Path) -> Prometheus {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        std::fs::write(dir.join("targets.json"), "[]").unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: gamefleet\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                dir.join("targets.json").display()
            ),
        )
        .unwrap();
        Prometheus {
            bin,
            dir: dir.to_path_buf(),
            port,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it is ready.
    async fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let child = Command::new(&self.bin)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{}/-/ready", self.url())])
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s:\n{}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Lists the ready pods of `ns` as scrape targets (their admin port), written atomically.
    fn set_targets(&self, pods: &[Pod]) {
        let groups: Vec<Value> = pods
            .iter()
            .filter(|p| ready(p))
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                Some(json!({
                    "targets": [format!("{ip}:9090")],
                    "labels": {"namespace": NS, "pod": p.metadata.name.clone()?},
                }))
            })
            .collect();
        let tmp = self.dir.join("targets.json.tmp");
        std::fs::write(&tmp, Value::Array(groups).to_string()).unwrap();
        std::fs::rename(&tmp, self.dir.join("targets.json")).unwrap();
    }
}

/// The shared autoscaled fleet (200 connections per gateway, at most 3, a 3 s scale-down
/// window) reading its inputs from `prometheus_url`.
fn fleet(prometheus_url: &str) -> Value {
    let mut f = autoscaled_fleet(NS, 200, 3, 3);
    f["spec"]["autoscaling"]["prometheusUrl"] = json!(prometheus_url);
    f
}

async fn gateway_replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments
        .get("dice-gateway")
        .await
        .ok()
        .and_then(|d| d.spec.replicas)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_connections_read_from_prometheus() {
    let Some(bin) = prometheus_bin() else {
        return;
    };
    let started = Instant::now();
    let (cluster, client, operator) = autoscaling_cluster(NS, TEST, OPERATOR, SECRET, ADMIN).await;
    // The cluster's own scratch directory (removed with it).
    let dir = cluster
        .kubeconfig_path()
        .parent()
        .unwrap()
        .join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let mut prom = Prometheus::new(bin, &dir);
    prom.start().await;
    let metrics = operator.metrics.clone();

    let fleets: Api<GameFleet> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    fleets
        .patch(
            "dice",
            &PatchParams::apply(TEST).force(),
            &Patch::Apply(&fleet(&prom.url())),
        )
        .await
        .expect("fleet applied");

    // Discovery: Prometheus's target list follows the fleet's ready pods, as Kubernetes service
    // discovery would.
    let discovery = {
        let pods = pods.clone();
        let prom_dir = Prometheus {
            bin: PathBuf::new(),
            dir: dir.clone(),
            port: prom.port,
            child: None,
        };
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/instance=dice"))
                    .await
                {
                    prom_dir.set_targets(&list.items);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    // 1. Surge: 500 connections → ceil(500 / 200) = 3 gateways.
    wait_for(
        &cluster,
        NS,
        Duration::from_secs(60),
        "the gateway ready",
        || async {
            let n = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=gateway"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|p| ready(p))
                .count();
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{n} ready"))
            }
        },
    )
    .await;
    let svc_url = players_url(&client, NS).await;
    let surge = Bench::start(
        SECRET,
        &svc_url,
        500,
        "surge",
        &["--duration", "120", "--settle-wait", "0"],
    );
    let requested = wait_for(
        &cluster,
        NS,
        Duration::from_secs(30),
        "gateway Deployment scaled to 3 from Prometheus's numbers",
        || async {
            match gateway_replicas(&deployments).await {
                Some(3) => Ok(surge.started.elapsed()),
                other => Err(format!("replicas {other:?}")),
            }
        },
    )
    .await;
    let text = metrics.render();
    assert!(
        metric(
            &text,
            "gamefleet_autoscaler_input{fleet=\"dice\",input=\"connections\",namespace=\"promscale\"}"
        ) >= 400.0,
        "{text}"
    );
    // Every query the operator made was answered.
    assert_eq!(
        metric(
            &text,
            "gamefleet_autoscaler_scrape_failures_total{tier=\"prometheus\"}"
        ),
        0.0,
        "{text}"
    );

    // 2. Prometheus goes away, then the load leaves: no data, so no scale-down.
    prom.stop().await;
    surge.kill_group();
    drop(surge);
    let dropped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        gateway_replicas(&deployments).await,
        Some(3),
        "missing data never scales down"
    );
    let text = metrics.render();
    assert!(
        metric(
            &text,
            "gamefleet_autoscaler_scrape_failures_total{tier=\"prometheus\"}"
        ) > 0.0,
        "failed queries are counted: {text}"
    );

    // 3. Prometheus is back and sees the empty gateways: the fleet shrinks to 1.
    prom.start().await;
    let shrunk = wait_for(
        &cluster,
        NS,
        Duration::from_secs(30),
        "gateway Deployment scaled down to 1",
        || async {
            match gateway_replicas(&deployments).await {
                Some(1) => Ok(dropped_at.elapsed()),
                other => Err(format!("replicas {other:?}")),
            }
        },
    )
    .await;

    discovery.abort();
    prom.stop().await;
    operator.stop().await;
    cluster.shutdown().await;
    eprintln!(
        "autoscale from prometheus: 3 replicas requested {requested:?} after the surge; down to 1 {shrunk:?} after the load left (6 s of it without Prometheus); total {:?}",
        started.elapsed()
    );
}
