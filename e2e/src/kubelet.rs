//! The kubelet: runs pods as local processes.

mod dns;
pub mod hosts;
mod logs;
mod node;
mod probe;
mod runtime;

pub use logs::LogStore;
pub use node::Kubelet;

use crate::ctx::Ctx;
use crate::meta::meta_str;
use node::Signal;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
