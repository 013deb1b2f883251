//! `gamefleet-operator render`: the objects the builders produce for GameFleet manifests, so they
//! can be reviewed and validated offline (`scripts/check-manifests` feeds them to
//! kubernetes-validate).

use serde_json::Value;

use crate::build::{self, FleetObjects, Owner};
use crate::crd::GameFleet;
use crate::scaling::{self, CurrentReplicas};
use crate::validate::{self, InvalidSpec};

/// Stand-in uid for owner references of fleets that were never stored by an API server.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot parse YAML: {0}")]
    Yaml(String),
    #[error("document {index} is not a valid GameFleet: {source}")]
    NotAGameFleet {
        index: usize,
        source: serde_json::Error,
    },
    #[error("GameFleet {name}: {source}")]
    Invalid { name: String, source: InvalidSpec },
    #[error("no GameFleet found in the input")]
    Empty,
    #[error("cannot serialize: {0}")]
    Serialize(String),
}

/// Parses every `GameFleet` document of a (multi-document) YAML stream; other kinds are skipped.
pub fn parse_fleets(yaml: &str) -> Result<Vec<GameFleet>, RenderError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let mut fleets = vec![];
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.get("kind").and_then(Value::as_str) != Some("GameFleet") {
            continue;
        }
        let fleet: GameFleet = serde_json::from_value(doc)
            .map_err(|source| RenderError::NotAGameFleet { index, source })?;
        fleets.push(fleet);
    }
    Ok(fleets)
}

/// Builds the objects of one fleet as the reconciler would for a new fleet.
pub fn render_fleet(mut fleet: GameFleet) -> Result<FleetObjects, RenderError> {
    let name = fleet.metadata.name.clone().unwrap_or_default();
    validate::validate(&fleet.spec).map_err(|source| RenderError::Invalid {
        name: name.clone(),
        source,
    })?;
    if fleet.metadata.namespace.is_none() {
        fleet.metadata.namespace = Some("default".into());
    }
    if fleet.metadata.uid.is_none() {
        fleet.metadata.uid = Some(PLACEHOLDER_UID.into());
    }
    let owner = Owner::of(&fleet).ok_or_else(|| RenderError::Invalid {
        name: name.clone(),
        source: InvalidSpec {
            problems: vec![crate::validate::FieldProblem {
                field: "metadata.name".into(),
                message: "must be set".into(),
            }],
        },
    })?;
    let replicas = scaling::desired_replicas(&fleet.spec, CurrentReplicas::default(), None);
    Ok(build::build(&fleet, &owner, replicas.desired))
}

/// Renders every fleet in `yaml` to a multi-document YAML stream of the built objects.
pub fn render(yaml: &str) -> Result<String, RenderError> {
    let fleets = parse_fleets(yaml)?;
    if fleets.is_empty() {
        return Err(RenderError::Empty);
    }
    let mut out = String::new();
    for fleet in fleets {
        let o = render_fleet(fleet)?;
        let mut docs = vec![
            to_value(&o.gateway)?,
            to_value(&o.engine)?,
            to_value(&o.player_service)?,
            to_value(&o.metrics_service)?,
        ];
        if let Some(pdb) = &o.gateway_pdb {
            docs.push(to_value(pdb)?);
        }
        for doc in docs {
            out.push_str("---\n");
            out.push_str(
                &serde_saphyr::to_string(&doc)
                    .map_err(|e| RenderError::Serialize(e.to_string()))?,
            );
        }
    }
    Ok(out)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RenderError> {
    serde_json::to_value(v).map_err(|e| RenderError::Serialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: s}
---
apiVersion: gamefleet.dev/v1alpha1
kind: GameFleet
metadata:
  name: mini
spec:
  gateway:
    image: example/gameserver:1
  redis:
    url: redis://redis:6379
  auth:
    jwtSecretRef: {name: s, key: jwt}
"#;

    #[test]
    fn defaults_fill_a_minimal_fleet() {
        let fleets = parse_fleets(MINIMAL).unwrap();
        assert_eq!(fleets.len(), 1);
        let s = &fleets[0].spec;
        assert_eq!(s.gateway.replicas, 2);
        assert_eq!(s.gateway.connections_per_pod, 5000);
        assert_eq!(s.engine.replicas, 1);
        assert_eq!(s.drain.timeout_seconds, 30);
        assert_eq!(s.rooms.max_players_per_room, 100);
        assert!(!s.autoscaling.enabled);
    }

    #[test]
    fn renders_every_object_with_kind_and_api_version() {
        let out = render(MINIMAL).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        let kinds: Vec<(&str, &str)> = docs
            .iter()
            .map(|d| {
                (
                    d["apiVersion"].as_str().unwrap(),
                    d["kind"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("apps/v1", "Deployment"),
                ("apps/v1", "Deployment"),
                ("v1", "Service"),
                ("v1", "Service"),
                ("policy/v1", "PodDisruptionBudget")
            ]
        );
        assert_eq!(docs[0]["metadata"]["namespace"], "default");
        assert_eq!(docs[0]["spec"]["replicas"], 2);
    }

    #[test]
    fn invalid_fleet_is_reported_with_its_field() {
        let bad = MINIMAL.replace(
            "image: example/gameserver:1",
            "image: example/gameserver:1\n    connectionsPerPod: 0",
        );
        let err = render(&bad).unwrap_err().to_string();
        assert!(err.contains("spec.gateway.connectionsPerPod"), "{err}");
    }

    #[test]
    fn no_fleet_is_an_error() {
        assert!(matches!(render("kind: Secret\n"), Err(RenderError::Empty)));
        assert!(matches!(render(": : :\n  - ["), Err(RenderError::Yaml(_))));
    }
}
