//! Every API call the operator makes, as RBAC rules.
//!
//! The chart's fleet rules (`templates/rbac.yaml`: a ClusterRole, or a Role in `watchNamespace`
//! when that is set) and its leader-election Role are kept identical to these lists by tests (the
//! template's text here; the `helm template` output in `tests/chart_rbac.rs`), and the controller
//! tests record the requests the operator really sends and check them against these lists, both
//! ways (nothing missing, nothing granted that is never used), and that with a watch namespace
//! every request stays in it.

/// One permission: `verb` on `resource` in API group `group` ("" is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
}

const fn p(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
    Permission {
        group,
        resource,
        verb,
    }
}

/// In every namespace (fleets may live in any), or only in the watched namespace when the
/// operator runs with `--namespace` (the chart then grants them with a Role there).
pub const CLUSTER: &[Permission] = &[
    // The controller's watch of GameFleets.
    p("gamefleet.dev", "gamefleets", "list"),
    p("gamefleet.dev", "gamefleets", "watch"),
    // Status writes.
    p("gamefleet.dev", "gamefleets/status", "patch"),
    // Owned objects: watched by the controller, applied (server-side apply is authorized as
    // patch, and as create when the object does not exist), orphans deleted.
    p("apps", "deployments", "create"),
    p("apps", "deployments", "delete"),
    p("apps", "deployments", "list"),
    p("apps", "deployments", "patch"),
    p("apps", "deployments", "watch"),
    p("", "services", "create"),
    p("", "services", "delete"),
    p("", "services", "list"),
    p("", "services", "patch"),
    p("", "services", "watch"),
    p("policy", "poddisruptionbudgets", "create"),
    p("policy", "poddisruptionbudgets", "delete"),
    p("policy", "poddisruptionbudgets", "list"),
    p("policy", "poddisruptionbudgets", "patch"),
    p("policy", "poddisruptionbudgets", "watch"),
    // Dereference: the Secrets a fleet names must exist and hold the key. Read by name only:
    // never list or watch, which would hand the operator every Secret of the namespace.
    p("", "secrets", "get"),
    // Status: gateway pods shutting down (draining), whose metrics are then read directly.
    p("", "pods", "list"),
    // kube-runtime's event recorder: create, then patch to count repeats.
    p("events.k8s.io", "events", "create"),
    p("events.k8s.io", "events", "patch"),
];

/// Granted like [`CLUSTER`], used only for fleets with autoscaling on: read the Deployments' current
/// replicas and set `controller.kubernetes.io/pod-deletion-cost` before a gateway scale-down
/// (the pods to scrape are found with the `pods` list above).
pub const AUTOSCALER: &[Permission] = &[p("apps", "deployments", "get"), p("", "pods", "patch")];

/// In the operator's own namespace only: the leader-election Lease.
pub const LEADER_ELECTION: &[Permission] = &[
    p("coordination.k8s.io", "leases", "create"),
    p("coordination.k8s.io", "leases", "get"),
    p("coordination.k8s.io", "leases", "update"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    /// Permissions granted by the `rules:` of a chart template (the rules are plain YAML).
    fn rules_in(template: &str) -> BTreeSet<(String, String, String)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/gamefleet-operator/templates")
            .join(template);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("\nrules:").expect("rules: block") + 1;
        let block: String = text[start..]
            .lines()
            .take_while(|l| !l.starts_with("---") && !l.starts_with("{{"))
            .collect::<Vec<_>>()
            .join("\n");
        let doc: Value = serde_saphyr::from_str(&block).unwrap();
        let mut out = BTreeSet::new();
        for rule in doc["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        let s = |x: &Value| x.as_str().unwrap().to_string();
                        out.insert((s(g), s(r), s(v)));
                    }
                }
            }
        }
        out
    }

    fn set(perms: &[Permission]) -> BTreeSet<(String, String, String)> {
        perms
            .iter()
            .map(|p| (p.group.into(), p.resource.into(), p.verb.into()))
            .collect()
    }

    #[test]
    fn fleet_role_grants_exactly_the_cluster_calls() {
        let mut want = set(CLUSTER);
        want.extend(set(AUTOSCALER));
        assert_eq!(rules_in("rbac.yaml"), want);
    }

    #[test]
    fn role_grants_exactly_the_leader_election_calls() {
        assert_eq!(rules_in("role.yaml"), set(LEADER_ELECTION));
    }

    #[test]
    fn secrets_are_only_read_by_name() {
        let secrets: Vec<&str> = CLUSTER
            .iter()
            .chain(AUTOSCALER)
            .chain(LEADER_ELECTION)
            .filter(|p| p.group.is_empty() && p.resource.starts_with("secrets"))
            .map(|p| p.verb)
            .collect();
        assert_eq!(secrets, ["get"]);
    }

    #[test]
    fn no_wildcards_and_no_duplicates() {
        let all: Vec<Permission> = CLUSTER
            .iter()
            .chain(AUTOSCALER)
            .chain(LEADER_ELECTION)
            .copied()
            .collect();
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert!(all
            .iter()
            .all(|p| p.verb != "*" && p.resource != "*" && p.group != "*"));
    }
}
