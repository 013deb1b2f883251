//! events.k8s.io/v1 Events are a view on core/v1 Events (as in Kubernetes,
//! where both share one storage), so `kubectl get events` shows both.

use serde_json::{Map, Value};

/// (core field, events.k8s.io field) pairs.
const FIELDS: [(&str, &str); 12] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("eventTime", "eventTime"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn convert(obj: &Value, api_version: &str, to_v1: bool) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    if let Some(m) = obj.get("metadata") {
        out.insert("metadata".into(), m.clone());
    }
    for (core, v1) in FIELDS {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = obj.get(from) {
            out.insert(to.into(), v.clone());
        }
    }
    for f in ["related"] {
        if let Some(v) = obj.get(f) {
            out.insert(f.into(), v.clone());
        }
    }
    // series: core {count, lastObservedTime} == v1 {count, lastObservedTime}
    if let Some(v) = obj.get("series") {
        out.insert("series".into(), v.clone());
    }
    Value::Object(out)
}

pub fn core_to_v1(obj: &Value) -> Value {
    convert(obj, "events.k8s.io/v1", true)
}

pub fn v1_to_core(obj: &Value) -> Value {
    let mut core = convert(obj, "v1", false);
    // Core events carry a count and timestamps that kubectl prints.
    if core.get("count").is_none() {
        let n = obj
            .pointer("/series/count")
            .cloned()
            .unwrap_or(Value::from(1));
        core["count"] = n;
    }
    if core.get("lastTimestamp").is_none() {
        let t = obj
            .pointer("/series/lastObservedTime")
            .or_else(|| obj.get("eventTime"))
            .and_then(Value::as_str)
            .map(|s| {
                s.split('.')
                    .next()
                    .unwrap_or(s)
                    .trim_end_matches('Z')
                    .to_string()
                    + "Z"
            });
        if let Some(t) = t {
            core["lastTimestamp"] = Value::String(t.clone());
            if core.get("firstTimestamp").is_none() {
                core["firstTimestamp"] = Value::String(t);
            }
        }
    }
    core
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_views() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"}, "regarding": {"kind": "Pod", "name": "p"},
            "note": "hello", "reason": "Started", "type": "Normal", "reportingController": "c",
            "eventTime": "2024-01-01T00:00:00.123456Z"});
        let core = v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["lastTimestamp"], "2024-01-01T00:00:00Z");
        let back = core_to_v1(&core);
        assert_eq!(back["note"], "hello");
        assert_eq!(back["regarding"], v1["regarding"]);
    }
}
