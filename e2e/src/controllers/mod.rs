//! In-process controllers (Deployment, ReplicaSet, garbage collector,
//! namespace, endpoints). They use the API semantics layer directly and
//! re-run on every change plus a short tick (for time-based state such as
//! minReadySeconds).

pub mod decide;
mod endpoints;
mod gc;
mod owners;
mod workloads;

use crate::apiserver::ApiServer;
use crate::ctx::Ctx;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `f` after every burst of changes and at least every `tick`.
fn spawn_loop(
    api: Arc<ApiServer>,
    cancel: CancellationToken,
    tick: Duration,
    mut f: impl FnMut() + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = api.store.subscribe();
        loop {
            f();
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                    // Coalesce a burst of changes into one pass.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(tick) => {}
            }
        }
    })
}

/// Starts the Deployment/ReplicaSet, garbage collector, namespace and endpoints controllers.
pub fn spawn_all(ctx: Arc<Ctx>, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
    let api = ctx.api.clone();
    let tick = Duration::from_millis(250);
    let mut tasks = vec![];
    let c = ctx.clone();
    tasks.push(spawn_loop(api.clone(), cancel.clone(), tick, move || {
        // ReplicaSet status first: the rolling update counts available pods
        // from it, and a count older than the pods' readiness would let it
        // remove a ready old pod too early.
        workloads::reconcile_replicasets(&c);
        workloads::reconcile_deployments(&c);
        workloads::reconcile_replicasets(&c);
    }));
    let c = ctx.clone();
    tasks.push(spawn_loop(
        api.clone(),
        cancel.clone(),
        Duration::from_secs(1),
        move || {
            gc::collect(&c);
            gc::namespaces(&c);
        },
    ));
    let c = ctx.clone();
    tasks.push(spawn_loop(
        api.clone(),
        cancel.clone(),
        Duration::from_secs(1),
        move || endpoints::reconcile(&c),
    ));
    tasks
}
