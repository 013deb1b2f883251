//! CRD `x-kubernetes-validations` rules, evaluated with the `cel` crate.
//! Transition rules (those using `oldSelf`) are skipped.

use serde_json::Value;
use std::collections::HashMap;

fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel::Value::String(s.clone().into()),
        Value::Array(a) => a.iter().map(to_cel).collect::<Vec<_>>().into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect::<HashMap<String, cel::Value>>()
            .into(),
    }
}

fn check_rules(v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    let shown = if path.is_empty() { "<root>" } else { path };
    for r in rules {
        let Some(rule) = r.get("rule").and_then(Value::as_str) else {
            continue;
        };
        if rule.contains("oldSelf") {
            continue;
        }
        let program = match cel::Program::compile(rule) {
            Ok(p) => p,
            Err(e) => {
                errs.push(format!(
                    "{shown}: Invalid value: compiling rule {rule:?}: {e}"
                ));
                continue;
            }
        };
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("self", to_cel(v));
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let msg = r
                    .get("message")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| format!("failed rule: {rule}"));
                let field = r
                    .get("fieldPath")
                    .and_then(Value::as_str)
                    .map(|f| format!("{path}{f}"))
                    .unwrap_or_else(|| shown.to_string());
                errs.push(format!("{field}: Invalid value: \"object\": {msg}"));
            }
            Ok(other) => errs.push(format!(
                "{shown}: Invalid value: rule {rule:?} returned {other:?}, not a bool"
            )),
            Err(e) => errs.push(format!(
                "{shown}: Invalid value: evaluating rule {rule:?}: {e}"
            )),
        }
    }
}

/// Evaluates every rule in `schema` against `v` (which already passed the structural checks).
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    check_rules(v, schema, path, errs);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                let child_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    validate(child, ps, &child_path, errs);
                } else if let Some(ap) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    validate(child, ap, &child_path, errs);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, child) in a.iter().enumerate() {
                    validate(child, items, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_table() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "!has(self.ref) || self.ref.name != ''", "message": "ref.name is required"},
                {"rule": "self.min == oldSelf.min", "message": "immutable"}],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                "ref": {"type": "object", "properties": {"name": {"type": "string"}}}}}}});
        let cases = [
            (json!({"spec": {"min": 1, "max": 2}}), vec![]),
            (
                json!({"spec": {"min": 3, "max": 2}}),
                vec!["spec: Invalid value: \"object\": min must not exceed max"],
            ),
            (
                json!({"spec": {"min": 1, "max": 2, "ref": {"name": ""}}}),
                vec!["spec: Invalid value: \"object\": ref.name is required"],
            ),
        ];
        for (v, want) in cases {
            let mut errs = vec![];
            validate(&v, &schema, "", &mut errs);
            assert_eq!(errs, want, "{v}");
        }
    }
}
