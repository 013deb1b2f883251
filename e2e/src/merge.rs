//! Strategic merge (approximate): maps merge recursively, lists of objects merge
//! by a key guessed from their items, other lists are replaced.

use serde_json::{Map, Value};

/// Keys that identify list items, in the order they are tried. Kubernetes reads
/// them from the type's patch metadata; guessing from the items covers the lists
/// of the kinds served here (containers, env, volumes, ports, conditions...).
const LIST_KEYS: [&str; 5] = ["name", "containerPort", "port", "type", "uid"];

/// The merge key for a list, if every item is an object carrying it.
pub fn list_key<'a>(items: impl Iterator<Item = &'a Value> + Clone) -> Option<&'static str> {
    let mut any = false;
    for v in items.clone() {
        if !v.is_object() {
            return None;
        }
        any = true;
    }
    if !any {
        return None;
    }
    LIST_KEYS.into_iter().find(|k| {
        items
            .clone()
            .all(|v| v.get(*k).is_some_and(|x| x.is_string() || x.is_number()))
    })
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                *target = strip_directives(patch);
                return;
            }
            merge_maps(t, p);
        }
        _ => *target = strip_directives(patch),
    }
}

fn merge_maps(t: &mut Map<String, Value>, p: &Map<String, Value>) {
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) if t.get(k).is_some_and(Value::is_object) => {
                if let Some(slot) = t.get_mut(k) {
                    strategic_merge(slot, v);
                }
            }
            Value::Array(pa) if t.get(k).is_some_and(Value::is_array) => {
                if let Some(Value::Array(ta)) = t.get_mut(k) {
                    merge_lists(ta, pa);
                }
            }
            other => {
                t.insert(k.clone(), strip_directives(other));
            }
        }
    }
}

/// Merges `patch` items into `target` by key; without a key the list is replaced.
pub fn merge_lists(target: &mut Vec<Value>, patch: &[Value]) {
    let Some(key) = list_key(target.iter().chain(patch.iter())) else {
        *target = patch.iter().map(strip_directives).collect();
        return;
    };
    for item in patch {
        let id = item.get(key).cloned();
        let pos = target.iter().position(|t| t.get(key) == id.as_ref());
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut target[i], item),
            (None, false) => target.push(strip_directives(item)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_containers_by_name_and_replaces_scalar_lists() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "args": ["1", "2"]},
            {"name": "b", "image": "y:1"}]}});
        let p = json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "args": ["3"]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "z:1"}]}});
        strategic_merge(&mut t, &p);
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "a", "image": "x:2", "args": ["3"]},
                {"name": "c", "image": "z:1"}]}})
        );
    }

    #[test]
    fn null_removes_and_replace_directive_replaces() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": 3});
        strategic_merge(
            &mut t,
            &json!({"a": {"$patch": "replace", "x": 1}, "d": null}),
        );
        assert_eq!(t, json!({"a": {"x": 1}}));
    }

    #[test]
    fn list_key_guesses() {
        let l = [
            json!({"containerPort": 80}),
            json!({"containerPort": 81, "name": "x"}),
        ];
        assert_eq!(list_key(l.iter()), Some("containerPort"));
        let l = [json!("a")];
        assert_eq!(list_key(l.iter()), None);
        let l = [json!({"type": "Ready", "status": "True"})];
        assert_eq!(list_key(l.iter()), Some("type"));
    }
}
