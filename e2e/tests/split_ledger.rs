//! A fleet whose ledger has its own Redis (`spec.redis.ledger`), installed as a platform
//! engineer would: the operator chart, two dev Redis servers (the bus's in the fleet's
//! namespace, the ledger's in another), a Secret naming each, and a GameFleet that points at
//! both. Engines get `LEDGER_REDIS_URL` and gateways do not; players bet through the player
//! Service; every balance, bet record and audit entry is on the ledger's Redis and none on the
//! bus's; the money adds up.
//!
//! Needs `kubectl` and `helm` (scripts/install-tools); without them the test is skipped, except
//! under CI (`CI=true`), where it fails.

mod common;

use std::time::Duration;

use common::install::{bench_report, count, credit, operator_installed, Tools};
use common::resp::{assert_money_conserved, redis_array, redis_hgetall};

const NS: &str = "games";
const JWT: &str = "split-ledger-test-jwt-secret-of-at-least-32-bytes";
const ADMIN_TOKEN: &str = "split-ledger-test-admin-token";
const PLAYERS: usize = 30;
const CREDIT: i64 = 100_000;

const FLEET: &str = r#"apiVersion: gamefleet.dev/v1alpha1
kind: GameFleet
metadata:
  name: dice
spec:
  gateway:
    image: ghcr.io/gamefleet/gameserver:0.1.0
    replicas: 2
  engine:
    replicas: 2
  rooms:
    bettingWindowMs: 1000
    roundPauseMs: 500
  redis:
    urlSecretRef: {name: dice-secrets, key: redis-url}
    ledger:
      urlSecretRef: {name: ledger-redis, key: url}
  auth:
    jwtSecretRef: {name: dice-secrets, key: jwt-secret}
    adminTokenSecretRef: {name: dice-secrets, key: admin-token}
"#;

/// The name of the Secret a tier's container reads `var` from, or "" when it has no such
/// variable.
async fn env_secret(t: &Tools, deployment: &str, var: &str) -> String {
    let path = format!(
        "jsonpath={{.spec.template.spec.containers[0].env[?(@.name==\"{var}\")].valueFrom.secretKeyRef.name}}"
    );
    t.kubectl(&["-n", NS, "get", "deploy", deployment, "-o", &path])
        .await
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_its_own_ledger_redis_keeps_the_money_there() {
    let Some((cluster, t, started, _)) = operator_installed().await else {
        return;
    };
    let work = t.kubeconfig.parent().unwrap().to_path_buf();

    // 1. The operator; the bus's Redis and Secret; the ledger's Redis and its Secret.
    let bus_ip = t.install_redis_and_secret(NS, JWT, ADMIN_TOKEN).await;
    let ledger_ip = t.install_redis("ledger").await;
    assert_ne!(bus_ip, ledger_ip);
    // The ledger's Redis is in another namespace: pods name it `redis.ledger`.
    t.kubectl(&[
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "ledger-redis",
        "--from-literal=url=redis://redis.ledger:6379",
    ])
    .await;

    // 2. The fleet.
    let manifest = work.join("split-ledger-fleet.yaml");
    std::fs::write(&manifest, FLEET).unwrap();
    t.kubectl(&["-n", NS, "apply", "-f", manifest.to_str().unwrap()])
        .await;
    t.wait_fleet_ready(NS, "dice", Duration::from_secs(90))
        .await;
    assert_eq!(
        env_secret(&t, "dice-engine", "LEDGER_REDIS_URL").await,
        "ledger-redis"
    );
    assert_eq!(
        env_secret(&t, "dice-engine", "REDIS_URL").await,
        "dice-secrets"
    );
    assert_eq!(
        env_secret(&t, "dice-gateway", "LEDGER_REDIS_URL").await,
        "",
        "gateways never see the ledger's Redis"
    );

    // 3. Credit the players through an engine's admin API, then let them bet through the
    //    player Service until every acknowledged bet is settled.
    let engine_ip = t.engine_ip(NS).await;
    for i in 0..PLAYERS {
        credit(
            &engine_ip,
            ADMIN_TOKEN,
            &format!("split-{i}"),
            CREDIT as u64,
        )
        .await;
    }
    let url = t.players_url(NS).await;
    let players = PLAYERS.to_string();
    let report = bench_report(
        JWT,
        &[
            "--url",
            &url,
            "--connections",
            &players,
            "--rooms",
            "3",
            "--workers",
            "1",
            "--connect-rate",
            "200",
            "--duration",
            "8",
            "--bet-rate",
            "40",
            "--bet-amount",
            "10",
            "--user-prefix",
            "split",
            "--settle-wait",
            "15",
        ],
    )
    .await;
    let n = |k: &str| count(&report, k);
    assert_eq!(n("connected"), PLAYERS as u64, "{report}");
    assert!(n("bets_acknowledged") > 0, "{report}");
    assert_eq!(
        n("bets_settled"),
        n("bets_acknowledged"),
        "every acknowledged bet settled: {report}"
    );

    // 4. The money is on the ledger's Redis, and only there.
    for pattern in ["gf:ledger:*", "gf:bet:*", "gf:round:*"] {
        let on_bus = redis_array(&bus_ip, &["KEYS", pattern]).await;
        assert!(
            on_bus.is_empty(),
            "{pattern} on the bus's Redis: {on_bus:?}"
        );
    }
    let records = redis_array(&ledger_ip, &["KEYS", "gf:bet:*"]).await;
    assert!(
        records.len() as u64 >= n("bets_settled"),
        "{} bet records on the ledger's Redis for {} settled bets",
        records.len(),
        n("bets_settled")
    );
    let audit = redis_array(&ledger_ip, &["KEYS", "gf:ledger:log"]).await;
    assert_eq!(
        audit,
        ["gf:ledger:log"],
        "the audit stream is on the ledger's Redis"
    );
    let balances = redis_hgetall(&ledger_ip, "gf:ledger:balances").await;
    let credited = CREDIT * PLAYERS as i64;
    let (players, house) = assert_money_conserved(&balances, credited);
    assert_ne!(players, credited, "the bets moved money");
    // The bus carried the bets: its bet stream exists there.
    let streams = redis_array(&bus_ip, &["KEYS", "gf:*"]).await;
    assert!(!streams.is_empty(), "the bus's Redis is in use");

    t.helm(&["uninstall", "gamefleet", "-n", "gamefleet-system"])
        .await;
    cluster.shutdown().await;
    eprintln!(
        "split ledger: {} bets settled, {} bet records, players {players} + house {house}; total {:?}",
        n("bets_settled"),
        records.len(),
        started.elapsed()
    );
}
