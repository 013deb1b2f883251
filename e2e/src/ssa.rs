//! Server-side apply, approximated: field ownership is tracked per manager as
//! sets of leaf paths in the `fieldsV1` format; applies conflict when another
//! manager owns a field the apply sets to a different value; fields a manager
//! stops applying are removed unless someone else owns them.

use crate::merge::{list_key, strategic_merge};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path of `f:<field>` / `k:<key json>` segments, as in `fieldsV1`.
pub type Path = Vec<String>;

/// Metadata fields the server owns; never part of a field set.
const SERVER_FIELDS: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// Leaf paths set in an object (apiVersion/kind and server-owned metadata excluded).
pub fn field_paths(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if !SERVER_FIELDS.contains(&mk.as_str()) {
                            walk(mv, vec!["f:metadata".into(), format!("f:{mk}")], &mut out);
                        }
                    }
                }
                continue;
            }
            walk(v, vec![format!("f:{k}")], &mut out);
        }
    }
    out
}

fn key_segment(item: &Value, key: &str) -> String {
    let mut m = Map::new();
    if let Some(v) = item.get(key) {
        m.insert(key.to_string(), v.clone());
    }
    format!("k:{}", Value::Object(m))
}

fn walk(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(child, p, out);
            }
        }
        Value::Array(a) if !a.is_empty() => match list_key(a.iter()) {
            Some(key) => {
                for item in a {
                    let mut p = path.clone();
                    p.push(key_segment(item, key));
                    walk(item, p, out);
                }
            }
            None => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// Follows a path into an object.
pub fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = if let Some(f) = seg.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = seg.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// Removes the value at a path (no-op when absent).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parent_path {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = seg.strip_prefix("k:") {
            let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(want), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|item| !want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)));
        }
    }
}

/// Renders a path set as a `fieldsV1` tree.
pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            let entry = cur.entry(seg.clone()).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(m) => cur = m,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// Reads the leaf paths of a `fieldsV1` tree.
pub fn from_fields_v1(tree: &Value) -> BTreeSet<Path> {
    fn rec(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k.clone());
            rec(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    rec(tree, &mut vec![], &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Manager {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: BTreeSet<Path>,
}

impl Manager {
    fn same_slot(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

pub fn read_managers(obj: &Value) -> Vec<Manager> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Manager {
                    manager: str_of(e, "manager"),
                    operation: str_of(e, "operation"),
                    api_version: str_of(e, "apiVersion"),
                    subresource: str_of(e, "subresource"),
                    time: str_of(e, "time"),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub fn write_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if obj.is_object() && !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// `.spec.replicas` style rendering of a path.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| match s.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", s.trim_start_matches("k:")),
        })
        .collect()
}

/// Who is applying what.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub force: bool,
    pub now: &'a str,
}

/// Merges an applied configuration into the live object (or an empty one).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    req: &ApplyRequest<'_>,
) -> Result<Value, Vec<Conflict>> {
    let mut managers = live.map(read_managers).unwrap_or_default();
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let new_paths = field_paths(applied);

    let conflicts = conflicts(&managers, &base, applied, &new_paths, req);
    if !conflicts.is_empty() && !req.force {
        return Err(conflicts);
    }
    if req.force {
        take_over(&mut managers, &base, applied, &new_paths, req);
    }

    let mut result = base;
    remove_released(&mut result, &managers, &new_paths, req);
    let mut patch = applied.clone();
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    strategic_merge(&mut result, &patch);

    let entry = Manager {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        subresource: req.subresource.to_string(),
        time: req.now.to_string(),
        fields: new_paths,
    };
    // The manager keeps its place in the list, so a repeated apply only differs in its time.
    match managers
        .iter()
        .position(|m| m.same_slot(req.manager, "Apply", req.subresource))
    {
        Some(i) => managers[i] = entry,
        None => managers.push(entry),
    }
    write_managers(&mut result, &managers);
    // As the API server does: an apply that changes nothing (neither the object nor who owns
    // which field) leaves the object as it was, timestamps included, so it is not written and
    // watchers see no event.
    if let Some(live) = live {
        if without_manager_times(live) == without_manager_times(&result) {
            return Ok(live.clone());
        }
    }
    Ok(result)
}

/// The fields other managers own that the applied configuration sets to another value.
fn conflicts(
    managers: &[Manager],
    base: &Value,
    applied: &Value,
    new_paths: &BTreeSet<Path>,
    req: &ApplyRequest<'_>,
) -> Vec<Conflict> {
    let mut conflicts = vec![];
    for m in managers {
        if m.same_slot(req.manager, "Apply", req.subresource) {
            continue;
        }
        for p in m.fields.intersection(new_paths) {
            if get_at(base, p) != get_at(applied, p) {
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    path: dotted(p),
                });
            }
        }
    }
    conflicts
}

/// A forced apply: the conflicting fields are no longer owned by the other managers.
fn take_over(
    managers: &mut [Manager],
    base: &Value,
    applied: &Value,
    new_paths: &BTreeSet<Path>,
    req: &ApplyRequest<'_>,
) {
    for m in managers.iter_mut() {
        if m.same_slot(req.manager, "Apply", req.subresource) {
            continue;
        }
        let taken: Vec<Path> = m
            .fields
            .intersection(new_paths)
            .filter(|p| get_at(base, p) != get_at(applied, p))
            .cloned()
            .collect();
        for p in taken {
            m.fields.remove(&p);
        }
    }
}

/// Removes from `result` the fields this manager applied before and no longer does, unless
/// another manager owns them.
fn remove_released(
    result: &mut Value,
    managers: &[Manager],
    new_paths: &BTreeSet<Path>,
    req: &ApplyRequest<'_>,
) {
    let previous: BTreeSet<Path> = managers
        .iter()
        .find(|m| m.same_slot(req.manager, "Apply", req.subresource))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(new_paths) {
        let owned_elsewhere = managers
            .iter()
            .any(|m| !m.same_slot(req.manager, "Apply", req.subresource) && m.fields.contains(p));
        if !owned_elsewhere {
            remove_at(result, p);
        }
    }
}

fn without_manager_times(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(entries) = o
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(e) = e.as_object_mut() {
                e.remove("time");
            }
        }
    }
    o
}

/// Records that a non-apply write by `manager` changed `old` into `new`:
/// changed fields move to the manager, removed fields leave every set.
pub fn track_update(old: Option<&Value>, new: &mut Value, req: &ApplyRequest<'_>) {
    let mut managers = old.map(read_managers).unwrap_or_default();
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let old_paths = field_paths(old_obj);
    let new_paths = field_paths(new);
    let changed: BTreeSet<Path> = new_paths
        .iter()
        .filter(|p| get_at(old_obj, p) != get_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = old_paths.difference(&new_paths).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write_managers(new, &managers);
        return;
    }
    for m in managers.iter_mut() {
        m.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    match managers
        .iter_mut()
        .find(|m| m.same_slot(req.manager, "Update", req.subresource))
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = req.now.to_string();
        }
        None => managers.push(Manager {
            manager: req.manager.to_string(),
            operation: "Update".into(),
            api_version: req.api_version.to_string(),
            subresource: req.subresource.to_string(),
            time: req.now.to_string(),
            fields: changed,
        }),
    }
    write_managers(new, &managers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            api_version: "v1",
            subresource: "",
            force,
            now: "t",
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["1"]}});
        let paths = field_paths(&obj);
        assert!(paths.contains(&vec!["f:metadata".into(), "f:labels".into(), "f:a".into()]));
        assert!(paths.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            r#"k:{"name":"c"}"#.into(),
            "f:image".into()
        ]));
        assert_eq!(from_fields_v1(&to_fields_v1(&paths)), paths);
    }

    #[test]
    fn apply_conflicts_unless_forced_and_removes_dropped_fields() {
        let a1 = json!({"metadata": {"name": "x"}, "spec": {"replicas": 2, "x": 1}});
        let live = apply(None, &a1, &req("op", false)).unwrap();
        // Another manager sets a different replicas: conflict.
        let b = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let err = apply(Some(&live), &b, &req("other", false)).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "op".into(),
                path: ".spec.replicas".into()
            }]
        );
        // Same value shares ownership without conflict.
        let same = json!({"metadata": {"name": "x"}, "spec": {"replicas": 2}});
        assert!(apply(Some(&live), &same, &req("other", false)).is_ok());
        // Forced: other takes replicas over.
        let forced = apply(Some(&live), &b, &req("other", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        // op re-applies without x and without replicas: x removed, replicas stays (owned by other).
        let a2 = json!({"metadata": {"name": "x"}, "spec": {}});
        let out = apply(Some(&forced), &a2, &req("op", false)).unwrap();
        assert_eq!(out["spec"], json!({"replicas": 3}));
    }

    #[test]
    fn repeated_apply_changes_nothing_until_something_changes() {
        let a = json!({"metadata": {"name": "x"}, "spec": {"replicas": 2}});
        let at = |now| ApplyRequest {
            now,
            ..req("op", false)
        };
        let live = apply(None, &a, &at("t1")).unwrap();
        let live = apply(
            Some(&live),
            &json!({"spec": {"y": 1}}),
            &req("other", false),
        )
        .unwrap();
        // Same apply later: identical object, times included.
        assert_eq!(apply(Some(&live), &a, &at("t2")).unwrap(), live);
        // A changed value: new time, and op's entry keeps its place before other's.
        let b = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let out = apply(Some(&live), &b, &at("t3")).unwrap();
        let mf = out["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf[0]["manager"], "op");
        assert_eq!(mf[0]["time"], "t3");
        assert_eq!(mf[1]["manager"], "other");
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let live = apply(None, &json!({"spec": {"replicas": 2}}), &req("op", false)).unwrap();
        let mut updated = live.clone();
        updated["spec"]["replicas"] = json!(5);
        track_update(Some(&live), &mut updated, &req("kubectl", false));
        let err = apply(
            Some(&updated),
            &json!({"spec": {"replicas": 2}}),
            &req("op", false),
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "kubectl");
    }
}
