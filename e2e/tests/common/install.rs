//! The install path shared by the scenario tests: the real clients (`kubectl`, `helm`), the
//! operator chart, the example dev Redis and the fleet's Secret, workspace binaries, and the
//! engines' admin API (ledger credits and entries) and pods' `/metrics` over plain HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// `$NAME`, or the repo's tool cache; `None` (skip) outside CI when absent.
pub fn client_tool(name: &str) -> Option<PathBuf> {
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
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.join(name), deps.parent().unwrap().join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} binary not built: run cargo build --workspace --bins"))
}

/// A path in the repository.
pub fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

/// `kubectl` and `helm` against one simulated cluster, each run with its own HOME.
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub kubeconfig: PathBuf,
}

/// What the install-path scenarios start from: a cluster with the operator installed from its
/// chart (the workspace binaries checked, `helm install`, its rollout awaited), the clients,
/// when the setup began, and how long it took until the operator was ready. `None` (skip)
/// where [`Tools::for_cluster`] skips.
pub async fn operator_installed() -> Option<(kubesim::Cluster, Tools, Instant, Duration)> {
    workspace_binary("gameserver");
    workspace_binary("gamefleet-operator");
    let started = Instant::now();
    let cluster = super::cluster().await;
    let t = Tools::for_cluster(&cluster)?;
    t.install_operator().await;
    Some((cluster, t, started, started.elapsed()))
}

impl Tools {
    /// Both clients, or `None` (skip) outside CI when they are not installed or when pods get
    /// no Service names here: the install path names Services as the examples do
    /// (`redis://redis:6379`), which needs kubesim's mount namespaces (root).
    pub fn for_cluster(cluster: &kubesim::Cluster) -> Option<Tools> {
        if !cluster.resolves_service_names() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "CI=true: pods get no Service names (kubesim needs mount namespaces: run as root)"
            );
            eprintln!("SKIPPED: pods get no Service names here (kubesim needs root for them)");
            return None;
        }
        Some(Tools {
            kubectl: client_tool("kubectl")?,
            helm: client_tool("helm")?,
            kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        })
    }

    pub async fn run(&self, tool: &Path, args: &[&str], timeout: Duration) -> String {
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

    pub async fn kubectl(&self, args: &[&str]) -> String {
        self.run(&self.kubectl, args, Duration::from_secs(120))
            .await
    }

    pub async fn helm(&self, args: &[&str]) -> String {
        self.run(&self.helm, args, Duration::from_secs(120)).await
    }

    /// `helm install` the operator chart into `gamefleet-system` and wait for its rollout.
    pub async fn install_operator(&self) {
        let out = self
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
        let out = self
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
    }

    /// Creates `ns` with `examples/redis-dev.yaml` and waits for it. Pods reach it as
    /// `redis` (or `redis.<ns>`); this returns the Service's cluster IP, for the test itself,
    /// which runs outside the pods' hosts files.
    pub async fn install_redis(&self, ns: &str) -> String {
        self.kubectl(&["create", "namespace", ns]).await;
        self.kubectl(&["-n", ns, "apply", "-f", &repo("examples/redis-dev.yaml")])
            .await;
        self.kubectl(&[
            "-n",
            ns,
            "rollout",
            "status",
            "deployment/redis",
            "--timeout=30s",
        ])
        .await;
        let redis_ip = self
            .kubectl(&[
                "-n",
                ns,
                "get",
                "svc",
                "redis",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])
            .await
            .trim()
            .to_string();
        assert!(!redis_ip.is_empty(), "redis has a cluster IP");
        redis_ip
    }

    /// Creates `ns` with `examples/redis-dev.yaml` and the `dice-secrets` Secret exactly as
    /// examples/README.md step 2 does (`redis-url=redis://redis:6379`, the Service's name).
    /// Returns the Service's cluster IP, for the test's own Redis reads.
    pub async fn install_redis_and_secret(&self, ns: &str, jwt: &str, admin: &str) -> String {
        let redis_ip = self.install_redis(ns).await;
        self.create_fleet_secret(ns, jwt, admin).await;
        redis_ip
    }

    /// `kubectl create secret generic dice-secrets` as examples/README.md step 2 does.
    pub async fn create_fleet_secret(&self, ns: &str, jwt: &str, admin: &str) {
        self.kubectl(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "dice-secrets",
            &format!("--from-literal=jwt-secret={jwt}"),
            &format!("--from-literal=admin-token={admin}"),
            "--from-literal=redis-url=redis://redis:6379",
        ])
        .await;
    }

    /// The players' WebSocket URL: the `dice-players` Service's cluster IP, as a player inside
    /// the cluster reaches it.
    pub async fn players_url(&self, ns: &str) -> String {
        let ip = self
            .kubectl(&[
                "-n",
                ns,
                "get",
                "svc",
                "dice-players",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])
            .await;
        format!("ws://{}:80/ws", ip.trim())
    }

    /// The pod IP of the first engine in `ns` (its admin API is on port 9090).
    pub async fn engine_ip(&self, ns: &str) -> String {
        let ip = self
            .kubectl(&[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=engine",
                "-o",
                "jsonpath={.items[0].status.podIP}",
            ])
            .await;
        ip.trim().to_string()
    }

    /// `kubectl wait gf/<name> --for=condition=Ready`, with `describe` in the failure.
    pub async fn wait_fleet_ready(&self, ns: &str, name: &str, timeout: Duration) {
        let secs = format!("--timeout={}s", timeout.as_secs());
        let gf = format!("gf/{name}");
        let args = ["-n", ns, "wait", &gf, "--for=condition=Ready", &secs];
        if tokio::time::timeout(timeout, self.kubectl(&args))
            .await
            .is_err()
        {
            panic!(
                "fleet {name} not Ready in {timeout:?}:\n{}",
                self.kubectl(&["-n", ns, "describe", "gf", name]).await
            );
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns the status code
/// and the body. Panics after 10 s.
pub async fn http(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await?;
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        Ok::<_, std::io::Error>(resp)
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} http://{ip}:{port}{path}: no answer in 10 s"))
        .unwrap_or_else(|e| panic!("{method} http://{ip}:{port}{path}: {e}"));
    let text = String::from_utf8_lossy(&resp);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not HTTP: {text}"));
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The payload of a chunked HTTP body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `POST /admin/ledger/credit` on an engine's admin port (9090), retried (same idempotency
/// key) while the engine answers 503 (its ledger connection is still being established), for
/// at most 10 s.
pub async fn credit(engine_ip: &str, admin_token: &str, user: &str, amount: u64) {
    let body = serde_json::json!({"userId": user, "amount": amount, "idempotencyKey": format!("welcome-{user}")})
        .to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, resp) = http(
            engine_ip,
            9090,
            "POST",
            "/admin/ledger/credit",
            Some(admin_token),
            Some(&body),
        )
        .await;
        if status == 200 {
            return;
        }
        assert!(
            status == 503 && tokio::time::Instant::now() < deadline,
            "credit {user}: {status} {resp}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of every series of a metric in a Prometheus `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// `gameserver bench --json <args>` with players signed by `jwt`: its report, once it has
/// finished successfully (within 60 s).
pub async fn bench_report(jwt: &str, args: &[&str]) -> serde_json::Value {
    let bench = Command::new(workspace_binary("gameserver"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("JWT_SECRET", jwt)
        .env("RUST_LOG", "warn")
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
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench --json output is not JSON ({e}):\n{stdout}"))
}

/// A count in a bench report.
pub fn count(report: &serde_json::Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}
