//! create: server-assigned fields, kind defaults, namespace checks.

use super::validate::validate;
use super::ApiServer;
use super::WriteOpts;
use crate::error::ApiError;
use crate::meta::{meta_str, new_uid, now};
use crate::registry::ResourceDef;
use crate::ssa::{self, ApplyRequest};
use crate::store::Write;
use serde_json::{json, Value};

impl ApiServer {
    fn check_namespace(&self, def: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object must be set",
            ));
        }
        match self.store.get("core/namespaces", "", ns) {
            None => Err(ApiError::not_found_named("namespaces", "", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Server-assigned fields and kind-specific defaults for a new object.
    fn prepare_create(&self, def: &ResourceDef, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if meta_name(meta).is_empty() {
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if generate.is_empty() {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            meta["name"] = json!(format!("{generate}{}", random_suffix()));
        }
        if def.namespaced {
            let body_ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            meta["namespace"] = json!(ns);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        let m = meta
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("resourceVersion");
        if def.status && def.crd.is_some() {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        crate::defaults::on_create(def, obj, &self.node_ports);
        Ok(())
    }

    pub fn create(
        &self,
        def: &ResourceDef,
        ns: &str,
        obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        let mut obj = self.to_storage(def, obj);
        let store_def = self.storage_def(def);
        self.prepare_create(&store_def, ns, &mut obj)?;
        self.check_namespace(def, ns)?;
        validate(def, &mut obj, opts)?;
        let name = meta_str(&obj, "name").to_string();
        let req = ApplyRequest {
            manager: &opts.manager,
            api_version: &def.api_version(),
            subresource: "",
            force: false,
            now: &now(),
        };
        if !has_apply_fields(&obj) {
            ssa::track_update(None, &mut obj, &req);
        }
        if opts.dry_run {
            if self.store.get(&def.storage, ns, &name).is_some() {
                return Err(ApiError::already_exists(def, &name));
            }
            return Ok(self.present(def, obj));
        }
        let out = self
            .store
            .mutate(&def.storage, ns, &name, |cur| match cur {
                Some(_) => Err(ApiError::already_exists(def, &name)),
                None => Ok(Write::Put(obj)),
            })?;
        let out = out.ok_or_else(|| ApiError::internal("create produced no object"))?;
        self.after_write(def, &out);
        Ok(self.present(def, out))
    }

    /// Events in the events.k8s.io view are stored as core Events.
    fn storage_def(&self, def: &ResourceDef) -> ResourceDef {
        if def.is_events_v1_view() {
            self.registry
                .find("", "v1", "events")
                .unwrap_or_else(|| def.clone())
        } else {
            def.clone()
        }
    }
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn meta_name(meta: &Value) -> &str {
    meta.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn has_apply_fields(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields").is_some()
}
