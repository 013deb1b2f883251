//! Leaf helpers every layer shares: timestamps, uids, object metadata and
//! status conditions.

use serde_json::{json, Value};

/// Now, RFC 3339 to the second (metav1.Time).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now, RFC 3339 to the microsecond (metav1.MicroTime).
pub fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A `metadata` string field, empty when absent.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The strings of a JSON array (others skipped; not an array: none).
pub fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// A condition, keeping lastTransitionTime when the status did not change.
pub fn condition(obj: &Value, type_: &str, status: bool, reason: &str, message: &str) -> Value {
    let s = if status { "True" } else { "False" };
    let prev = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let t = match prev {
        Some(p) if p["status"] == s => p["lastTransitionTime"].clone(),
        _ => json!(now()),
    };
    let update = match prev {
        Some(p) if p["status"] == s && p["reason"] == reason => {
            p.get("lastUpdateTime").cloned().unwrap_or(json!(now()))
        }
        _ => json!(now()),
    };
    json!({"type": type_, "status": s, "reason": reason, "message": message, "lastTransitionTime": t, "lastUpdateTime": update})
}
