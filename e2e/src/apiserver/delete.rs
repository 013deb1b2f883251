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
            let mut new = cur.clone();
            let mut finalizers = super::finalizers(cur);
            let already = cur.pointer("/metadata/deletionTimestamp").is_some();
            match opts.propagation.as_deref() {
                Some("Foreground") if !already => finalizers.push(json!("foregroundDeletion")),
                Some("Orphan") if !already => finalizers.push(json!("orphan")),
                _ => {}
            }
            if def.storage == "core/namespaces" && !already {
                // The namespace controller empties it, then drops this finalizer.
                finalizers.push(json!("kubernetes"));
            }
            let grace = if def.storage == "core/pods" {
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
            } else {
                0
            };
            if finalizers.is_empty() && grace == 0 {
                if opts.dry_run {
                    return Ok(Decision::DryRun(cur.clone()));
                }
                removed = true;
                return Ok(Decision::Write(Write::Remove));
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
                    removed = true;
                    return Ok(Decision::Write(Write::Remove));
                }
                new["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
            new["metadata"]["finalizers"] = json!(finalizers);
            if opts.dry_run {
                return Ok(Decision::DryRun(new));
            }
            if unchanged(cur, &new) {
                // No-op writes are not persisted: same resourceVersion, no watch event.
                return Ok(Decision::Write(Write::Keep));
            }
            Ok(Decision::Write(Write::Put(new)))
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
