//! examples/README.md as a user runs it, inside the simulated cluster: `helm install` the
//! operator, `kubectl apply --server-side` every file in examples/ unchanged, create the
//! `dice-secrets` Secret as step 2 says (random secrets, `redis-url=redis://redis:6379`,
//! resolved through the pods' Service names), and the `dice` fleet becomes Ready.
//!
//! Needs `kubectl` and `helm` (scripts/install-tools); without them the test is skipped, except
//! under CI (`CI=true`), where it fails.

mod common;

use std::io::Read;
use std::time::Duration;

use common::install::{operator_installed, repo};

const NS: &str = "games";

/// The README's order (the Secret's shape and Redis before the fleets that use them); any
/// other example file follows.
const ORDER: &[&str] = &[
    "secrets.yaml",
    "redis-dev.yaml",
    "redis-ledger.yaml",
    "minimal.yaml",
    "dice-fleet.yaml",
    "ledger-archive.yaml",
];

/// Every manifest directly in examples/, in apply order.
fn example_files() -> Vec<String> {
    let mut others: Vec<String> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| !ORDER.contains(&n.as_str()))
        .collect();
    others.sort();
    for n in ORDER {
        assert!(
            std::path::Path::new(&repo(&format!("examples/{n}"))).is_file(),
            "examples/{n} is gone: update ORDER"
        );
    }
    ORDER.iter().map(|n| n.to_string()).chain(others).collect()
}

/// `openssl rand -hex 32`: 32 random bytes as hex.
fn rand_hex_32() -> String {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_applies_every_example_unchanged() {
    let Some((cluster, t, started, operator_ready)) = operator_installed().await else {
        return;
    };

    // 1. Install the operator.

    // 2. Every example, unchanged, server-side.
    t.kubectl(&["create", "namespace", NS]).await;
    let files = example_files();
    for f in &files {
        let out = t
            .kubectl(&[
                "-n",
                NS,
                "apply",
                "--server-side",
                "-f",
                &repo(&format!("examples/{f}")),
            ])
            .await;
        assert!(
            !out.trim().is_empty() && out.lines().all(|l| l.ends_with(" serverside-applied")),
            "examples/{f}:\n{out}"
        );
    }
    for (kind, name) in [
        ("cronjob", "dice-ledger-archive"),
        ("pvc", "dice-ledger-archive"),
        ("statefulset", "ledger-redis"),
        ("gf", "dice"),
        ("gf", "dice-mini"),
    ] {
        let got = t
            .kubectl(&["-n", NS, "get", kind, name, "-o", "name"])
            .await;
        assert!(
            got.trim().ends_with(&format!("/{name}")),
            "{kind} {name}: {got}"
        );
    }
    let applied = started.elapsed();

    // 3. The placeholders of secrets.yaml are refused by design; README step 2 creates the
    //    Secret with real values and the Service's name for Redis.
    t.kubectl(&["-n", NS, "delete", "secret", "dice-secrets"])
        .await;
    t.create_fleet_secret(NS, &rand_hex_32(), &rand_hex_32())
        .await;
    t.kubectl(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/redis",
        "--timeout=60s",
    ])
    .await;

    // 4. The production-shaped fleet becomes Ready.
    t.wait_fleet_ready(NS, "dice", Duration::from_secs(150))
        .await;
    let fleet_ready = started.elapsed();
    let table = t.kubectl(&["-n", NS, "get", "gf", "dice"]).await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        row.contains(&"3/3") && row.contains(&"2/2") && row.contains(&"True"),
        "{table}"
    );

    t.helm(&["uninstall", "gamefleet", "-n", "gamefleet-system"])
        .await;
    cluster.shutdown().await;
    eprintln!(
        "README walkthrough: {} files applied; operator ready {operator_ready:?}, examples applied {applied:?}, fleet dice Ready {fleet_ready:?}, total {:?}",
        files.len(),
        started.elapsed()
    );
}
