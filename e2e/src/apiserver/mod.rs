//! API semantics on top of the store: create/update/patch/delete with
//! resourceVersion conflicts, generation, finalizers, defaults, CRD schemas,
//! server-side apply and the scale subresource. The HTTP layer and the
//! in-process controllers both go through here.

mod crd;
mod create;
mod delete;
mod patch;
mod scale;
mod update;
mod validate;

use crate::error::ApiError;
use crate::events;
use crate::meta::meta_str;
use crate::registry::{Registry, ResourceDef};
use crate::store::{Store, Write};
use serde_json::{json, Value};
use std::sync::atomic::AtomicU32;

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

/// What a read-modify-write decided about one stored object.
enum Decision {
    /// Change the store (or leave it as it is).
    Write(Write),
    /// A dry run: the object the write would store; the store is left alone.
    DryRun(Value),
}

/// What a read-modify-write did.
enum Outcome {
    /// The object as stored afterwards (`None` when there is none).
    Stored(Option<Value>),
    /// A dry run's would-be object.
    DryRun(Value),
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

    /// [`Store::mutate`] with a dry-run outcome besides the store's own.
    fn decide(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(Option<&Value>) -> Result<Decision, ApiError>,
    ) -> Result<Outcome, ApiError> {
        let mut dry_run = None;
        let stored = self.store.mutate(storage, ns, name, |cur| match f(cur)? {
            Decision::Write(w) => Ok(w),
            Decision::DryRun(obj) => {
                dry_run = Some(obj);
                Ok(Write::Keep)
            }
        })?;
        Ok(match dry_run {
            Some(obj) => Outcome::DryRun(obj),
            None => Outcome::Stored(stored),
        })
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

/// An object's finalizers (none when absent).
fn finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
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
