//! CRD structural schemas: defaulting, pruning of unknown fields, validation.

use serde_json::Value;

/// Applies `default`s and drops fields the schema does not declare.
pub fn default_and_prune(v: &mut Value, schema: &Value) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && schema.get("properties").is_none()
    {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
                let preserve =
                    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                if !preserve {
                    m.retain(|k, _| props.contains_key(k));
                }
                for (k, child) in m.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        default_and_prune(child, ps);
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in m.values_mut() {
                    default_and_prune(child, ap);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a.iter_mut() {
                    default_and_prune(child, items);
                }
            }
        }
        _ => {}
    }
}

fn type_ok(v: &Value, schema: &Value) -> bool {
    if v.is_null() {
        return schema.get("nullable") == Some(&Value::Bool(true));
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    }
}

/// Validates `v` against `schema`; errors are `path: message` strings in the
/// style of the API server's field errors.
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    if !type_ok(v, schema) {
        let want = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("int-or-string");
        errs.push(format!(
            "{path}: Invalid value: {}: {path} in body must be of type {want}",
            short(v)
        ));
        return;
    }
    check_enum(v, schema, path, errs);
    if let Some(n) = v.as_f64() {
        check_number(n, v, schema, path, errs);
    }
    if let Some(s) = v.as_str() {
        check_string(s, v, schema, path, errs);
    }
    match v {
        Value::Object(m) => validate_object(m, schema, path, errs),
        Value::Array(a) => validate_array(a, schema, path, errs),
        _ => {}
    }
}

/// `enum`: `v` is one of the listed values.
fn check_enum(v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(en) = schema.get("enum").and_then(Value::as_array) {
        if !en.contains(v) {
            let allowed: Vec<String> = en.iter().map(short).collect();
            errs.push(format!(
                "{path}: Unsupported value: {}: supported values: {}",
                short(v),
                allowed.join(", ")
            ));
        }
    }
}

/// `minimum`/`maximum` (and their exclusive forms) of the number `n` (`v`).
fn check_number(n: f64, v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let excl = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
        if n < min || (excl && n <= min) {
            errs.push(format!("{path}: Invalid value: {}: {path} in body should be greater than or equal to {min}", short(v)));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let excl = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
        if n > max || (excl && n >= max) {
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body should be less than or equal to {max}",
                short(v)
            ));
        }
    }
}

/// `minLength`/`maxLength` of the string `s` (`v`).
fn check_string(s: &str, v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if len < min {
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
                short(v)
            ));
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            errs.push(format!(
                "{path}: Too long: may not be more than {max} bytes"
            ));
        }
    }
}

/// `required` properties, then each property against its schema (or `additionalProperties`).
fn validate_object(
    m: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    errs: &mut Vec<String>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            if !m.contains_key(r) {
                errs.push(if path.is_empty() {
                    format!("{r}: Required value")
                } else {
                    format!("{path}.{r}: Required value")
                });
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, child) in m {
        let child_path = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            validate(child, ps, &child_path, errs);
        } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            validate(child, ap, &child_path, errs);
        }
    }
}

/// `minItems`/`maxItems`, then each item against `items`.
fn validate_array(a: &[Value], schema: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if (a.len() as u64) < min {
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body should have at least {min} items",
                a.len()
            ));
        }
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if (a.len() as u64) > max {
            errs.push(format!(
                "{path}: Too many: {}: must have at most {max} items",
                a.len()
            ));
        }
    }
    if let Some(items) = schema.get("items") {
        for (i, child) in a.iter().enumerate() {
            validate(child, items, &format!("{path}[{i}]"), errs);
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..57])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}
        }})
    }

    #[test]
    fn defaults_and_prunes() {
        let mut v = json!({"spec": {"image": "x", "junk": 1, "free": {"any": 1}}, "extra": 2});
        default_and_prune(&mut v, &schema());
        assert_eq!(
            v,
            json!({"spec": {"image": "x", "replicas": 1, "free": {"any": 1}}})
        );
    }

    #[test]
    fn validation_table() {
        let cases = [
            (json!({"spec": {"image": "x"}}), 0),
            (json!({"spec": {}}), 1),
            (json!({"spec": {"image": ""}}), 1),
            (json!({"spec": {"image": "x", "replicas": 11}}), 1),
            (json!({"spec": {"image": "x", "replicas": "1"}}), 1),
            (json!({"spec": {"image": "x", "mode": "c"}}), 1),
            (json!({"spec": {"image": "x", "labels": {"a": 1}}}), 1),
            (json!({"spec": {"image": "x", "port": "http"}}), 0),
            (json!({"spec": {"image": "x", "port": 1.5}}), 1),
        ];
        for (v, n) in cases {
            let mut errs = vec![];
            validate(&v, &schema(), "", &mut errs);
            assert_eq!(errs.len(), n, "{v}: {errs:?}");
        }
    }
}
