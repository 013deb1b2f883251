//! Leaf helpers every layer shares: timestamps, uids and object metadata.

use serde_json::Value;

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
