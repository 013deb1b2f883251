//! API semantics on top of the store: create/update/patch/delete with
//! resourceVersion conflicts, generation, finalizers, defaults, CRD schemas,
//! server-side apply and the scale subresource. The HTTP layer and the
//! in-process controllers both go through here.

use crate::error::ApiError;
use crate::events;
use crate::merge::strategic_merge;
use crate::meta::{meta_str, new_uid, now};
use crate::registry::{PrinterColumn, Registry, ResourceDef, ScalePaths};
use crate::schema;
use crate::ssa::{self, ApplyRequest};
use crate::store::{Store, Write};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// How a write was asked for.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    pub force: bool,
    /// Strict field validation: unknown fields are errors instead of pruned.
    pub strict: bool,
}

impl WriteOpts {
    pub fn manager(m: &str) -> Self {
        Self {
            manager: m.into(),
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
pub enum Deleted {
    /// Gone from the store.
    Removed(Value),
    /// Marked with deletionTimestamp; finalizers or graceful pod termination pending.
    Pending(Value),
}

pub struct ApiServer {
    pub registry: Registry,
    pub store: Store,
    node_ports: AtomicU32,
}

impl ApiServer {
    pub fn new(history: usize) -> Self {
        let api = Self {
            registry: Registry::default(),
            store: Store::new(history),
            node_ports: AtomicU32::new(30000),
        };
        let def = api.registry.find("", "v1", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if let Some(def) = &def {
                let obj =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                if let Err(e) = api.create(def, "", obj, &WriteOpts::manager("kubesim")) {
                    tracing::warn!(%e, "creating namespace {ns}");
                }
            }
        }
        api
    }

    pub fn def(&self, group: &str, version: &str, plural: &str) -> Result<ResourceDef, ApiError> {
        self.registry
            .find(group, version, plural)
            .ok_or_else(|| ApiError::not_found_resource(group, version, plural))
    }

    /// Converts a stored object into the form of the requested resource.
    pub fn present(&self, def: &ResourceDef, obj: Value) -> Value {
        if def.is_events_v1_view() {
            return events::core_to_v1(&obj);
        }
        let mut obj = obj;
        if def.crd.is_some() {
            obj["apiVersion"] = json!(def.api_version());
        }
        obj
    }

    fn to_storage(&self, def: &ResourceDef, obj: Value) -> Value {
        if def.is_events_v1_view() {
            events::v1_to_core(&obj)
        } else {
            obj
        }
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        self.store
            .get(&def.storage, ns, name)
            .map(|o| self.present(def, o))
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    pub fn list(&self, def: &ResourceDef, ns: Option<&str>) -> (Vec<Value>, u64) {
        let ns = if def.namespaced { ns } else { None };
        let (items, rv) = self.store.list(&def.storage, ns);
        (
            items.into_iter().map(|o| self.present(def, o)).collect(),
            rv,
        )
    }

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
        self.kind_defaults(def, obj);
        Ok(())
    }

    fn kind_defaults(&self, def: &ResourceDef, obj: &mut Value) {
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "namespaces") => {
                let name = meta_str(obj, "name").to_string();
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "pods") => crate::defaults::pod(obj),
            ("", "services") => {
                crate::defaults::service(obj);
                let ip = obj
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if ip.is_empty() {
                    let ip = self.next_service_ip();
                    obj["spec"]["clusterIP"] = json!(ip);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                }
                let node_port = matches!(
                    obj.pointer("/spec/type").and_then(Value::as_str),
                    Some("NodePort") | Some("LoadBalancer")
                );
                if node_port {
                    if let Some(ports) =
                        obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
                    {
                        for p in ports {
                            if p.get("nodePort").is_none() {
                                p["nodePort"] =
                                    json!(self.node_ports.fetch_add(1, Ordering::Relaxed));
                            }
                        }
                    }
                }
            }
            ("", "secrets") => {
                if let Some(string_data) = obj.get("stringData").and_then(Value::as_object).cloned()
                {
                    for (k, v) in string_data {
                        let enc = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or_default());
                        obj["data"][k] = json!(enc);
                    }
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("stringData");
                    }
                }
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
            }
            ("apps", "deployments") => crate::defaults::deployment(obj),
            ("apps", "replicasets") | ("apps", "statefulsets")
                if obj.pointer("/spec/replicas").is_none() =>
            {
                obj["spec"]["replicas"] = json!(1);
            }
            _ => {}
        }
    }

    fn next_service_ip(&self) -> String {
        crate::ipalloc::next_service_ip()
    }

    /// CRD defaulting, pruning and validation.
    fn validate(
        &self,
        def: &ResourceDef,
        obj: &mut Value,
        opts: &WriteOpts,
    ) -> Result<(), ApiError> {
        let mut errs = vec![];
        if let Some(schema) = &def.schema {
            if opts.strict {
                let mut pruned = obj.clone();
                schema::default_and_prune(&mut pruned, &with_meta(schema));
                unknown_fields(obj, &pruned, "", &mut errs);
            }
            schema::default_and_prune(obj, &with_meta(schema));
            let mut body = obj.clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("metadata");
                o.remove("apiVersion");
                o.remove("kind");
            }
            schema::validate(&body, schema, "", &mut errs);
            if errs.is_empty() {
                crate::cel::validate(&body, schema, "", &mut errs);
            }
        }
        let name = meta_str(obj, "name");
        if !valid_name(name) {
            errs.push(format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(def, name, &errs.join(", ")))
        }
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
        self.validate(def, &mut obj, opts)?;
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
        let out = self.store.mutate(&def.storage, ns, name, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(def, name))?;
            let cur_presented = self.present(def, cur.clone());
            let desired = self.to_storage(def, f(&cur_presented)?);
            let mut new = self.merge_update(def, cur, desired, sub)?;
            let want_rv = meta_str(&new, "resourceVersion");
            if !want_rv.is_empty() && want_rv != meta_str(cur, "resourceVersion") {
                return Err(ApiError::conflict(def, name));
            }
            if sub.is_empty() {
                self.validate(def, &mut new, opts)?;
            } else if def.schema.is_some() {
                self.validate(
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
                return Err(ApiError::dry_run(new));
            }
            if unchanged(cur, &new) {
                // No-op writes are not persisted: same resourceVersion, no watch event.
                return Ok(Write::Keep);
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
                return Ok(Write::Remove);
            }
            Ok(Write::Put(new))
        });
        let out = match out {
            Err(ApiError {
                dry_run_object: Some(obj),
                ..
            }) => return Ok(self.present(def, *obj)),
            other => other?,
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
            "status" => {
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
            _ => {
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
        };
        new["apiVersion"] = cur["apiVersion"].clone();
        new["kind"] = cur["kind"].clone();
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
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
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            // Finalizers may only be removed once deletion started.
            let old: Vec<Value> = cur
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let keep: Vec<Value> = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| old.contains(f))
                .collect();
            new["metadata"]["finalizers"] = json!(keep);
        }
        if sub.is_empty() {
            update_defaults(def, cur, &mut new);
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
        let out = self.store.mutate(&def.storage, ns, name, |cur| {
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
            let mut finalizers: Vec<Value> = cur
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
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
                    return Err(ApiError::dry_run(cur.clone()));
                }
                removed = true;
                return Ok(Write::Remove);
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
                    return Ok(Write::Remove);
                }
                new["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
            new["metadata"]["finalizers"] = json!(finalizers);
            if opts.dry_run {
                return Err(ApiError::dry_run(new));
            }
            if unchanged(cur, &new) {
                // No-op writes are not persisted: same resourceVersion, no watch event.
                return Ok(Write::Keep);
            }
            Ok(Write::Put(new))
        });
        let out = match out {
            Err(ApiError {
                dry_run_object: Some(obj),
                ..
            }) => return Ok(Deleted::Pending(self.present(def, *obj))),
            other => other?,
        };
        let out = out.ok_or_else(|| ApiError::not_found(def, name))?;
        if removed {
            self.after_delete(def, &out);
            Ok(Deleted::Removed(self.present(def, out)))
        } else {
            Ok(Deleted::Pending(self.present(def, out)))
        }
    }

    /// Hooks that react to writes of special kinds (CRDs become resources).
    fn after_write(&self, def: &ResourceDef, obj: &Value) {
        if def.storage == "apiextensions.k8s.io/customresourcedefinitions" {
            self.register_crd(obj);
        }
        if def.storage == "core/namespaces" && obj.pointer("/metadata/deletionTimestamp").is_some()
        {
            let name = meta_str(obj, "name").to_string();
            if obj.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating") {
                let _ =
                    self.store
                        .mutate::<ApiError>("core/namespaces", "", &name, |cur| match cur {
                            Some(c) => {
                                let mut n = c.clone();
                                n["status"]["phase"] = json!("Terminating");
                                Ok(Write::Put(n))
                            }
                            None => Ok(Write::Keep),
                        });
            }
        }
    }

    fn after_delete(&self, def: &ResourceDef, obj: &Value) {
        if def.storage == "apiextensions.k8s.io/customresourcedefinitions" {
            let name = meta_str(obj, "name");
            self.registry.set_crd(name, vec![]);
        }
    }

    /// Serves the resources of a CRD and marks it Established.
    pub fn register_crd(&self, crd: &Value) {
        let name = meta_str(crd, "name").to_string();
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let mut defs = vec![];
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v.get("served") == Some(&Value::Bool(false)) {
                continue;
            }
            let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .into(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .into(),
                label_selector: s["labelSelectorPath"].as_str().map(String::from),
            });
            let mut columns: Vec<PrinterColumn> = v["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    type_: c["type"].as_str().unwrap_or("string").into(),
                    format: c["format"].as_str().unwrap_or_default().into(),
                    description: c["description"].as_str().unwrap_or_default().into(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                })
                .collect();
            if columns.is_empty() {
                columns.push(PrinterColumn {
                    name: "Age".into(),
                    type_: "date".into(),
                    format: String::new(),
                    description: String::new(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".into(),
                });
            }
            defs.push(ResourceDef {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().into(),
                plural: plural.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: str_list(&names["shortNames"]),
                categories: str_list(&names["categories"]),
                status: v.pointer("/subresources/status").is_some(),
                scale,
                storage: format!("{group}/{plural}"),
                columns,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                crd: Some(name.clone()),
            });
        }
        self.registry.set_crd(&name, defs);
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established"));
        if !established {
            let t = now();
            let _ = self.store.mutate::<ApiError>("apiextensions.k8s.io/customresourcedefinitions", "", &name, |cur| match cur {
                Some(c) => {
                    let mut n = c.clone();
                    n["status"] = json!({
                        "acceptedNames": c["spec"]["names"],
                        "storedVersions": c["spec"]["versions"].as_array().into_iter().flatten()
                            .filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
                        "conditions": [
                            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t}
                        ]
                    });
                    Ok(Write::Put(n))
                }
                None => Ok(Write::Keep),
            });
        }
    }

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

/// Defaults applied on every write of the main resource (Kubernetes defaults on decode).
fn update_defaults(def: &ResourceDef, cur: &Value, new: &mut Value) {
    match def.storage.as_str() {
        "core/pods" => {
            if let Some(spec) = new.get_mut("spec") {
                crate::defaults::pod_spec(spec);
            }
        }
        "core/services" => {
            crate::defaults::service(new);
            for f in ["clusterIP", "clusterIPs"] {
                if new.pointer(&format!("/spec/{f}")).is_none() {
                    if let Some(v) = cur.pointer(&format!("/spec/{f}")) {
                        new["spec"][f] = v.clone();
                    }
                }
            }
        }
        "apps/deployments" => crate::defaults::deployment(new),
        "apps/replicasets" if new.pointer("/spec/replicas").is_none() => {
            new["spec"]["replicas"] = json!(1);
        }
        "core/secrets" => {
            if let Some(string_data) = new.get("stringData").and_then(Value::as_object).cloned() {
                for (k, v) in string_data {
                    let enc = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    new["data"][k] = json!(enc);
                }
                if let Some(o) = new.as_object_mut() {
                    o.remove("stringData");
                }
            }
        }
        _ => {}
    }
}

/// Whether a write would leave the object as it is (the resourceVersion the writer sent, or
/// left out, does not count).
fn unchanged(cur: &Value, new: &Value) -> bool {
    let mut n = new.clone();
    match (
        n.get_mut("metadata"),
        cur.pointer("/metadata/resourceVersion"),
    ) {
        (Some(Value::Object(m)), Some(rv)) => {
            m.insert("resourceVersion".into(), rv.clone());
        }
        (Some(Value::Object(m)), None) => {
            m.remove("resourceVersion");
        }
        _ => {}
    }
    n == *cur
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn meta_name(meta: &Value) -> &str {
    meta.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn has_apply_fields(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields").is_some()
}

fn is_apply_result(obj: &Value) -> bool {
    obj.pointer("/metadata/kubesim.apply").is_some()
}

/// Wraps a CRD schema so `metadata` is never pruned.
fn with_meta(schema: &Value) -> Value {
    let mut s = schema.clone();
    if s.get("properties").is_some_and(Value::is_object) {
        s["properties"]["metadata"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        s["properties"]["apiVersion"] = json!({"type": "string"});
        s["properties"]["kind"] = json!({"type": "string"});
    }
    s
}

fn unknown_fields(orig: &Value, pruned: &Value, path: &str, errs: &mut Vec<String>) {
    if let (Some(o), Some(p)) = (orig.as_object(), pruned.as_object()) {
        for (k, v) in o {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match p.get(k) {
                None => errs.push(format!("{child}: unknown field \"{child}\"")),
                Some(pv) => unknown_fields(v, pv, &child, errs),
            }
        }
    }
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

/// Parses a request body: JSON, or YAML for apply patches.
pub fn parse_body(body: &[u8], yaml_ok: bool) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if yaml_ok => serde_yaml::from_slice(body).map_err(|ye| {
            ApiError::bad_request(format!("the body is neither JSON ({e}) nor YAML ({ye})"))
        }),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}
