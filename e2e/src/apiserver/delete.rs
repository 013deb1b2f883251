//! delete: preconditions, propagation finalizers, graceful pod termination.

use super::{unchanged, ApiServer, Decision, DeleteOpts, Deleted, Outcome};
use crate::error::ApiError;
use crate::meta::{meta_str, now};
use crate::registry::ResourceDef;
use crate::store::Write;
use serde_json::{json, Value};

impl ApiServer {
    /// Deletes (or starts deleting) one object.
    pub fn delete(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deleted, ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        let mut removed = false;
        let out = self.decide(&def.storage, ns, name, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(def, name))?;
            check_preconditions(def, name, cur, opts)?;
            let (decision, removes) = deletion(def, cur, opts);
            if removes {
                removed = true;
            }
            Ok(decision)
        });
        let out = match out? {
            Outcome::DryRun(obj) => return Ok(Deleted::Pending(self.present(def, obj))),
            Outcome::Stored(out) => out,
        };
        let out = out.ok_or_else(|| ApiError::not_found(def, name))?;
        if removed {
            self.after_delete(def, &out);
            Ok(Deleted::Removed(self.present(def, out)))
        } else {
            Ok(Deleted::Pending(self.present(def, out)))
        }
    }
}

/// The delete options' UID and resourceVersion preconditions, checked against `cur`.
fn check_preconditions(
    def: &ResourceDef,
    name: &str,
    cur: &Value,
    opts: &DeleteOpts,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.precondition_uid {
        if meta_str(cur, "uid") != uid {
            return Err(ApiError::conflict_msg(
                def,
                name,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
    }
    if let Some(rv) = &opts.precondition_rv {
        if meta_str(cur, "resourceVersion") != rv {
            return Err(ApiError::conflict(def, name));
        }
    }
    Ok(())
}

/// What deleting `cur` does to the store, and whether it removes the object now (rather than
/// marking it for deletion: finalizers to run, or a pod's grace period).
fn deletion(def: &ResourceDef, cur: &Value, opts: &DeleteOpts) -> (Decision, bool) {
    let mut new = cur.clone();
    let already = cur.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers = deletion_finalizers(def, cur, opts, already);
    let grace = grace_seconds(def, cur, opts);
    if finalizers.is_empty() && grace == 0 {
        if opts.dry_run {
            return (Decision::DryRun(cur.clone()), false);
        }
        return (Decision::Write(Write::Remove), true);
    }
    if !already {
        new["metadata"]["deletionTimestamp"] = json!(now());
    }
    if grace > 0
        || cur
            .pointer("/metadata/deletionGracePeriodSeconds")
            .is_some()
    {
        let prev = cur
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        // A second delete may shorten, never lengthen, the grace period.
        let g = prev.map_or(grace, |p| p.min(grace));
        if g == 0 && finalizers.is_empty() {
            return (Decision::Write(Write::Remove), true);
        }
        new["metadata"]["deletionGracePeriodSeconds"] = json!(g);
    }
    new["metadata"]["finalizers"] = json!(finalizers);
    if opts.dry_run {
        return (Decision::DryRun(new), false);
    }
    if unchanged(cur, &new) {
        // No-op writes are not persisted: same resourceVersion, no watch event.
        return (Decision::Write(Write::Keep), false);
    }
    (Decision::Write(Write::Put(new)), false)
}

/// The object's finalizers once this delete has added its own (propagation, namespaces).
fn deletion_finalizers(
    def: &ResourceDef,
    cur: &Value,
    opts: &DeleteOpts,
    already: bool,
) -> Vec<Value> {
    let mut finalizers = super::finalizers(cur);
    match opts.propagation.as_deref() {
        Some("Foreground") if !already => finalizers.push(json!("foregroundDeletion")),
        Some("Orphan") if !already => finalizers.push(json!("orphan")),
        _ => {}
    }
    if def.storage == "core/namespaces" && !already {
        // The namespace controller empties it, then drops this finalizer.
        finalizers.push(json!("kubernetes"));
    }
    finalizers
}

/// The grace period of this delete: a running pod's (the request's, else its spec's), else 0.
fn grace_seconds(def: &ResourceDef, cur: &Value, opts: &DeleteOpts) -> i64 {
    if def.storage != "core/pods" {
        return 0;
    }
    let spec_grace = cur
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    let g = opts.grace_seconds.unwrap_or(spec_grace);
    let running = cur.pointer("/spec/nodeName").is_some()
        && !matches!(
            cur.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded") | Some("Failed")
        );
    if running {
        g.max(0)
    } else {
        0
    }
}
