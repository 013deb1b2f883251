//! The kubelet: runs pods as local processes.

use std::collections::HashMap;
use std::sync::Mutex;

/// Captured output per pod (all containers, interleaved, with restarts).
#[derive(Default)]
pub struct LogStore {
    logs: Mutex<HashMap<(String, String), String>>,
}

/// Per-pod log cap; older output is dropped first.
const MAX_LOG: usize = 4 << 20;

impl LogStore {
    pub fn append(&self, ns: &str, pod: &str, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let buf = logs.entry((ns.to_string(), pod.to_string())).or_default();
        buf.push_str(line);
        if !line.ends_with('\n') {
            buf.push('\n');
        }
        if buf.len() > MAX_LOG {
            let cut = buf.len() - MAX_LOG / 2;
            let cut = (cut..buf.len())
                .find(|i| buf.is_char_boundary(*i))
                .unwrap_or(buf.len());
            buf.drain(..cut);
        }
    }

    pub fn get(&self, ns: &str, pod: &str) -> Option<String> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(&(ns.to_string(), pod.to_string())).cloned()
    }
}

mod dns;
pub mod hosts;
mod probe;
mod runtime;

pub use runtime::{resolve_program, split_image};

use crate::apiserver::ApiServer;
use crate::controllers::Ctx;
use crate::meta::meta_str;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the dispatcher tells a pod's task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    Run,
    /// deletionTimestamp set: stop with this grace period (seconds).
    Terminate(i64),
    /// Removed from the API: kill at once.
    Gone,
}

pub struct Kubelet {
    pub(crate) api: Arc<ApiServer>,
    pub(crate) logs: Arc<LogStore>,
    pub(crate) images: BTreeMap<String, PathBuf>,
    pub(crate) kubeconfig: PathBuf,
    /// Parent of the pods' working directories (removed with the cluster).
    pub(crate) pods_dir: PathBuf,
    /// Process groups of every running container, killed on shutdown.
    pub(crate) pgids: Mutex<HashSet<i32>>,
    /// Service names in pods (`None` where mount namespaces are unavailable).
    pub(crate) dns: Option<dns::Dns>,
    pods: Mutex<HashMap<String, watch::Sender<Signal>>>,
}

impl Kubelet {
    pub fn new(
        api: Arc<ApiServer>,
        logs: Arc<LogStore>,
        images: BTreeMap<String, PathBuf>,
        kubeconfig: PathBuf,
        pods_dir: PathBuf,
    ) -> Self {
        let dns = dns::Dns::detect(&pods_dir);
        Self {
            api,
            logs,
            images,
            kubeconfig,
            pods_dir,
            pgids: Mutex::new(HashSet::new()),
            dns,
            pods: Mutex::new(HashMap::new()),
        }
    }

    /// SIGKILLs every process group started (shutdown, drop).
    pub fn kill_all(&self) {
        let pgids: Vec<i32> = self
            .pgids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for pg in pgids {
            runtime::signal_group(pg, libc::SIGKILL);
        }
    }
}

/// Watches pods and starts/stops their tasks.
pub fn spawn(kubelet: Arc<Kubelet>, ctx: Arc<Ctx>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = kubelet.api.store.subscribe();
        loop {
            let (pods, _) = kubelet.api.list(&ctx.pods, None);
            let mut live = HashSet::new();
            for pod in &pods {
                let uid = meta_str(pod, "uid").to_string();
                live.insert(uid.clone());
                let signal = if pod.pointer("/metadata/deletionTimestamp").is_some() {
                    Signal::Terminate(
                        pod.pointer("/metadata/deletionGracePeriodSeconds")
                            .and_then(Value::as_i64)
                            .unwrap_or(30),
                    )
                } else {
                    Signal::Run
                };
                let mut map = kubelet.pods.lock().unwrap_or_else(|p| p.into_inner());
                match map.get(&uid) {
                    Some(tx) => {
                        if *tx.borrow() != signal {
                            let _ = tx.send(signal);
                        }
                    }
                    None => {
                        let (tx, rx) = watch::channel(signal);
                        map.insert(uid.clone(), tx);
                        tokio::spawn(runtime::run_pod(
                            kubelet.clone(),
                            ctx.clone(),
                            pod.clone(),
                            rx,
                            cancel.clone(),
                        ));
                    }
                }
            }
            if let Some(dns) = &kubelet.dns {
                // Any change may be a Service created, deleted or given its IP.
                dns.refresh(&kubelet.api.list(&ctx.services, None).0);
            }
            {
                let mut map = kubelet.pods.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|uid, tx| {
                    if live.contains(uid) {
                        true
                    } else {
                        let _ = tx.send(Signal::Gone);
                        false
                    }
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    kubelet.kill_all();
                    return;
                }
                r = rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}
