//! In-process controllers (Deployment, ReplicaSet, garbage collector,
//! namespace, endpoints). They use the API semantics layer directly and
//! re-run on every change plus a short tick (for time-based state such as
//! minReadySeconds).

pub mod decide;
mod endpoints;
mod gc;
mod workloads;

use crate::apiserver::{ApiServer, WriteOpts};
use crate::kubelet::Kubelet;
use crate::meta::{meta_str, new_uid, now, now_micro};
use crate::registry::ResourceDef;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use workloads::condition;

pub struct Ctx {
    pub api: Arc<ApiServer>,
    pub pods: ResourceDef,
    pub deployments: ResourceDef,
    pub replicasets: ResourceDef,
    pub services: ResourceDef,
    pub endpoints: ResourceDef,
    pub slices: ResourceDef,
    pub events: ResourceDef,
    pub namespaces: ResourceDef,
}

impl Ctx {
    fn new(api: Arc<ApiServer>) -> Option<Self> {
        let r = &api.registry;
        Some(Self {
            pods: r.find("", "v1", "pods")?,
            deployments: r.find("apps", "v1", "deployments")?,
            replicasets: r.find("apps", "v1", "replicasets")?,
            services: r.find("", "v1", "services")?,
            endpoints: r.find("", "v1", "endpoints")?,
            slices: r.find("discovery.k8s.io", "v1", "endpointslices")?,
            events: r.find("", "v1", "events")?,
            namespaces: r.find("", "v1", "namespaces")?,
            api,
        })
    }
}

/// Whether `obj` has an owner reference to `uid`.
pub fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

pub fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// Records a core/v1 Event about `obj`.
pub fn event(ctx: &Ctx, obj: &Value, type_: &str, reason: &str, message: &str) {
    record_event(
        &ctx.api,
        &ctx.events,
        obj,
        type_,
        reason,
        message,
        "kubesim-controller-manager",
    );
}

pub fn record_event(
    api: &ApiServer,
    events: &ResourceDef,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = match meta_str(obj, "namespace") {
        "" => "default",
        ns => ns,
    };
    let t = now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", meta_str(obj, "name"), &new_uid()[..8]), "namespace": ns},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": type_, "count": 1,
        "firstTimestamp": t, "lastTimestamp": t, "eventTime": now_micro(),
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": "kubesim",
    });
    if let Err(e) = api.create(events, ns, ev, &WriteOpts::manager(component)) {
        tracing::debug!(%e, "recording event");
    }
}

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

pub fn spawn_all(
    api: Arc<ApiServer>,
    kubelet: Arc<Kubelet>,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let Some(ctx) = Ctx::new(api.clone()).map(Arc::new) else {
        tracing::error!("built-in resources missing; controllers not started");
        return vec![];
    };
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
    tasks.push(crate::kubelet::spawn(kubelet, ctx.clone(), cancel.clone()));
    tasks.push(crate::proxy::spawn(ctx, cancel));
    tasks
}
