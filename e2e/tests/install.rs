//! The install path as a platform engineer runs it, against the simulated cluster with the real
//! clients: `helm install` the operator chart (the operator pods run the real operator binary) →
//! `kubectl apply` the example dev Redis, Secret and `examples/dice-fleet.yaml` → `kubectl get gf`
//! shows the printer columns and Ready → players (`gameserver bench`) connect through the player
//! Service's cluster IP, join rooms and bet, and their bets are settled.
//!
//! Needs `kubectl` and `helm` (scripts/install-tools); without them the test is skipped, except
//! under CI (`CI=true`), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

const JWT: &str = "install-test-jwt-secret";
const ADMIN_TOKEN: &str = "install-test-admin-token";
const PLAYERS: usize = 60;

/// `$NAME`, or the repo's tool cache; `None` (skip) outside CI when absent.
fn client_tool(name: &str) -> Option<PathBuf> {
    let env = name.to_uppercase();
    let p = std::env::var_os(&env)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gamefleet/tools/bin").join(name)
        });
    if p.is_file() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "{name} not found at {} (CI=true: run scripts/install-tools or set ${env})",
        p.display()
    );
    eprintln!(
        "SKIPPED: {name} not found at {} (run scripts/install-tools or set ${env})",
        p.display()
    );
    None
}

/// A workspace binary next to the test executable's directory (`cargo build --workspace --bins`).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.join(name), deps.parent().unwrap().join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} binary not built: run cargo build --workspace --bins"))
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

struct Tools {
    kubectl: PathBuf,
    helm: PathBuf,
    kubeconfig: PathBuf,
}

impl Tools {
    async fn run(&self, tool: &Path, args: &[&str], timeout: Duration) -> String {
        let home = self.kubeconfig.parent().unwrap();
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not finish in {timeout:?}", tool.display()))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{} {args:?} failed:\n{stdout}\n{}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        self.run(&self.kubectl, args, Duration::from_secs(120))
            .await
    }

    async fn helm(&self, args: &[&str]) -> String {
        self.run(&self.helm, args, Duration::from_secs(120)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_apply_example_and_play() {
    let (Some(kubectl), Some(helm)) = (client_tool("kubectl"), client_tool("helm")) else {
        return;
    };
    let gameserver = workspace_binary("gameserver");
    workspace_binary("gamefleet-operator");
    let started = Instant::now();
    let cluster = common::cluster().await;
    let t = Tools {
        kubectl,
        helm,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
    };

    // 1. The operator, from the chart (CRD from the chart's crds/, two replicas, leader election).
    let out = t
        .helm(&[
            "install",
            "gamefleet",
            &repo("charts/gamefleet-operator"),
            "-n",
            "gamefleet-system",
            "--create-namespace",
        ])
        .await;
    assert!(out.contains("STATUS: deployed"), "{out}");
    let out = t
        .kubectl(&[
            "-n",
            "gamefleet-system",
            "rollout",
            "status",
            "deployment/gamefleet-gamefleet-operator",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let operator_ready = started.elapsed();

    // 2. Redis and the Secret. The simulated cluster has no DNS, so the Redis URL names the
    // Service's cluster IP (the README's `kubectl create secret` form).
    t.kubectl(&["create", "namespace", "games"]).await;
    t.kubectl(&[
        "-n",
        "games",
        "apply",
        "-f",
        &repo("examples/redis-dev.yaml"),
    ])
    .await;
    t.kubectl(&[
        "-n",
        "games",
        "rollout",
        "status",
        "deployment/redis",
        "--timeout=30s",
    ])
    .await;
    let redis_ip = t
        .kubectl(&[
            "-n",
            "games",
            "get",
            "svc",
            "redis",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert!(!redis_ip.trim().is_empty(), "redis has a cluster IP");
    t.kubectl(&[
        "-n",
        "games",
        "create",
        "secret",
        "generic",
        "dice-secrets",
        &format!("--from-literal=jwt-secret={JWT}"),
        &format!("--from-literal=admin-token={ADMIN_TOKEN}"),
        &format!("--from-literal=redis-url=redis://{}:6379", redis_ip.trim()),
    ])
    .await;

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
    let waited = tokio::time::timeout(
        Duration::from_secs(90),
        t.kubectl(&[
            "-n",
            "games",
            "wait",
            "gf/dice",
            "--for=condition=Ready",
            "--timeout=90s",
        ]),
    )
    .await;
    if waited.is_err() {
        panic!(
            "fleet dice not Ready in 90 s:\n{}",
            t.kubectl(&["-n", "games", "describe", "gf", "dice"]).await
        );
    }
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
    let engine_ip = t
        .kubectl(&[
            "-n",
            "games",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=engine",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        ])
        .await;
    for i in 0..PLAYERS {
        credit(engine_ip.trim(), &format!("install-{i}"), 1_000_000).await;
    }

    // 5. Players through the player Service (cluster IP, port 80 → gateway pods).
    let players_ip = t
        .kubectl(&[
            "-n",
            "games",
            "get",
            "svc",
            "dice-players",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    let url = format!("ws://{}:80/ws", players_ip.trim());
    // Rounds of the example last 13 s (10 s betting + 3 s pause): measure long enough for every
    // room to settle at least one round.
    let bench = Command::new(&gameserver)
        .args([
            "bench",
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
            "15",
            "--bet-rate",
            "30",
            "--bet-amount",
            "1",
            "--user-prefix",
            "install",
            "--json",
        ])
        .env("JWT_SECRET", JWT)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), bench)
        .await
        .expect("bench finishes within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench --json output is not JSON ({e}):\n{stdout}"));
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
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
            let tail = t.kubectl(&["-n", "games", "logs", pod, "--tail=10"]).await;
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

/// `POST /admin/ledger/credit` on an engine's admin port, retried (same idempotency key) while the
/// engine answers 503 (its ledger connection is still being established), for at most 10 s.
async fn credit(engine_ip: &str, user: &str, amount: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = credit_once(engine_ip, user, amount).await;
        if resp.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(
            resp.starts_with("HTTP/1.1 503") && tokio::time::Instant::now() < deadline,
            "credit {user}: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn credit_once(engine_ip: &str, user: &str, amount: u64) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"userId": user, "amount": amount, "idempotencyKey": format!("welcome-{user}")})
        .to_string();
    let req = format!(
        "POST /admin/ledger/credit HTTP/1.1\r\nHost: {engine_ip}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect((engine_ip, 9090))
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
        .await
        .expect("credit answered within 10 s")
        .unwrap();
    resp
}
