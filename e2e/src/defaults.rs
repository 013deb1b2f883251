//! Defaults the API server fills in for built-in kinds (the subset clients rely on).

use crate::meta::meta_str;
use crate::registry::ResourceDef;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

fn default(obj: &mut Value, ptr: &str, v: Value) {
    if obj.pointer(ptr).is_none() {
        let segs: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
        let mut cur = &mut *obj;
        for (i, s) in segs.iter().enumerate() {
            if !cur.is_object() {
                return;
            }
            if i == segs.len() - 1 {
                cur[*s] = v;
                return;
            }
            if cur.get(*s).is_none() {
                cur[*s] = json!({});
            }
            cur = &mut cur[*s];
        }
    }
}

pub fn pod_spec(spec: &mut Value) {
    default(spec, "/restartPolicy", json!("Always"));
    default(spec, "/terminationGracePeriodSeconds", json!(30));
    default(spec, "/dnsPolicy", json!("ClusterFirst"));
    default(spec, "/schedulerName", json!("default-scheduler"));
    default(spec, "/serviceAccountName", json!("default"));
    default(spec, "/securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default(c, "/imagePullPolicy", json!("IfNotPresent"));
                default(c, "/terminationMessagePath", json!("/dev/termination-log"));
                default(c, "/terminationMessagePolicy", json!("File"));
                default(c, "/resources", json!({}));
                for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                    if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
                        default(p, "/timeoutSeconds", json!(1));
                        default(p, "/periodSeconds", json!(10));
                        default(p, "/successThreshold", json!(1));
                        default(p, "/failureThreshold", json!(3));
                        if p.get("httpGet").is_some() {
                            default(p, "/httpGet/scheme", json!("HTTP"));
                        }
                    }
                }
                if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
                    for e in env {
                        if e.pointer("/valueFrom/fieldRef").is_some() {
                            default(e, "/valueFrom/fieldRef/apiVersion", json!("v1"));
                        }
                    }
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        default(p, "/protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

pub fn pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        pod_spec(spec);
    }
    default(obj, "/spec/nodeName", json!("kubesim"));
    obj["status"] = json!({
        "phase": "Pending",
        "qosClass": "BestEffort",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": crate::meta::now()}],
    });
}

pub fn service(obj: &mut Value) {
    default(obj, "/spec/type", json!("ClusterIP"));
    default(obj, "/spec/sessionAffinity", json!("None"));
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            default(p, "/protocol", json!("TCP"));
            if p.get("targetPort").is_none() {
                p["targetPort"] = p.get("port").cloned().unwrap_or(json!(0));
            }
        }
    }
}

pub fn deployment(obj: &mut Value) {
    default(obj, "/spec/replicas", json!(1));
    default(obj, "/spec/revisionHistoryLimit", json!(10));
    default(obj, "/spec/progressDeadlineSeconds", json!(600));
    default(obj, "/spec/strategy/type", json!("RollingUpdate"));
    if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
        default(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
        default(
            obj,
            "/spec/strategy/rollingUpdate/maxUnavailable",
            json!("25%"),
        );
    }
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

/// Kind-specific defaults for a new object (`node_ports`: the next NodePort to hand out).
pub fn on_create(def: &ResourceDef, obj: &mut Value, node_ports: &AtomicU32) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => {
            let name = meta_str(obj, "name").to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => pod(obj),
        ("", "services") => {
            service(obj);
            let ip = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if ip.is_empty() {
                let ip = crate::ipalloc::next_service_ip();
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            let node_port = matches!(
                obj.pointer("/spec/type").and_then(Value::as_str),
                Some("NodePort") | Some("LoadBalancer")
            );
            if node_port {
                if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if p.get("nodePort").is_none() {
                            p["nodePort"] = json!(node_ports.fetch_add(1, Ordering::Relaxed));
                        }
                    }
                }
            }
        }
        ("", "secrets") => {
            secret_string_data(obj);
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        ("apps", "deployments") => deployment(obj),
        ("apps", "replicasets") | ("apps", "statefulsets")
            if obj.pointer("/spec/replicas").is_none() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        _ => {}
    }
}

/// Defaults applied on every write of the main resource (Kubernetes defaults on decode).
pub fn on_update(def: &ResourceDef, cur: &Value, new: &mut Value) {
    match def.storage.as_str() {
        "core/pods" => {
            if let Some(spec) = new.get_mut("spec") {
                pod_spec(spec);
            }
        }
        "core/services" => {
            service(new);
            for f in ["clusterIP", "clusterIPs"] {
                if new.pointer(&format!("/spec/{f}")).is_none() {
                    if let Some(v) = cur.pointer(&format!("/spec/{f}")) {
                        new["spec"][f] = v.clone();
                    }
                }
            }
        }
        "apps/deployments" => deployment(new),
        "apps/replicasets" if new.pointer("/spec/replicas").is_none() => {
            new["spec"]["replicas"] = json!(1);
        }
        "core/secrets" => secret_string_data(new),
        _ => {}
    }
}

/// A Secret's `stringData` moves into `data`, base64-encoded.
fn secret_string_data(obj: &mut Value) {
    if let Some(string_data) = obj.get("stringData").and_then(Value::as_object).cloned() {
        for (k, v) in string_data {
            let enc =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            obj["data"][k] = json!(enc);
        }
        if let Some(o) = obj.as_object_mut() {
            o.remove("stringData");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_fill_only_missing_fields() {
        let mut d =
            json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut p = json!({"spec": {"containers": [{"name": "c", "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1}}]}});
        pod(&mut p);
        let probe = &p["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(
            (
                probe["periodSeconds"].as_i64(),
                probe["failureThreshold"].as_i64()
            ),
            (Some(1), Some(3))
        );
    }
}
