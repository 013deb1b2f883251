//! In-process controllers. They use the API semantics layer directly.

use crate::apiserver::ApiServer;
use crate::kubelet::Kubelet;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn spawn_all(
    _api: Arc<ApiServer>,
    _kubelet: Arc<Kubelet>,
    _cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    vec![]
}
