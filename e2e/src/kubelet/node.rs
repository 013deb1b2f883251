//! The kubelet's state: what it runs pods with, and their process groups.

use super::dns::Dns;
use super::logs::LogStore;
use crate::apiserver::ApiServer;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Signals a process group (`pgid > 1` only).
pub fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

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
    pub(crate) dns: Option<Dns>,
    /// Each running pod's task, by uid.
    pub(super) pods: Mutex<HashMap<String, watch::Sender<Signal>>>,
}

impl Kubelet {
    pub fn new(
        api: Arc<ApiServer>,
        logs: Arc<LogStore>,
        images: BTreeMap<String, PathBuf>,
        kubeconfig: PathBuf,
        pods_dir: PathBuf,
    ) -> Self {
        let dns = Dns::detect(&pods_dir);
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

    /// SIGKILLs one container's process group and forgets it.
    pub(super) fn kill_group(&self, pg: i32) {
        signal_group(pg, libc::SIGKILL);
        self.pgids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pg);
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
            signal_group(pg, libc::SIGKILL);
        }
    }
}
