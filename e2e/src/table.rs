//! Server-side Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

use crate::registry::{PrinterColumn, ResourceDef};
use serde_json::{json, Value};

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `[0]` and
/// `[?(@.type=="Ready")]` filters.
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur = vec![obj.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(field).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| {
                        item.get(field.trim()).is_some_and(|v| match v {
                            Value::String(s) => s == want,
                            Value::Number(n) => n.to_string() == want,
                            Value::Bool(b) => b.to_string() == want,
                            _ => false,
                        })
                    })
                    .cloned()
                    .collect();
            } else if inner == "*" {
                cur = cur
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .cloned()
                    .collect();
            } else {
                let i: usize = inner.parse().ok()?;
                cur = cur.iter().filter_map(|v| v.get(i).cloned()).collect();
            }
        } else {
            return None;
        }
    }
    match cur.len() {
        0 => None,
        1 => cur.pop(),
        _ => Some(Value::Array(cur)),
    }
}

/// "5m12s"-style ages, as kubectl prints them.
pub fn human_age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn col(name: &str, type_: &str, format: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": name, "priority": priority})
}

fn age(obj: &Value) -> Value {
    json!(human_age(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
    ))
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for cs in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(reason) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return reason.into();
        }
        if let Some(reason) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
                return reason.into();
            }
        }
    }
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .into()
}

/// Column definitions and cells for one object of a built-in kind.
fn builtin_columns(def: &ResourceDef) -> Vec<Value> {
    let mut cols = vec![col("Name", "string", "name", 0)];
    match def.plural.as_str() {
        "pods" => {
            cols.push(col("Ready", "string", "", 0));
            cols.push(col("Status", "string", "", 0));
            cols.push(col("Restarts", "string", "", 0));
            cols.push(col("Age", "string", "", 0));
            cols.push(col("IP", "string", "", 1));
        }
        "deployments" => {
            for c in ["Ready", "Up-to-date", "Available", "Age"] {
                cols.push(col(c, "string", "", 0));
            }
        }
        "replicasets" => {
            for c in ["Desired", "Current", "Ready", "Age"] {
                cols.push(col(c, "string", "", 0));
            }
        }
        "services" => {
            for c in ["Type", "Cluster-IP", "Port(s)", "Age"] {
                cols.push(col(c, "string", "", 0));
            }
        }
        "events" => {
            for c in ["Type", "Reason", "Object", "Message", "Age"] {
                cols.push(col(c, "string", "", 0));
            }
        }
        "namespaces" => {
            cols.push(col("Status", "string", "", 0));
            cols.push(col("Age", "string", "", 0));
        }
        _ => cols.push(col("Age", "string", "", 0)),
    }
    cols
}

fn builtin_cells(def: &ResourceDef, obj: &Value) -> Vec<Value> {
    let name = json!(obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default());
    match def.plural.as_str() {
        "pods" => pod_cells(name, obj),
        "deployments" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            json!(int(obj, "/status/updatedReplicas").to_string()),
            json!(int(obj, "/status/availableReplicas").to_string()),
            age(obj),
        ],
        "replicasets" => vec![
            name,
            json!(int(obj, "/spec/replicas").to_string()),
            json!(int(obj, "/status/replicas").to_string()),
            json!(int(obj, "/status/readyReplicas").to_string()),
            age(obj),
        ],
        "services" => service_cells(name, obj),
        "events" => event_cells(name, obj),
        "namespaces" => vec![
            name,
            json!(obj
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Active")),
            age(obj),
        ],
        _ => vec![name, age(obj)],
    }
}

/// A pod's row: name, ready containers, status, restarts, age, IP.
fn pod_cells(name: Value, obj: &Value) -> Vec<Value> {
    let statuses = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| {
        s.iter()
            .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
            .count()
    });
    let restarts: i64 = statuses.map_or(0, |s| {
        s.iter()
            .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
            .sum()
    });
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(pod_status(obj)),
        json!(restarts.to_string()),
        age(obj),
        json!(obj
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .unwrap_or("<none>")),
    ]
}

/// A service's row: name, type, cluster IP, ports, age.
fn service_cells(name: Value, obj: &Value) -> Vec<Value> {
    let ports: Vec<String> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            )
        })
        .collect();
    vec![
        name,
        json!(obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")),
        json!(obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("<none>")),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        age(obj),
    ]
}

/// An event's row: name, type, reason, object, message, age.
fn event_cells(name: Value, obj: &Value) -> Vec<Value> {
    let involved = obj.get("involvedObject").or_else(|| obj.get("regarding"));
    let object = involved
        .map(|i| {
            format!(
                "{}/{}",
                i.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase(),
                i.get("name").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    vec![
        name,
        json!(obj.get("type").and_then(Value::as_str).unwrap_or_default()),
        json!(obj
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()),
        json!(object),
        json!(obj
            .get("message")
            .or_else(|| obj.get("note"))
            .and_then(Value::as_str)
            .unwrap_or_default()),
        age(obj),
    ]
}

fn crd_columns(cols: &[PrinterColumn]) -> Vec<Value> {
    let mut out = vec![col("Name", "string", "name", 0)];
    for c in cols {
        out.push(json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    out
}

fn crd_cells(cols: &[PrinterColumn], obj: &Value) -> Vec<Value> {
    let mut out = vec![json!(obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default())];
    for c in cols {
        let v = eval(obj, &c.json_path);
        out.push(match (v, c.type_.as_str()) {
            (None, _) => Value::Null,
            (Some(Value::String(s)), "date") => json!(human_age(&s)),
            (Some(v), _) => v,
        });
    }
    out
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Clone, Copy, PartialEq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

pub fn to_table(def: &ResourceDef, objs: &[Value], rv: &str, include: Include) -> Value {
    let custom = def.crd.is_some();
    let columns = if custom {
        crd_columns(&def.columns)
    } else {
        builtin_columns(def)
    };
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = if custom {
                crd_cells(&def.columns, o)
            } else {
                builtin_cells(def, o)
            };
            let object = match include {
                Include::None => Value::Null,
                Include::Metadata => json!({"kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata")}),
                Include::Object => o.clone(),
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv}, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({"status": {"ready": 2, "conditions": [
            {"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "spec": {"list": [1, 2]}});
        assert_eq!(eval(&obj, ".status.ready"), Some(json!(2)));
        assert_eq!(eval(&obj, ".spec.list[1]"), Some(json!(2)));
        assert_eq!(
            eval(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(json!("True"))
        );
        assert_eq!(eval(&obj, ".status.missing"), None);
    }
}
