//! OpenAPI documents: minimal but valid. They list every served path with the
//! `fieldValidation` parameter (so kubectl uses server-side field validation)
//! and give CRD kinds their schemas; built-in kinds get open schemas. The v2
//! document is also served as protobuf, the only form kubectl's v2 client reads
//! (it falls back to v2 for any group-version the v3 index lacks).

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

/// The v2 document's paths in gnostic's `openapi.v2.Document` protobuf (what
/// clients sending `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
/// parse). Definitions are left out: kubectl reads the operations (their
/// group-version-kind and `fieldValidation` parameter) to choose server-side
/// validation, and an absent schema validates as unknown.
pub fn v2_protobuf(reg: &Registry) -> Vec<u8> {
    use prost::Message;
    let doc = v2(reg);
    let yaml = |v: &Value| serde_yaml::to_string(v).unwrap_or_default();
    let operation = |op: &Value| pb::Operation {
        operation_id: op["operationId"].as_str().unwrap_or_default().into(),
        parameters: op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| pb::ParametersItem {
                parameter: Some(pb::Parameter {
                    non_body_parameter: Some(pb::NonBodyParameter {
                        query_parameter_sub_schema: Some(pb::QueryParameterSubSchema {
                            r#in: p["in"].as_str().unwrap_or_default().into(),
                            description: p["description"].as_str().unwrap_or_default().into(),
                            name: p["name"].as_str().unwrap_or_default().into(),
                            r#type: p["type"].as_str().unwrap_or_default().into(),
                            unique_items: p["uniqueItems"] == true,
                        }),
                    }),
                }),
            })
            .collect(),
        vendor_extension: ["x-kubernetes-action", "x-kubernetes-group-version-kind"]
            .iter()
            .filter_map(|k| {
                op.get(*k).map(|v| pb::NamedAny {
                    name: k.to_string(),
                    value: Some(pb::Any { yaml: yaml(v) }),
                })
            })
            .collect(),
    };
    let path = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, item)| pb::NamedPathItem {
            name: name.clone(),
            value: Some(pb::PathItem {
                get: item.get("get").map(operation),
                put: item.get("put").map(operation),
                post: item.get("post").map(operation),
                delete: item.get("delete").map(operation),
                patch: item.get("patch").map(operation),
            }),
        })
        .collect();
    pb::Document {
        swagger: "2.0".into(),
        info: Some(pb::Info {
            title: "Kubernetes".into(),
            version: crate::discovery::KUBE_VERSION.into(),
        }),
        paths: Some(pb::Paths { path }),
    }
    .encode_to_vec()
}

/// The subset of gnostic's `openapiv2/OpenAPIv2.proto` the v2 document uses
/// (field numbers as there; absent fields decode as empty).
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathItem {
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Operation {
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// `oneof { Parameter parameter = 1; JsonReference json_reference = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ParametersItem {
        #[prost(message, optional, tag = "1")]
        pub parameter: Option<Parameter>,
    }

    /// `oneof { BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Parameter {
        #[prost(message, optional, tag = "2")]
        pub non_body_parameter: Option<NonBodyParameter>,
    }

    /// `oneof { ...; QueryParameterSubSchema query_parameter_sub_schema = 3; ... }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NonBodyParameter {
        #[prost(message, optional, tag = "3")]
        pub query_parameter_sub_schema: Option<QueryParameterSubSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QueryParameterSubSchema {
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// gnostic's `Any`: `google.protobuf.Any value = 1; string yaml = 2;`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn v2_protobuf_names_each_patch_operation_with_its_kind_and_field_validation() {
        let reg = Registry::default();
        let doc = pb::Document::decode(v2_protobuf(&reg).as_slice()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        let paths = doc.paths.unwrap_or_default().path;
        let cronjob = paths
            .iter()
            .find(|p| p.name == "/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}")
            .and_then(|p| p.value.clone())
            .and_then(|v| v.patch)
            .expect("a patch operation for CronJobs");
        let gvk = cronjob
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.clone())
            .expect("the group-version-kind extension");
        let gvk: Value = serde_yaml::from_str(&gvk.yaml).unwrap();
        assert_eq!(
            gvk,
            json!({"group": "batch", "version": "v1", "kind": "CronJob"})
        );
        let params: Vec<String> = cronjob
            .parameters
            .iter()
            .filter_map(|p| {
                p.parameter
                    .clone()?
                    .non_body_parameter?
                    .query_parameter_sub_schema
            })
            .map(|q| q.name)
            .collect();
        assert_eq!(params, ["fieldValidation"]);
    }
}
