//! The example GameFleets are valid: they parse with the Rust types, pass the operator's own
//! validation and the CRD's CEL rules (client-side, as the API server would evaluate them).

use std::path::{Path, PathBuf};

use gamefleet_operator::crd::GameFleet;
use gamefleet_operator::{render, validate};
use kube::core::cel::Validator;
use kube::CustomResourceExt;
use serde_json::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn crd_schema() -> Value {
    let crd = GameFleet::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn example_fleets_are_valid() {
    let schema = crd_schema();
    let mut seen = 0;
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs {
            if doc["kind"] != "GameFleet" {
                continue;
            }
            seen += 1;
            let fleet: GameFleet = serde_json::from_value(doc).unwrap();
            validate::validate(&fleet.spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // CEL rules see the defaulted object, as on the API server.
            let defaulted = serde_json::to_value(&fleet).unwrap();
            Validator::new()
                .validate(&schema, &defaulted, None)
                .unwrap_or_else(|e| panic!("{}: CEL: {e:?}", path.display()));
            render::render_fleet(fleet).unwrap();
        }
    }
    assert!(
        seen >= 2,
        "expected the full and the minimal example, found {seen}"
    );
}

#[test]
fn cel_rules_reject_what_validation_rejects() {
    let schema = crd_schema();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dice-fleet.yaml"),
    )
    .unwrap();
    let base: Value = serde_saphyr::from_str(&text).unwrap();
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit)] = &[
        ("min > max", |v| {
            v["spec"]["autoscaling"]["gateway"]["minReplicas"] = 11.into();
        }),
        ("p50 > p99", |v| {
            v["spec"]["latency"]["p50TargetMs"] = 500.into();
        }),
        ("spread > timeout", |v| {
            v["spec"]["drain"]["reconnectSpreadSeconds"] = 60.into();
        }),
        ("both redis sources", |v| {
            v["spec"]["redis"]["url"] = "redis://r:6379".into();
        }),
        ("both ledger redis sources", |v| {
            v["spec"]["redis"]["ledger"] = serde_json::json!({
                "url": "redis://ledger:6379",
                "urlSecretRef": {"name": "ledger", "key": "url"},
            });
        }),
        ("no ledger redis source", |v| {
            v["spec"]["redis"]["ledger"] = serde_json::json!({});
        }),
    ];
    assert!(Validator::new().validate(&schema, &base, None).is_ok());
    for (name, edit) in cases {
        let mut v = base.clone();
        edit(&mut v);
        assert!(
            Validator::new().validate(&schema, &v, None).is_err(),
            "CEL accepted {name}"
        );
        let fleet: GameFleet = serde_json::from_value(v).unwrap();
        assert!(
            validate::validate(&fleet.spec).is_err(),
            "validate accepted {name}"
        );
    }
}
