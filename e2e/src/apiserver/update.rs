//! update: the read-modify-write path every write of an existing object takes.

use super::validate::validate;
use super::{finalizers, unchanged, ApiServer, Decision, Outcome, WriteOpts};
use crate::error::ApiError;
use crate::meta::{meta_str, now};
use crate::registry::ResourceDef;
use crate::ssa::{self, ApplyRequest};
use crate::store::Write;
use serde_json::{json, Value};

impl ApiServer {
    /// Replaces an object (PUT) or its status (`subresource == "status"`).
    pub fn update(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        obj: Value,
        sub: &str,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let new = self.to_storage(def, obj);
        self.write_existing(def, ns, name, sub, opts, |_cur| Ok(new))
    }

    /// The common read-modify-write path: `f` turns the live object into the
    /// desired one; this enforces resourceVersion, subresource scoping,
    /// generation and finalizer semantics.
    pub fn write_existing(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        sub: &str,
        opts: &WriteOpts,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        let api_version = def.api_version();
        let mut result_removed = false;
        let out = self.decide(&def.storage, ns, name, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(def, name))?;
            let cur_presented = self.present(def, cur.clone());
            let desired = self.to_storage(def, f(&cur_presented)?);
            let mut new = self.merge_update(def, cur, desired, sub)?;
            let want_rv = meta_str(&new, "resourceVersion");
            if !want_rv.is_empty() && want_rv != meta_str(cur, "resourceVersion") {
                return Err(ApiError::conflict(def, name));
            }
            if sub.is_empty() {
                validate(def, &mut new, opts)?;
            } else if def.schema.is_some() {
                validate(
                    def,
                    &mut new,
                    &WriteOpts {
                        strict: false,
                        ..opts.clone()
                    },
                )?;
            }
            if !is_apply_result(&new) {
                let req = ApplyRequest {
                    manager: &opts.manager,
                    api_version: &api_version,
                    subresource: sub,
                    force: false,
                    now: &now(),
                };
                ssa::track_update(Some(cur), &mut new, &req);
            } else if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("kubesim.apply");
            }
            if opts.dry_run {
                return Ok(Decision::DryRun(new));
            }
            if unchanged(cur, &new) {
                // No-op writes are not persisted: same resourceVersion, no watch event.
                return Ok(Decision::Write(Write::Keep));
            }
            let finalizers_empty = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if new.pointer("/metadata/deletionTimestamp").is_some()
                && finalizers_empty
                && !self.graceful_pending(def, &new)
            {
                result_removed = true;
                return Ok(Decision::Write(Write::Remove));
            }
            Ok(Decision::Write(Write::Put(new)))
        });
        let out = match out? {
            Outcome::DryRun(obj) => return Ok(self.present(def, obj)),
            Outcome::Stored(out) => out,
        };
        let out = out.ok_or_else(|| ApiError::not_found(def, name))?;
        if !result_removed {
            self.after_write(def, &out);
        }
        Ok(self.present(def, out))
    }

    /// Pods being deleted stay until the kubelet has stopped them.
    fn graceful_pending(&self, def: &ResourceDef, obj: &Value) -> bool {
        def.storage == "core/pods"
            && obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0
    }

    /// Builds the stored object from the live one and the client's version.
    fn merge_update(
        &self,
        def: &ResourceDef,
        cur: &Value,
        desired: Value,
        sub: &str,
    ) -> Result<Value, ApiError> {
        if !desired.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let body_name = meta_str(&desired, "name");
        if !body_name.is_empty() && body_name != meta_str(cur, "name") {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                meta_str(cur, "name")
            )));
        }
        let mut new = match sub {
            "status" => status_update(cur, &desired),
            _ => main_update(def, cur, desired),
        };
        new["apiVersion"] = cur["apiVersion"].clone();
        new["kind"] = cur["kind"].clone();
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        keep_server_metadata(cur, &mut new);
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            // Finalizers may only be removed once deletion started.
            let old = finalizers(cur);
            let keep: Vec<Value> = finalizers(&new)
                .into_iter()
                .filter(|f| old.contains(f))
                .collect();
            new["metadata"]["finalizers"] = json!(keep);
        }
        if sub.is_empty() {
            crate::defaults::on_update(def, cur, &mut new);
        }
        if sub.is_empty() && spec_changed(cur, &new) {
            let g = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        Ok(new)
    }
}

/// A status update: the live object with the client's status (and resourceVersion and
/// managedFields).
fn status_update(cur: &Value, desired: &Value) -> Value {
    let mut n = cur.clone();
    match desired.get("status") {
        Some(s) => n["status"] = s.clone(),
        None => {
            if let Some(o) = n.as_object_mut() {
                o.remove("status");
            }
        }
    }
    // The client's resourceVersion and managedFields still apply.
    if let Some(rv) = desired.pointer("/metadata/resourceVersion") {
        n["metadata"]["resourceVersion"] = rv.clone();
    } else if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if let Some(mf) = desired.pointer("/metadata/managedFields") {
        n["metadata"]["managedFields"] = mf.clone();
    }
    n
}

/// An update of the main resource: the client's object, keeping the live status when the
/// resource has a status subresource.
fn main_update(def: &ResourceDef, cur: &Value, desired: Value) -> Value {
    let mut n = desired;
    if def.status {
        match cur.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(o) = n.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    n
}

/// The metadata only the server sets, copied from the live object (or removed with it).
fn keep_server_metadata(cur: &Value, new: &mut Value) {
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match cur["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
}

fn is_apply_result(obj: &Value) -> bool {
    obj.pointer("/metadata/kubesim.apply").is_some()
}

/// Whether anything but metadata and status changed (which bumps generation).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}
