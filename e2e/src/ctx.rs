//! What the in-process components (controllers, kubelet, Service proxies)
//! share: the API and the built-in resources they watch, and recording Events.

use crate::apiserver::{ApiServer, WriteOpts};
use crate::meta::{meta_str, new_uid, now, now_micro};
use crate::registry::ResourceDef;
use serde_json::{json, Value};
use std::sync::Arc;

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
    pub fn new(api: Arc<ApiServer>) -> Option<Self> {
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

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// Why an Event was recorded: the reasons kubesim's components give.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// Controller manager: a Deployment scaled one of its ReplicaSets.
    ScalingReplicaSet,
    /// Controller manager: a ReplicaSet created a pod.
    SuccessfulCreate,
    /// Controller manager: a ReplicaSet deleted a pod.
    SuccessfulDelete,
    /// Kubelet: the pod was bound to the node.
    Scheduled,
    /// Kubelet: a container started.
    Started,
    /// Kubelet: a container could not be configured or started.
    Failed,
    /// Kubelet: the pod's containers are being stopped.
    Killing,
    /// Kubelet: a container exited and waits to be restarted.
    BackOff,
    /// Kubelet: a liveness probe failed.
    Unhealthy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScalingReplicaSet => "ScalingReplicaSet",
            Self::SuccessfulCreate => "SuccessfulCreate",
            Self::SuccessfulDelete => "SuccessfulDelete",
            Self::Scheduled => "Scheduled",
            Self::Started => "Started",
            Self::Failed => "Failed",
            Self::Killing => "Killing",
            Self::BackOff => "BackOff",
            Self::Unhealthy => "Unhealthy",
        }
    }
}

/// Records a core/v1 Event about `obj` from the controller manager.
pub fn event(ctx: &Ctx, obj: &Value, type_: EventType, reason: Reason, message: &str) {
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

/// Records a core/v1 Event about `obj` from `component`.
pub fn record_event(
    api: &ApiServer,
    events: &ResourceDef,
    obj: &Value,
    type_: EventType,
    reason: Reason,
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
        "reason": reason.as_str(), "message": message, "type": type_.as_str(), "count": 1,
        "firstTimestamp": t, "lastTimestamp": t, "eventTime": now_micro(),
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": "kubesim",
    });
    if let Err(e) = api.create(events, ns, ev, &WriteOpts::manager(component)) {
        tracing::debug!(%e, "recording event");
    }
}
