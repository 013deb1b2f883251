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
                // Apply creates.
                let req = ApplyRequest {
                    manager: &opts.manager,
                    api_version: &def.api_version(),
                    subresource: "",
                    force: opts.force,
                    now: &now(),
                };
                let mut obj = ssa::apply(None, &patch, &req)
                    .map_err(|c| ApiError::apply_conflict(def, name, &c))?;
                obj["metadata"]["name"] = json!(name);
                return self.create(def, ns, obj, opts).map(|o| (o, true));
            }
        }
        let api_version = def.api_version();
        let out = self.write_existing(def, ns, name, sub, opts, |cur| {
            let mut cur = cur.clone();
            let applied = match ptype {
                PatchType::Json => {
                    let p: json_patch::Patch = serde_json::from_value(patch.clone())
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut cur, &p).map_err(|e| {
                        ApiError::unprocessable(
                            def,
                            name,
                            &format!("the JSON patch could not be applied: {e}"),
                        )
                    })?;
                    cur
                }
                PatchType::Merge => {
                    json_patch::merge(&mut cur, &patch);
                    cur
                }
                PatchType::Strategic => {
                    strategic_merge(&mut cur, &patch);
                    cur
                }
                PatchType::Apply => {
                    let req = ApplyRequest {
                        manager: &opts.manager,
                        api_version: &api_version,
                        subresource: sub,
                        force: opts.force,
                        now: &now(),
                    };
                    let mut patch = patch.clone();
                    if def.status {
                        // Apply to the main resource ignores status, and vice versa.
                        if let Some(o) = patch.as_object_mut() {
                            if sub == "status" {
                                o.retain(|k, _| {
                                    k == "status"
                                        || k == "metadata"
                                        || k == "apiVersion"
                                        || k == "kind"
                                });
                            } else {
                                o.remove("status");
                            }
                        }
                    }
                    let mut merged = ssa::apply(Some(&cur), &patch, &req)
                        .map_err(|c| ApiError::apply_conflict(def, name, &c))?;
                    merged["metadata"]["kubesim.apply"] = json!(true);
                    if let Some(rv) = patch.pointer("/metadata/resourceVersion") {
                        merged["metadata"]["resourceVersion"] = rv.clone();
                    } else if let Some(m) =
                        merged.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("resourceVersion");
                    }
                    merged
                }
            };
            let mut applied = applied;
            if ptype != PatchType::Apply && patch.pointer("/metadata/resourceVersion").is_none() {
                // Patches without a resourceVersion never conflict.
                if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
            }
            Ok(applied)
        })?;
        Ok((out, false))
    }
}
