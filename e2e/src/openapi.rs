//! OpenAPI documents: minimal but valid. They list every served path with the
//! `fieldValidation` parameter (so kubectl uses server-side field validation)
//! and give CRD kinds their schemas; built-in kinds get open schemas.

use crate::error::ApiError;
use crate::registry::{Registry, ResourceDef};
use serde_json::{json, Map, Value};

fn gvk_ext(d: &ResourceDef) -> Value {
    json!([{"group": d.group, "version": d.version, "kind": d.kind}])
}

fn def_name(d: &ResourceDef) -> String {
    let g = if d.group.is_empty() {
        "core".to_string()
    } else {
        d.group.clone()
    };
    format!("io.kubesim.{g}.{}.{}", d.version, d.kind)
}

fn schema_of(d: &ResourceDef) -> Value {
    let mut s = d
        .schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    s["x-kubernetes-group-version-kind"] = gvk_ext(d);
    s
}

fn params() -> Value {
    json!([{"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true,
        "description": "Strict, Warn or Ignore", "schema": {"type": "string"}}])
}

fn paths_for(defs: &[&ResourceDef], v3: bool) -> Map<String, Value> {
    let mut paths = Map::new();
    for d in defs {
        let prefix = if d.group.is_empty() {
            format!("/api/{}", d.version)
        } else {
            format!("/apis/{}/{}", d.group, d.version)
        };
        let base = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{prefix}/{}", d.plural)
        };
        let r = if v3 {
            json!({"$ref": format!("#/components/schemas/{}", def_name(d))})
        } else {
            json!({"$ref": format!("#/definitions/{}", def_name(d))})
        };
        let op = |verb: &str| {
            json!({"operationId": format!("{verb}{}", d.kind), "parameters": params(),
                "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
                "responses": {"200": if v3 { json!({"description": "OK", "content": {"application/json": {"schema": r}}}) } else { json!({"description": "OK", "schema": r}) }}})
        };
        paths.insert(base.clone(), json!({"post": op("post"), "get": op("list")}));
        paths.insert(format!("{base}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    paths
}

pub fn v2(reg: &Registry) -> Value {
    let all = reg.all();
    let defs: Vec<&ResourceDef> = all.iter().collect();
    let definitions: Map<String, Value> = all.iter().map(|d| (def_name(d), schema_of(d))).collect();
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": crate::discovery::KUBE_VERSION},
        "paths": paths_for(&defs, false), "definitions": definitions})
}

pub fn v3_root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.group_versions() {
        for v in vs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
            );
        }
    }
    json!({"paths": paths})
}

pub fn v3_group(reg: &Registry, gv_path: &str) -> Result<Value, ApiError> {
    let all = reg.all();
    let defs: Vec<&ResourceDef> = all
        .iter()
        .filter(|d| {
            let p = if d.group.is_empty() {
                format!("api/{}", d.version)
            } else {
                format!("apis/{}/{}", d.group, d.version)
            };
            p == gv_path
        })
        .collect();
    if defs.is_empty() {
        return Err(ApiError::not_found_named("openapi", "", gv_path));
    }
    let schemas: Map<String, Value> = defs.iter().map(|d| (def_name(d), schema_of(d))).collect();
    Ok(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": crate::discovery::KUBE_VERSION},
        "paths": paths_for(&defs, true), "components": {"schemas": schemas}}),
    )
}
