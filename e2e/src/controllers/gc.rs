//! Garbage collection by ownerReferences (background, foreground, orphan) and
//! namespace deletion.

use super::owners::owned_by;
use crate::apiserver::{DeleteOpts, WriteOpts};
use crate::ctx::Ctx;
use crate::meta::meta_str;
use serde_json::{json, Value};
use std::collections::HashSet;

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn def_for_storage(ctx: &Ctx, storage: &str) -> Option<crate::registry::ResourceDef> {
    ctx.api
        .registry
        .all()
        .into_iter()
        .find(|d| d.storage == storage && !d.is_events_v1_view())
}

fn remove_finalizer(ctx: &Ctx, storage: &str, obj: &Value, f: &str) {
    let Some(def) = def_for_storage(ctx, storage) else {
        return;
    };
    let f = f.to_string();
    let r = ctx.api.write_existing(
        &def,
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
        "",
        &WriteOpts::manager("kubesim-gc"),
        |cur| {
            let mut n = cur.clone();
            let kept: Vec<String> = finalizers(cur).into_iter().filter(|x| *x != f).collect();
            n["metadata"]["finalizers"] = json!(kept);
            if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(n)
        },
    );
    if let Err(e) = r {
        tracing::debug!(%e, "removing finalizer");
    }
}

pub fn collect(ctx: &Ctx) {
    let all = ctx.api.store.all();
    let uids: HashSet<&str> = all.iter().map(|(_, o)| meta_str(o, "uid")).collect();
    for (storage, obj) in &all {
        let refs: Vec<&Value> = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let fins = finalizers(obj);
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            if fins.iter().any(|f| f == "foregroundDeletion") {
                delete_in_foreground(ctx, &all, storage, obj);
            }
            if fins.iter().any(|f| f == "orphan") {
                orphan_dependents(ctx, &all, storage, obj);
            }
        }
        if refs.is_empty() || obj.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        // Background: dependents whose owners are all gone are deleted.
        if refs
            .iter()
            .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
        {
            delete_in_background(ctx, storage, obj);
        }
    }
}

/// Foreground deletion of `obj`: its dependents are deleted (in the foreground too); once none
/// is left its `foregroundDeletion` finalizer goes.
fn delete_in_foreground(ctx: &Ctx, all: &[(String, Value)], storage: &str, obj: &Value) {
    let uid = meta_str(obj, "uid");
    let mut any = false;
    for (ds, d) in all.iter().filter(|(_, d)| owned_by(d, uid)) {
        any = true;
        if d.pointer("/metadata/deletionTimestamp").is_none() {
            if let Some(def) = def_for_storage(ctx, ds) {
                let opts = DeleteOpts {
                    propagation: Some("Foreground".into()),
                    ..DeleteOpts::default()
                };
                let _ = ctx
                    .api
                    .delete(&def, meta_str(d, "namespace"), meta_str(d, "name"), &opts);
            }
        }
    }
    if !any {
        remove_finalizer(ctx, storage, obj, "foregroundDeletion");
    }
}

/// Orphan deletion of `obj`: its dependents lose their reference to it, then its `orphan`
/// finalizer goes.
fn orphan_dependents(ctx: &Ctx, all: &[(String, Value)], storage: &str, obj: &Value) {
    let uid = meta_str(obj, "uid");
    for (ds, d) in all.iter().filter(|(_, d)| owned_by(d, uid)) {
        if let Some(def) = def_for_storage(ctx, ds) {
            let _ = ctx.api.write_existing(
                &def,
                meta_str(d, "namespace"),
                meta_str(d, "name"),
                "",
                &WriteOpts::manager("kubesim-gc"),
                |cur| Ok(without_owner(cur, uid)),
            );
        }
    }
    remove_finalizer(ctx, storage, obj, "orphan");
}

/// `cur` without its owner reference to `owner` (and without a resourceVersion: no conflict).
fn without_owner(cur: &Value, owner: &str) -> Value {
    let mut n = cur.clone();
    let kept: Vec<Value> = cur["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != owner)
        .cloned()
        .collect();
    n["metadata"]["ownerReferences"] = json!(kept);
    if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    n
}

/// Deletes `obj`, whose owners are all gone, in the background.
fn delete_in_background(ctx: &Ctx, storage: &str, obj: &Value) {
    if let Some(def) = def_for_storage(ctx, storage) {
        let opts = DeleteOpts {
            propagation: Some("Background".into()),
            ..DeleteOpts::default()
        };
        let _ = ctx.api.delete(
            &def,
            meta_str(obj, "namespace"),
            meta_str(obj, "name"),
            &opts,
        );
    }
}

pub fn namespaces(ctx: &Ctx) {
    let (nss, _) = ctx.api.list(&ctx.namespaces, None);
    for ns in nss
        .iter()
        .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    {
        let name = meta_str(ns, "name");
        let mut remaining = 0;
        for (storage, obj) in ctx.api.store.all() {
            if meta_str(&obj, "namespace") != name {
                continue;
            }
            remaining += 1;
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                if let Some(def) = def_for_storage(ctx, &storage) {
                    let _ =
                        ctx.api
                            .delete(&def, name, meta_str(&obj, "name"), &DeleteOpts::default());
                }
            }
        }
        if remaining == 0 {
            remove_finalizer(ctx, "core/namespaces", ns, "kubernetes");
        }
    }
}
