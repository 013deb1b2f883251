//! Just enough of the Kubernetes protobuf encoding to accept the request
//! bodies typed clients (helm's release Secrets, `kubectl create
//! namespace/secret/configmap`) send: Namespace, Secret and ConfigMap.
//! Responses are always JSON, which these clients also accept.

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `k8s\0` + runtime.Unknown.
const MAGIC: &[u8] = b"k8s\x00";

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    type_: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct Preconditions {
    #[prost(string, optional, tag = "1")]
    uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    resource_version: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct DeleteOptions {
    #[prost(int64, optional, tag = "1")]
    grace_period_seconds: Option<i64>,
    #[prost(message, optional, tag = "2")]
    preconditions: Option<Preconditions>,
    #[prost(bool, optional, tag = "3")]
    orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    propagation_policy: Option<String>,
    #[prost(string, repeated, tag = "5")]
    dry_run: Vec<String>,
}

fn meta_json(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.insert(k.into(), json!(v));
        }
    };
    put("name", m.name);
    put("generateName", m.generate_name);
    put("namespace", m.namespace);
    put("resourceVersion", m.resource_version);
    if !m.labels.is_empty() {
        out.insert("labels".into(), json!(m.labels));
    }
    if !m.annotations.is_empty() {
        out.insert("annotations".into(), json!(m.annotations));
    }
    if !m.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(m.finalizers));
    }
    if !m.owner_references.is_empty() {
        let refs: Vec<Value> = m
            .owner_references
            .into_iter()
            .map(|r| {
                json!({"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid,
                "controller": r.controller, "blockOwnerDeletion": r.block_owner_deletion})
            })
            .collect();
        out.insert("ownerReferences".into(), json!(refs));
    }
    Value::Object(out)
}

fn b64(m: BTreeMap<String, Vec<u8>>) -> Value {
    json!(m
        .into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<BTreeMap<_, _>>())
}

/// Decodes a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s envelope")?;
    let unknown =
        Unknown::decode(rest).map_err(|e| format!("decoding the protobuf envelope: {e}"))?;
    let tm = unknown.type_meta.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let err = |e: prost::DecodeError| format!("decoding a protobuf {kind}: {e}");
    let mut obj = match kind.as_str() {
        "Secret" => {
            let s = Secret::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"metadata": meta_json(s.metadata), "data": b64(s.data)});
            if let Some(t) = s.type_ {
                o["type"] = json!(t);
            }
            if !s.string_data.is_empty() {
                o["stringData"] = json!(s.string_data);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        "ConfigMap" => {
            let c = ConfigMap::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"metadata": meta_json(c.metadata), "data": c.data});
            if !c.binary_data.is_empty() {
                o["binaryData"] = b64(c.binary_data);
            }
            if let Some(i) = c.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        "Namespace" => {
            let n = Namespace::decode(raw.as_slice()).map_err(err)?;
            json!({"metadata": meta_json(n.metadata)})
        }
        "DeleteOptions" => {
            let d = DeleteOptions::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"dryRun": d.dry_run});
            if let Some(g) = d.grace_period_seconds {
                o["gracePeriodSeconds"] = json!(g);
            }
            if let Some(p) = d.propagation_policy {
                o["propagationPolicy"] = json!(p);
            }
            if let Some(or) = d.orphan_dependents {
                o["orphanDependents"] = json!(or);
            }
            if let Some(p) = d.preconditions {
                o["preconditions"] = json!({"uid": p.uid, "resourceVersion": p.resource_version});
            }
            o
        }
        other => {
            return Err(format!(
                "protobuf bodies of kind {other:?} are not supported; send JSON"
            ))
        }
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_secret_envelope() {
        let secret = Secret {
            metadata: Some(ObjectMeta {
                name: Some("sh.helm.release.v1.demo.v1".into()),
                labels: [("owner".to_string(), "helm".to_string())].into(),
                ..Default::default()
            }),
            data: [("release".to_string(), b"abc".to_vec())].into(),
            type_: Some("helm.sh/release.v1".into()),
            ..Default::default()
        };
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
            }),
            raw: Some(secret.encode_to_vec()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(env.encode_to_vec());
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "sh.helm.release.v1.demo.v1");
        assert_eq!(v["data"]["release"], "YWJj");
        assert_eq!(v["type"], "helm.sh/release.v1");
        assert!(decode(b"nope").is_err());
    }
}
