//! The scale subresource (autoscaling/v1 Scale).

use super::{ApiServer, WriteOpts};
use crate::error::ApiError;
use crate::meta::meta_str;
use crate::registry::{ResourceDef, ScalePaths};
use serde_json::{json, Value};

impl ApiServer {
    /// The autoscaling/v1 Scale view of an object.
    pub fn get_scale(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        let paths = def.scale.clone().ok_or_else(|| {
            ApiError::not_found_named(&format!("{}/scale", def.plural), &def.group, name)
        })?;
        let obj = self.get(def, ns, name)?;
        Ok(scale_of(&obj, &paths))
    }

    /// Writes a Scale (from PUT or PATCH) back to the object's replicas.
    pub fn write_scale(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &WriteOpts,
        f: impl FnOnce(Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let paths = def.scale.clone().ok_or_else(|| {
            ApiError::not_found_named(&format!("{}/scale", def.plural), &def.group, name)
        })?;
        let out = self.write_existing(def, ns, name, "", opts, |cur| {
            let scale = f(scale_of(cur, &paths))?;
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let want_rv = meta_str(&scale, "resourceVersion").to_string();
            let mut new = cur.clone();
            set_path(&mut new, &paths.spec_replicas, json!(replicas));
            if want_rv.is_empty() {
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
            } else {
                new["metadata"]["resourceVersion"] = json!(want_rv);
            }
            Ok(new)
        })?;
        Ok(scale_of(&out, &paths))
    }
}

fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let replicas = crate::table::eval(obj, &paths.spec_replicas).unwrap_or(json!(0));
    let status_replicas = crate::table::eval(obj, &paths.status_replicas).unwrap_or(json!(0));
    let mut status = json!({"replicas": status_replicas});
    let selector = match paths
        .label_selector
        .as_deref()
        .and_then(|p| crate::table::eval(obj, p))
    {
        Some(Value::String(s)) => Some(s),
        _ => obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    };
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"]},
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// Sets a `.a.b` path, creating objects on the way.
pub fn set_path(obj: &mut Value, path: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i == segs.len() - 1 {
            cur[*seg] = v;
            return;
        }
        cur = &mut cur[*seg];
    }
}
