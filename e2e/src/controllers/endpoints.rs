//! Endpoints and EndpointSlices for Services with selectors.

use super::owners::owner_ref;
use crate::apiserver::WriteOpts;
use crate::ctx::Ctx;
use crate::meta::meta_str;
use crate::selector::LabelSelector;
use crate::store::Write;
use serde_json::{json, Value};

const MANAGER: &str = "kubesim-endpoint-controller";

/// Resolves a Service targetPort (number or container port name) for a pod.
pub fn target_port(pod: &Value, target: &Value) -> Option<i64> {
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)?
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .find(|p| p["name"] == s.as_str())
                .and_then(|p| p["containerPort"].as_i64()),
        },
        _ => None,
    }
}

pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

/// Upserts an object if its non-metadata content differs.
fn upsert(ctx: &Ctx, def: &crate::registry::ResourceDef, ns: &str, name: &str, desired: Value) {
    let r = ctx
        .api
        .store
        .mutate::<crate::error::ApiError>(&def.storage, ns, name, |cur| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("metadata");
                }
                v
            };
            match cur {
                Some(c)
                    if strip(c) == strip(&desired)
                        && c["metadata"]["labels"] == desired["metadata"]["labels"] =>
                {
                    Ok(Write::Keep)
                }
                Some(c) => {
                    let mut n = desired.clone();
                    for f in ["uid", "creationTimestamp", "generation"] {
                        n["metadata"][f] = c["metadata"][f].clone();
                    }
                    Ok(Write::Put(n))
                }
                None => Ok(Write::Keep),
            }
        });
    if let Err(e) = r {
        tracing::debug!(%e, "updating endpoints");
    }
    if ctx.api.store.get(&def.storage, ns, name).is_none() {
        if let Err(e) = ctx
            .api
            .create(def, ns, desired, &WriteOpts::manager(MANAGER))
        {
            tracing::debug!(%e, "creating endpoints");
        }
    }
}

pub fn reconcile(ctx: &Ctx) {
    let (services, _) = ctx.api.list(&ctx.services, None);
    let (pods, _) = ctx.api.list(&ctx.pods, None);
    for svc in services {
        let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
            continue;
        };
        if sel.is_empty() || svc.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = meta_str(&svc, "namespace").to_string();
        let name = meta_str(&svc, "name").to_string();
        let members = service_members(&pods, &ns, sel);
        let ep = endpoints_for(&svc, &members);
        upsert(ctx, &ctx.endpoints, &ns, &name, ep);
        let slice = endpoint_slice_for(&svc, &members);
        upsert(ctx, &ctx.slices, &ns, &format!("{name}-kubesim"), slice);
    }
}

/// The pods of namespace `ns` the selector `sel` picks that have an IP, by name.
fn service_members<'a>(
    pods: &'a [Value],
    ns: &str,
    sel: &serde_json::Map<String, Value>,
) -> Vec<&'a Value> {
    let selector = LabelSelector::from_object(&json!({"matchLabels": sel}));
    let mut members: Vec<&Value> = pods
        .iter()
        .filter(|p| meta_str(p, "namespace") == ns && selector.matches(p))
        .filter(|p| {
            p.pointer("/status/podIP")
                .and_then(Value::as_str)
                .is_some_and(|ip| !ip.is_empty())
        })
        .collect();
    members.sort_by_key(|p| meta_str(p, "name").to_string());
    members
}

/// A member pod as an endpoint's `targetRef`.
fn target_ref(p: &Value, ns: &str) -> Value {
    json!({"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns, "uid": p["metadata"]["uid"]})
}

/// The service's ports as endpoint ports, named target ports resolved on pod `p`.
fn endpoint_ports(svc: &Value, p: Option<&&Value>) -> Vec<Value> {
    let svc_ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    svc_ports
        .iter()
        .filter_map(|sp| {
            let tp = p
                .and_then(|p| target_port(p, &sp["targetPort"]))
                .or_else(|| sp["targetPort"].as_i64())?;
            let mut e = json!({"port": tp, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(n) = sp.get("name") {
                e["name"] = n.clone();
            }
            Some(e)
        })
        .collect()
}

/// The service's Endpoints object: one subset of its member pods, ready or not.
fn endpoints_for(svc: &Value, members: &[&Value]) -> Value {
    let ns = meta_str(svc, "namespace");
    let name = meta_str(svc, "name");
    let addr = |p: &Value| json!({"ip": p["status"]["podIP"], "nodeName": "kubesim", "targetRef": target_ref(p, ns)});
    let ready: Vec<Value> = members
        .iter()
        .filter(|p| pod_ready(p))
        .map(|p| addr(p))
        .collect();
    let not_ready: Vec<Value> = members
        .iter()
        .filter(|p| !pod_ready(p))
        .map(|p| addr(p))
        .collect();
    let mut subsets = vec![];
    if !members.is_empty() {
        let mut s = json!({"ports": endpoint_ports(svc, members.first())});
        if !ready.is_empty() {
            s["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            s["notReadyAddresses"] = json!(not_ready);
        }
        subsets.push(s);
    }
    let labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [owner_ref(svc)]}, "subsets": subsets})
}

/// The service's EndpointSlice: every member pod with its conditions.
fn endpoint_slice_for(svc: &Value, members: &[&Value]) -> Value {
    let ns = meta_str(svc, "namespace");
    let name = meta_str(svc, "name");
    let slice_endpoints: Vec<Value> = members
        .iter()
        .map(|p| {
            let terminating = p.pointer("/metadata/deletionTimestamp").is_some();
            json!({"addresses": [p["status"]["podIP"]], "nodeName": "kubesim", "targetRef": target_ref(p, ns),
                "conditions": {"ready": pod_ready(p), "serving": pod_ready(p) || terminating, "terminating": terminating}})
        })
        .collect();
    let mut slice_labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    slice_labels["kubernetes.io/service-name"] = json!(name);
    slice_labels["endpointslice.kubernetes.io/managed-by"] =
        json!("endpointslice-controller.k8s.io");
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-kubesim"), "namespace": ns, "labels": slice_labels,
            "ownerReferences": [owner_ref(svc)]},
        "addressType": "IPv4", "endpoints": slice_endpoints, "ports": endpoint_ports(svc, members.first())})
}
