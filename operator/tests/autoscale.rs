//! Autoscaling end to end in the simulated cluster: the real operator (with the autoscaler)
//! scrapes real gateway pods, real load (`gameserver bench` processes) drives it. Gateways grow
//! from 1 to 3 when 1,500 connections arrive at 500 per pod; when the load drops they shrink, the
//! least-loaded pods are the ones removed (pod-deletion-cost), and the clients of removed pods
//! are drained and resume elsewhere without losing a bet.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::bench::{autoscaled_fleet, autoscaling_cluster, players_url, ready, Bench};
use common::{pod_report, wait_for};
use gamefleet_operator::crd::GameFleet;
use gamefleet_operator::rbac;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::process::Command;

const NS: &str = "scale";
const OPERATOR: &str = "autoscale-operator";
const TEST: &str = "autoscale-test";
const SECRET: &str = "autoscale-test-secret-of-at-least-32-bytes";
const ADMIN: &str = "autoscale-admin";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

async fn gateway_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app.kubernetes.io/component=gateway"))
        .await
        .unwrap()
        .items
}

/// Credits players `<prefix>-0 … <prefix>-<n-1>` through an engine's admin ledger API.
async fn fund(pods: &Api<Pod>, prefix: &str, n: usize) {
    let engine = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=engine"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(ready)
        .expect("a ready engine");
    let ip = engine.status.and_then(|s| s.pod_ip).unwrap();
    for i in 0..n {
        let body = json!({"userId": format!("{prefix}-{i}"), "amount": 1_000_000, "idempotencyKey": format!("seed-{prefix}-{i}")});
        let out = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {ADMIN}"),
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("http://{ip}:9090/admin/ledger/credit"),
            ])
            .status()
            .await
            .expect("curl runs");
        assert!(
            out.success(),
            "credit {prefix}-{i} through the engine admin API"
        );
    }
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn cost(p: &Pod) -> Option<i64> {
    p.metadata.annotations.as_ref()?.get(COST)?.parse().ok()
}

fn created(p: &Pod) -> String {
    p.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_follow_connections_and_the_emptiest_are_removed() {
    // RUST_LOG=gamefleet_operator=debug shows every autoscaler decision.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let (cluster, client, operator) = autoscaling_cluster(NS, TEST, OPERATOR, SECRET, ADMIN).await;
    let metrics = operator.metrics.clone();

    let fleets: Api<GameFleet> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    fleets
        .patch(
            "dice",
            &PatchParams::apply(TEST).force(),
            &Patch::Apply(&autoscaled_fleet(NS, 500, 4, 5)),
        )
        .await
        .expect("fleet applied");
    wait_for(
        &cluster,
        NS,
        Duration::from_secs(60),
        "1 gateway and 1 engine ready",
        || async {
            let g = deployments
                .get("dice-gateway")
                .await
                .map_err(|e| e.to_string())?;
            let e = deployments
                .get("dice-engine")
                .await
                .map_err(|e| e.to_string())?;
            let ready = |d: &Deployment| {
                d.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0)
            };
            if ready(&g) == 1 && ready(&e) == 1 {
                Ok(())
            } else {
                Err(format!("gateway {} ready, engine {}", ready(&g), ready(&e)))
            }
        },
    )
    .await;
    let first = gateway_pods(&pods)
        .await
        .into_iter()
        .find(ready)
        .expect("one gateway");
    let first_name = name(&first);

    // 1. Surge: 1,500 connections through the player Service → 3 gateways.
    let svc_url = players_url(&client, NS).await;
    let surge = Bench::start(
        SECRET,
        &svc_url,
        1500,
        "surge",
        &["--duration", "120", "--settle-wait", "0"],
    );
    let requested = wait_for(
        &cluster,
        NS,
        Duration::from_secs(20),
        "gateway Deployment scaled to 3",
        || async {
            let g = deployments
                .get("dice-gateway")
                .await
                .map_err(|e| e.to_string())?;
            match g.spec.replicas {
                Some(3) => Ok(surge.started.elapsed()),
                other => Err(format!("replicas {other:?}")),
            }
        },
    )
    .await;
    let all_ready = wait_for(
        &cluster,
        NS,
        Duration::from_secs(30),
        "3 gateways ready",
        || async {
            let n = gateway_pods(&pods)
                .await
                .iter()
                .filter(|p| ready(p))
                .count();
            if n == 3 {
                Ok(surge.started.elapsed())
            } else {
                Err(format!("{n} ready"))
            }
        },
    )
    .await;
    eprintln!("autoscale: surge of 1,500 connections → 3 replicas requested after {requested:?}, ready after {all_ready:?}");

    let f = wait_for(
        &cluster,
        NS,
        Duration::from_secs(30),
        "status with 1500 connections and 3/3",
        || async {
            let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
            let s = f.status.clone().unwrap_or_default();
            if s.total_connections == Some(1500) && s.gateways_ready.as_deref() == Some("3/3") {
                Ok(f)
            } else {
                Err(format!(
                    "connections {:?}, gateways {:?}",
                    s.total_connections, s.gateways_ready
                ))
            }
        },
    )
    .await;
    let s = f.status.unwrap();
    assert_eq!(s.gateway.desired_replicas, 3);
    assert!(s.last_scale_time.is_some(), "lastScaleTime set");
    let events = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let scaled: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        scaled.iter().any(|n| n.starts_with("Scaled gateway from ")
            && n.contains(" to 3 (connections ")
            && n.ends_with(" capacity)")),
        "Scaled event with from, to and why: {scaled:?}"
    );
    let text = metrics.render();
    assert!(
        text.contains("gamefleet_autoscaler_desired_replicas{fleet=\"dice\",namespace=\"scale\",tier=\"gateway\"} 3"),
        "{text}"
    );
    // (A sync in the middle of the ramp may take two steps, 1 → 2 → 3, as the HPA would.)
    // Stays at 3 (1,500 over 3 pods is on target): no overshoot to 4.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = deployments.get("dice-gateway").await.unwrap();
    if g.spec.replicas != Some(3) {
        let why: Vec<String> = Api::<Event>::namespaced(client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Scaled"))
            .filter_map(|e| e.note)
            .collect();
        panic!(
            "no overshoot: replicas {:?}; Scaled events {why:?}",
            g.spec.replicas
        );
    }

    // 2. Load drops: the surge leaves; 400 players stay on one of the new gateways (connected to
    // it directly) and 60 betting players come through the Service (20 per gateway).
    let gws = gateway_pods(&pods).await;
    let busy = gws
        .iter()
        .filter(|p| name(p) != first_name)
        .max_by_key(|p| created(p))
        .expect("a new gateway");
    let busy_name = name(busy);
    let busy_ip = busy.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    fund(&pods, "players", 60).await;
    surge.kill_group();
    drop(surge);
    let dropped_at = Instant::now();
    tracing::info!("surge stopped");
    // The surge filled the rooms (75 of 100 players each): its members must have left them
    // before the next players join, or those could be refused with ROOM_FULL.
    wait_for(
        &cluster,
        NS,
        Duration::from_secs(15),
        "the surge's connections closed",
        || async {
            let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
            match f.status.and_then(|s| s.total_connections) {
                Some(0) => Ok(()),
                n => Err(format!("connections {n:?}")),
            }
        },
    )
    .await;
    let _stay = Bench::start(
        SECRET,
        &format!("ws://{busy_ip}:8080/ws"),
        400,
        "stay",
        &["--duration", "120", "--settle-wait", "0"],
    );
    let players = Bench::start(
        SECRET,
        &svc_url,
        60,
        "players",
        &[
            "--duration",
            "15",
            "--bet-rate",
            "20",
            "--resume",
            "--settle-wait",
            "10",
        ],
    );

    // After the 5 s window, one gateway is enough (460 < 500): the two emptiest go.
    // Every version of the gateways seen while waiting: removed pods may drain and vanish
    // between two polls, their last version carries the deletion cost they were given.
    let before: Vec<String> = gws.iter().map(name).collect();
    let seen = std::sync::Mutex::new(BTreeMap::<String, Pod>::new());
    let survivors = wait_for(
        &cluster,
        NS,
        Duration::from_secs(25),
        "gateways scaled down to 1",
        || async {
            let all = gateway_pods(&pods).await;
            if let Ok(mut s) = seen.lock() {
                for p in &all {
                    s.insert(name(p), p.clone());
                }
            }
            let g = deployments
                .get("dice-gateway")
                .await
                .map_err(|e| e.to_string())?;
            if g.spec.replicas != Some(1) {
                return Err("replicas not yet 1".into());
            }
            let alive: Vec<Pod> = all
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            // The ReplicaSet marks the pods it removes a moment after the Deployment changes.
            if alive.len() != 1 {
                return Err(format!("{} pods alive", alive.len()));
            }
            Ok(alive)
        },
    )
    .await;
    let seen = seen.into_inner().unwrap();
    let removed: Vec<Pod> = before
        .iter()
        .filter(|n| **n != name(&survivors[0]))
        .map(|n| {
            seen.get(n)
                .cloned()
                .unwrap_or_else(|| panic!("pod {n} seen"))
        })
        .collect();
    let scaled_down_after = dropped_at.elapsed();
    let costs: BTreeMap<String, Option<i64>> = survivors
        .iter()
        .chain(&removed)
        .map(|p| (name(p), cost(p)))
        .collect();
    assert_eq!(survivors.len(), 1, "one gateway left: {costs:?}");
    assert_eq!(
        name(&survivors[0]),
        busy_name,
        "the busiest gateway stays: {costs:?}"
    );
    assert!(
        removed.iter().any(|p| name(p) == first_name),
        "the oldest (emptiest) gateway is removed although the ReplicaSet would otherwise remove the newest: {costs:?}"
    );
    let kept_cost = cost(&survivors[0]).expect("deletion cost set on the survivor");
    assert!(
        kept_cost >= 400,
        "survivor cost from its live connections: {costs:?}"
    );
    for p in &removed {
        let c = cost(p).unwrap_or_else(|| panic!("deletion cost set on {}: {costs:?}", name(p)));
        assert!(
            c < kept_cost,
            "removed pods were the least loaded: {costs:?}"
        );
    }

    // 3. Their players were drained and resumed on the remaining gateway; no bet lost.
    let report = players.report(Duration::from_secs(60)).await;
    let r = &report["resilience"];
    eprintln!("autoscale: scale-down {scaled_down_after:?} after the drop; players: {r}");
    assert_eq!(report["connected"], 60, "{report}");
    assert!(
        r["drain_notices"].as_u64().unwrap() > 0,
        "drained players: {report}"
    );
    assert!(
        r["resumes"].as_u64().unwrap() >= r["drain_notices"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(r["bets_unsettled"], 0, "no acknowledged bet lost: {report}");
    assert_eq!(r["duplicate_frames"], 0, "{report}");
    assert!(report["bets_settled"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(r["bets_unacknowledged"], 0, "{report}");

    // The Scaled event and the fleet's status are written by different steps (the autoscaler,
    // then the next status update): poll for both.
    let events = Api::<Event>::namespaced(client.clone(), NS);
    wait_for(
        &cluster,
        NS,
        Duration::from_secs(20),
        "a scale-down to 1 gateway in the events and the status",
        || async {
            let scaled: Vec<String> = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("Scaled"))
                .filter_map(|e| e.note)
                .collect();
            // (A sync inside the stabilization window may take two steps, 3 → 2 → 1, as the
            // HPA would.)
            if !scaled.iter().any(|n| {
                n.starts_with("Scaled gateway from 3 to 1 (connections ")
                    || n.starts_with("Scaled gateway from 2 to 1 (connections ")
            }) {
                return Err(format!("Scaled events: {scaled:?}"));
            }
            let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
            match f.status.map(|s| s.gateway.desired_replicas) {
                Some(1) => Ok(()),
                other => Err(format!("status.gateway.desiredReplicas {other:?}")),
            }
        },
    )
    .await;

    // The autoscaler's API calls are exactly its RBAC rules.
    operator.stop().await;
    let used: BTreeSet<(String, String, String)> = cluster
        .audit()
        .of_user(OPERATOR)
        .into_iter()
        .map(|k| (k.group, k.resource, k.verb))
        .collect();
    let set = |ps: &[rbac::Permission]| -> BTreeSet<(String, String, String)> {
        ps.iter()
            .map(|p| {
                (
                    p.group.to_string(),
                    p.resource.to_string(),
                    p.verb.to_string(),
                )
            })
            .collect()
    };
    let autoscaler = set(rbac::AUTOSCALER);
    let mut granted = set(rbac::CLUSTER);
    granted.extend(autoscaler.clone());
    assert!(
        autoscaler.is_subset(&used),
        "autoscaler permissions never used: {:?}",
        autoscaler.difference(&used).collect::<Vec<_>>()
    );
    assert!(
        used.is_subset(&granted),
        "used but not granted: {:?}",
        used.difference(&granted).collect::<Vec<_>>()
    );
    if std::env::var_os("AUTOSCALE_REPORT").is_some() {
        eprintln!("{}", pod_report(&cluster, NS).await);
    }
    cluster.shutdown().await;
    eprintln!("autoscale e2e: total {:?}", started.elapsed());
}
