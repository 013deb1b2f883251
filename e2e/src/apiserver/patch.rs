//! patch: JSON, merge, strategic merge and server-side apply.

use super::{parse_body, ApiServer, PatchType, WriteOpts};
use crate::error::ApiError;
use crate::merge::strategic_merge;
use crate::meta::now;
use crate::registry::ResourceDef;
use crate::ssa::{self, ApplyRequest};
use serde_json::{json, Value};

impl ApiServer {
    #[allow(clippy::too_many_arguments)] // mirrors the HTTP request's parts
    pub fn patch(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        sub: &str,
        opts: &WriteOpts,
    ) -> Result<(Value, bool), ApiError> {
        let patch: Value = parse_body(body, ptype == PatchType::Apply)?;
        if ptype == PatchType::Apply {
            let ns_eff = if def.namespaced { ns } else { "" };
            if self.store.get(&def.storage, ns_eff, name).is_none() && sub.is_empty() {
                return self
                    .create_by_apply(def, ns, name, &patch, opts)
                    .map(|o| (o, true));
            }
        }
        let api_version = def.api_version();
        let out = self.write_existing(def, ns, name, sub, opts, |cur| {
            let target = PatchTarget {
                def,
                name,
                sub,
                opts,
                api_version: &api_version,
            };
            target.patched(cur, ptype, &patch)
        })?;
        Ok((out, false))
    }

    /// Server-side apply of an object that does not exist yet: it is created.
    fn create_by_apply(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        patch: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let req = ApplyRequest {
            manager: &opts.manager,
            api_version: &def.api_version(),
            subresource: "",
            force: opts.force,
            now: &now(),
        };
        let mut obj =
            ssa::apply(None, patch, &req).map_err(|c| ApiError::apply_conflict(def, name, &c))?;
        obj["metadata"]["name"] = json!(name);
        self.create(def, ns, obj, opts)
    }
}

/// The object a patch request changes, and how.
struct PatchTarget<'a> {
    def: &'a ResourceDef,
    name: &'a str,
    sub: &'a str,
    opts: &'a WriteOpts,
    api_version: &'a str,
}

impl PatchTarget<'_> {
    /// The object `cur` becomes under the patch.
    fn patched(&self, cur: &Value, ptype: PatchType, patch: &Value) -> Result<Value, ApiError> {
        let mut cur = cur.clone();
        let mut applied = match ptype {
            PatchType::Json => {
                self.json_patched(&mut cur, patch)?;
                cur
            }
            PatchType::Merge => {
                json_patch::merge(&mut cur, patch);
                cur
            }
            PatchType::Strategic => {
                strategic_merge(&mut cur, patch);
                cur
            }
            PatchType::Apply => self.applied(&cur, patch)?,
        };
        if ptype != PatchType::Apply && patch.pointer("/metadata/resourceVersion").is_none() {
            // Patches without a resourceVersion never conflict.
            if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
        }
        Ok(applied)
    }

    /// A JSON patch (RFC 6902) applied to `cur` in place.
    fn json_patched(&self, cur: &mut Value, patch: &Value) -> Result<(), ApiError> {
        let p: json_patch::Patch = serde_json::from_value(patch.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(cur, &p).map_err(|e| {
            ApiError::unprocessable(
                self.def,
                self.name,
                &format!("the JSON patch could not be applied: {e}"),
            )
        })
    }

    /// Server-side apply of `patch` to the existing object `cur`.
    fn applied(&self, cur: &Value, patch: &Value) -> Result<Value, ApiError> {
        let req = ApplyRequest {
            manager: &self.opts.manager,
            api_version: self.api_version,
            subresource: self.sub,
            force: self.opts.force,
            now: &now(),
        };
        let mut patch = patch.clone();
        if self.def.status {
            scope_to_subresource(&mut patch, self.sub);
        }
        let mut merged = ssa::apply(Some(cur), &patch, &req)
            .map_err(|c| ApiError::apply_conflict(self.def, self.name, &c))?;
        merged["metadata"]["kubesim.apply"] = json!(true);
        if let Some(rv) = patch.pointer("/metadata/resourceVersion") {
            merged["metadata"]["resourceVersion"] = rv.clone();
        } else if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Ok(merged)
    }
}

/// Apply to the main resource ignores status, and vice versa.
fn scope_to_subresource(patch: &mut Value, sub: &str) {
    if let Some(o) = patch.as_object_mut() {
        if sub == "status" {
            o.retain(|k, _| k == "status" || k == "metadata" || k == "apiVersion" || k == "kind");
        } else {
            o.remove("status");
        }
    }
}
