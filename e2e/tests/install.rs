//! The install path as a platform engineer runs it, against the simulated cluster with the real
//! clients: `helm install` the operator chart (the operator pods run the real operator binary) →
//! `kubectl apply` the example dev Redis, Secret and `examples/dice-fleet.yaml` → `kubectl get gf`
//! shows the printer columns and Ready → players (`gameserver bench`) connect through the player
//! Service's cluster IP, join rooms and bet, and their bets are settled.
//!
//! Needs `kubectl` and `helm` (scripts/install-tools); without them the test is skipped, except
//! under CI (`CI=true`), where it fails.

mod common;

use std::time::Duration;

use common::install::{bench_report, count, credit, operator_installed, repo};

const JWT: &str = "install-test-jwt-secret-of-at-least-32-bytes";
const ADMIN_TOKEN: &str = "install-test-admin-token";
const PLAYERS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_apply_example_and_play() {
    let Some((cluster, t, started, operator_ready)) = operator_installed().await else {
        return;
    };

    // 1. The operator, from the chart (CRD from the chart's crds/, two replicas, leader election).

    // 2. Redis and the Secret.
    t.install_redis_and_secret("games", JWT, ADMIN_TOKEN).await;

    // 3. The example fleet, as shipped.
    let out = t
        .kubectl(&[
            "-n",
            "games",
            "apply",
            "-f",
            &repo("examples/dice-fleet.yaml"),
        ])
        .await;
    assert!(
        out.contains("gamefleet.gamefleet.dev/dice created"),
        "{out}"
    );
    t.wait_fleet_ready("games", "dice", Duration::from_secs(90))
        .await;
    let fleet_ready = started.elapsed();
    let table = t.kubectl(&["-n", "games", "get", "gf"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "GATEWAYS",
            "ENGINES",
            "CONNECTIONS",
            "P99-MS",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"dice"), "{table}");
    assert!(
        row.contains(&"3/3") && row.contains(&"2/2") && row.contains(&"True"),
        "{table}"
    );

    // 4. Credit the players through an engine's admin ledger API (bets need a balance).
    let engine_ip = t.engine_ip("games").await;
    for i in 0..PLAYERS {
        credit(&engine_ip, ADMIN_TOKEN, &format!("install-{i}"), 1_000_000).await;
    }

    // 5. Players through the player Service (cluster IP, port 80 → gateway pods).
    let url = t.players_url("games").await;
    // Rounds of the example last 13 s (10 s betting + 3 s pause), and a room's first round is
    // lengthened by up to one period to close on the room's phase (engine/phase.rs): up to 23 s.
    // Measure long enough for every room to settle at least one round.
    let report = bench_report(
        JWT,
        &[
            "--url",
            &url,
            "--connections",
            &PLAYERS.to_string(),
            "--rooms",
            "6",
            "--workers",
            "1",
            "--connect-rate",
            "200",
            "--duration",
            "25",
            "--bet-rate",
            "30",
            "--bet-amount",
            "1",
            "--user-prefix",
            "install",
        ],
    )
    .await;
    let n = |k: &str| count(&report, k);
    if n("connected") != PLAYERS as u64 || n("bets_settled") == 0 {
        let pods = t
            .kubectl(&[
                "-n",
                "games",
                "get",
                "pods",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .await;
        let mut logs = String::new();
        for pod in pods.split_whitespace().filter(|p| p.starts_with("dice-")) {
            let tail = t.kubectl(&["-n", "games", "logs", pod, "--tail=40"]).await;
            logs.push_str(&format!("--- {pod}\n{tail}"));
        }
        panic!("players could not play: {report}\n{logs}");
    }
    // The only acceptable rejection: a bet that arrived after its round closed.
    let rejected = report["bets_rejected"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        rejected.keys().all(|k| k == "ROUND_CLOSED"),
        "unexpected rejections: {report}"
    );
    assert_eq!(
        report["connect_failures"],
        serde_json::json!({}),
        "{report}"
    );
    assert!(n("events_received") > 0, "{report}");
    assert!(n("bets_acknowledged") > 0, "{report}");
    assert!(n("bets_settled") > 0, "no bet settled: {report}");
    assert!(n("bets_settled") <= n("bets_acknowledged"), "{report}");
    // Every gateway took players: the Service balanced over the three pods.
    let metrics = t
        .kubectl(&[
            "-n",
            "games",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=gateway",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .await;
    let gateways: Vec<&str> = metrics.split_whitespace().collect();
    assert_eq!(gateways.len(), 3, "{metrics}");
    let played = started.elapsed();

    // 6. Clean up as the README says: the fleet's objects go with it, then the operator.
    t.kubectl(&["-n", "games", "delete", "gf", "dice", "--wait=false"])
        .await;
    common::eventually(
        Duration::from_secs(30),
        "the fleet's Deployments garbage-collected",
        || async {
            let out = t
                .kubectl(&[
                    "-n",
                    "games",
                    "get",
                    "deploy",
                    "-l",
                    "app.kubernetes.io/instance=dice",
                    "-o",
                    "name",
                ])
                .await;
            out.trim().is_empty().then_some(())
        },
    )
    .await;
    let out = t
        .helm(&["uninstall", "gamefleet", "-n", "gamefleet-system"])
        .await;
    assert!(out.contains("uninstalled"), "{out}");
    cluster.shutdown().await;
    eprintln!(
        "install path: operator ready {operator_ready:?}, fleet Ready {fleet_ready:?}, played {played:?}, total {:?}; bench: {} connected, {} bets acknowledged, {} settled",
        started.elapsed(),
        n("connected"),
        n("bets_acknowledged"),
        n("bets_settled")
    );
}
