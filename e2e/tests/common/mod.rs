//! Shared test helpers.
#![allow(dead_code)]

pub mod install;
pub mod manifests;
pub mod resp;

use std::path::PathBuf;
use std::time::Duration;

pub async fn cluster() -> kubesim::Cluster {
    kubesim::Cluster::start(
        kubesim::ClusterConfig::default().bookmark_interval(Duration::from_millis(300)),
    )
    .await
    .expect("cluster starts")
}

/// A client tool (kubectl, helm): `$KUBECTL`/`$HELM`, then the repo's tool cache.
pub fn tool(name: &str) -> PathBuf {
    let env = name.to_uppercase();
    if let Some(p) = std::env::var_os(&env) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cache/gamefleet/tools/bin").join(name);
    assert!(
        p.is_file(),
        "{name} not found: set ${env} or run scripts/install-tools (expected {})",
        p.display()
    );
    p
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
