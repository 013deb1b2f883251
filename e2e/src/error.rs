//! API errors rendered as `metav1.Status`.

use crate::registry::ResourceDef;
use crate::ssa::Conflict;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

fn group_of(def: &ResourceDef) -> &str {
    &def.group
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>, details: Value) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details,
        }
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::not_found_named(&def.plural, group_of(def), name)
    }

    pub fn not_found_named(plural: &str, group: &str, name: &str) -> Self {
        let res = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        Self::new(
            404,
            "NotFound",
            format!("{res} \"{name}\" not found"),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn not_found_resource(group: &str, version: &str, plural: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({plural} in {group}/{version})"
            ),
            json!({}),
        )
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        let res = if def.group.is_empty() {
            def.plural.clone()
        } else {
            format!("{}.{}", def.plural, def.group)
        };
        Self::new(
            409,
            "AlreadyExists",
            format!("{res} \"{name}\" already exists"),
            json!({"name": name, "group": def.group, "kind": def.plural}),
        )
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::conflict_msg(def, name, "the object has been modified; please apply your changes to the latest version and try again")
    }

    pub fn conflict_msg(def: &ResourceDef, name: &str, why: &str) -> Self {
        let res = if def.group.is_empty() {
            def.plural.clone()
        } else {
            format!("{}.{}", def.plural, def.group)
        };
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {res} \"{name}\": {why}"),
            json!({"name": name, "group": def.group, "kind": def.plural}),
        )
    }

    pub fn apply_conflict(def: &ResourceDef, name: &str, conflicts: &[Conflict]) -> Self {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|c| format!("conflict with \"{}\": {}", c.manager, c.path))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.path}))
            .collect();
        let msg = if lines.len() == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!(
                "Apply failed with {} conflicts: {}",
                lines.len(),
                lines.join("\n")
            )
        };
        Self::new(
            409,
            "Conflict",
            msg,
            json!({"name": name, "group": def.group, "kind": def.plural, "causes": causes}),
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {why}", def.kind),
            json!({"name": name, "group": def.group, "kind": def.kind}),
        )
    }

    pub fn unprocessable(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            why.to_string(),
            json!({"name": name, "group": def.group, "kind": def.kind}),
        )
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg, json!({}))
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", msg, json!({}))
    }

    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", msg, json!({}))
    }

    pub fn unsupported_media(msg: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", msg, json!({}))
    }

    pub fn gone(msg: impl Into<String>) -> Self {
        Self::new(410, "Expired", msg, json!({}))
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, "InternalError", msg, json!({}))
    }

    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details, "code": self.code})
    }
}
