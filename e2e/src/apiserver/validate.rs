//! CRD defaulting, pruning and validation, and object names.

use super::WriteOpts;
use crate::error::ApiError;
use crate::meta::meta_str;
use crate::registry::ResourceDef;
use crate::schema;
use serde_json::{json, Value};

/// CRD defaulting, pruning and validation.
pub(super) fn validate(
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
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
