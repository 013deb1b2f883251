//! CustomResourceDefinitions become served resources.

use super::ApiServer;
use crate::error::ApiError;
use crate::meta::{meta_str, now, str_list};
use crate::registry::{PrinterColumn, ResourceDef, ScalePaths};
use crate::store::Write;
use serde_json::{json, Value};

impl ApiServer {
    /// Serves the resources of a CRD and marks it Established.
    pub fn register_crd(&self, crd: &Value) {
        let name = meta_str(crd, "name").to_string();
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        self.registry.set_crd(&name, crd_resource_defs(crd, &name));
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established"));
        if !established {
            self.mark_established(&name);
        }
    }

    /// Sets the CRD's status: names accepted, Established.
    fn mark_established(&self, name: &str) {
        let t = now();
        let _ = self.store.mutate::<ApiError>(
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            name,
            |cur| match cur {
                Some(c) => {
                    let mut n = c.clone();
                    n["status"] = established_status(c, &t);
                    Ok(Write::Put(n))
                }
                None => Ok(Write::Keep),
            },
        );
    }
}

/// The resources a CRD (named `name`) serves: one per served version.
fn crd_resource_defs(crd: &Value, name: &str) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let mut defs = vec![];
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v.get("served") == Some(&Value::Bool(false)) {
            continue;
        }
        defs.push(ResourceDef {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().into(),
            plural: plural.clone(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            kind: kind.clone(),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: str_list(&names["shortNames"]),
            categories: str_list(&names["categories"]),
            status: v.pointer("/subresources/status").is_some(),
            scale: scale_paths(v),
            storage: format!("{group}/{plural}"),
            columns: printer_columns(v),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            crd: Some(name.to_string()),
        });
    }
    defs
}

/// A CRD version's scale subresource, if it has one.
fn scale_paths(v: &Value) -> Option<ScalePaths> {
    v.pointer("/subresources/scale").map(|s| ScalePaths {
        spec_replicas: s["specReplicasPath"]
            .as_str()
            .unwrap_or(".spec.replicas")
            .into(),
        status_replicas: s["statusReplicasPath"]
            .as_str()
            .unwrap_or(".status.replicas")
            .into(),
        label_selector: s["labelSelectorPath"].as_str().map(String::from),
    })
}

/// A CRD version's printer columns (`Age` alone when it declares none).
fn printer_columns(v: &Value) -> Vec<PrinterColumn> {
    let mut columns: Vec<PrinterColumn> = v["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or_default().into(),
            type_: c["type"].as_str().unwrap_or("string").into(),
            format: c["format"].as_str().unwrap_or_default().into(),
            description: c["description"].as_str().unwrap_or_default().into(),
            priority: c["priority"].as_i64().unwrap_or(0),
            json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
        })
        .collect();
    if columns.is_empty() {
        columns.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    columns
}

/// The status of an established CRD `c`, its conditions stamped `t`.
fn established_status(c: &Value, t: &str) -> Value {
    let stored_versions: Vec<Value> = c["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "acceptedNames": c["spec"]["names"],
        "storedVersions": stored_versions,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": t
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": t
            }
        ]
    })
}
