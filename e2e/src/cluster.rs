//! The public entry point: start a simulated cluster, get its kubeconfig and
//! client, read pod logs, shut it down (also on drop).

use crate::apiserver::ApiServer;
use crate::audit::AuditLog;
use crate::ctx::Ctx;
use crate::http::{router, AppState};
use crate::kubelet::{Kubelet, LogStore};
use crate::locate::{find_in_path, sibling_binary};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the API server socket: {0}")]
    Bind(std::io::Error),
    #[error("writing the kubeconfig to {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building a kube client for the simulated cluster: {0}")]
    Client(String),
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Image repository suffix -> executable.
    pub images: BTreeMap<String, PathBuf>,
    /// Where to write the kubeconfig (default: a fresh temporary directory).
    pub kubeconfig: Option<PathBuf>,
    /// API server port (0 = any free port).
    pub port: u16,
    /// Number of changes kept for watch resumption; older versions get 410 Gone.
    pub watch_history: usize,
    /// How often idle watches receive a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let mut images = BTreeMap::new();
        for (suffix, bin) in [
            ("gameserver", "gameserver"),
            ("gamefleet-operator", "gamefleet-operator"),
        ] {
            if let Some(p) = sibling_binary(bin) {
                images.insert(suffix.to_string(), p);
            }
        }
        if let Some(p) = find_in_path("redis-server") {
            images.insert("redis".to_string(), p);
        }
        if let Some(p) = sibling_binary("kubesim-testpod") {
            images.insert("kubesim-testpod".to_string(), p);
        }
        Self {
            images,
            kubeconfig: None,
            port: 0,
            watch_history: 100_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Maps images whose repository ends in `suffix` to `binary`.
    pub fn image(mut self, suffix: &str, binary: impl Into<PathBuf>) -> Self {
        self.images.insert(suffix.to_string(), binary.into());
        self
    }

    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn watch_history(mut self, n: usize) -> Self {
        self.watch_history = n;
        self
    }

    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }
}

/// A running simulated cluster.
pub struct Cluster {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    temp_dir: Option<PathBuf>,
    logs: Arc<LogStore>,
    audit: Arc<AuditLog>,
    kubelet: Arc<Kubelet>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    pub async fn start(config: ClusterConfig) -> Result<Self, Error> {
        let api = Arc::new(ApiServer::new(config.watch_history));
        let logs = Arc::new(LogStore::default());
        let audit = Arc::new(AuditLog::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let cancel = CancellationToken::new();
        let state = Arc::new(AppState {
            api: api.clone(),
            logs: logs.clone(),
            bookmark_interval: config.bookmark_interval,
            audit: audit.clone(),
        });
        let app = router(state);
        let c = cancel.clone();
        let mut tasks = vec![tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(%e, "API server stopped");
            }
        })];

        // Per-cluster scratch space: the default kubeconfig and pod working directories.
        let state_dir =
            std::env::temp_dir().join(format!("kubesim-{}-{}", std::process::id(), addr.port()));
        let kubeconfig = config
            .kubeconfig
            .clone()
            .unwrap_or_else(|| state_dir.join("kubeconfig"));
        let temp_dir = Some(state_dir.clone());
        write_kubeconfig(&kubeconfig, addr)?;
        let kubelet = Arc::new(Kubelet::new(
            api.clone(),
            logs.clone(),
            config.images.clone(),
            kubeconfig.clone(),
            state_dir.join("pods"),
        ));
        match Ctx::new(api.clone()).map(Arc::new) {
            Some(ctx) => {
                tasks.extend(crate::controllers::spawn_all(ctx.clone(), cancel.clone()));
                tasks.push(crate::kubelet::spawn(
                    kubelet.clone(),
                    ctx.clone(),
                    cancel.clone(),
                ));
                tasks.push(crate::proxy::spawn(ctx, cancel.clone()));
            }
            None => tracing::error!("built-in resources missing; controllers not started"),
        }
        tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "kubesim API server listening");
        Ok(Self {
            addr,
            kubeconfig,
            temp_dir,
            logs,
            audit,
            kubelet,
            cancel,
            tasks,
        })
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.client_config()?).map_err(|e| Error::Client(e.to_string()))
    }

    /// A client whose requests carry `token` as bearer token, so [`Cluster::audit`] attributes
    /// them to the user `token` (e.g. to tell an operator's requests from the test's own).
    pub async fn client_as(&self, token: &str) -> Result<kube::Client, Error> {
        let mut cfg = self.client_config()?;
        cfg.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(cfg).map_err(|e| Error::Client(e.to_string()))
    }

    fn client_config(&self) -> Result<kube::Config, Error> {
        let url: http::Uri = self
            .api_url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Client(e.to_string()))?;
        let mut cfg = kube::Config::new(url);
        cfg.default_namespace = "default".into();
        cfg.read_timeout = None;
        Ok(cfg)
    }

    /// Whether pods resolve Service names (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`,
    /// `<svc>.<ns>.svc.cluster.local`); false where mount namespaces are unavailable (not root).
    pub fn resolves_service_names(&self) -> bool {
        self.kubelet.dns.is_some()
    }

    /// The distinct API requests made so far, by user (bearer token), verb, group and resource.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Everything the pod's containers printed so far (empty if unknown).
    pub fn pod_logs(&self, ns: &str, name: &str) -> String {
        self.logs.get(ns, name).unwrap_or_default()
    }

    /// Stops the API server and controllers and kills every pod process.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }

    fn stop(&mut self) {
        self.cancel.cancel();
        self.kubelet.kill_all();
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn write_kubeconfig(path: &Path, addr: SocketAddr) -> Result<(), Error> {
    let err = |source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user:\n    token: kubesim\n"
    );
    std::fs::write(path, text).map_err(err)
}
