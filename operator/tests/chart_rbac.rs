//! The chart's RBAC as `helm template` renders it, with and without `watchNamespace`: a
//! ClusterRole + ClusterRoleBinding, or a Role + RoleBinding in the watched namespace only (and no
//! cluster-wide grant), each with exactly the rules of `rbac.rs`; the leader-election Role in the
//! release namespace either way.
//!
//! Needs `helm` (`$HELM`, else scripts/install-tools' cache); without it the test is skipped,
//! except in CI (`CI=true`), where that is an error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use gamefleet_operator::rbac::{self, Permission};
use serde_json::Value;

const RELEASE: &str = "gamefleet";
const RELEASE_NS: &str = "gamefleet-system";
const FULLNAME: &str = "gamefleet-gamefleet-operator";

type Rules = BTreeSet<(String, String, String)>;

fn helm() -> Option<PathBuf> {
    let p = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gamefleet/tools/bin/helm")
        });
    if p.is_file() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "helm not found at {} (CI=true: run scripts/install-tools or set $HELM)",
        p.display()
    );
    eprintln!(
        "SKIPPED: helm not found at {} (run scripts/install-tools or set $HELM)",
        p.display()
    );
    None
}

/// `helm template` of the chart with `set` (`key=value` pairs), helm's state kept out of HOME.
fn helm_template(helm: &Path, set: &[&str]) -> Command {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/gamefleet-operator");
    let mut cmd = Command::new(helm);
    cmd.args(["template", RELEASE])
        .arg(&chart)
        .args(["--namespace", RELEASE_NS]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let home = std::env::temp_dir().join("gamefleet-chart-rbac-helm");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// The objects `helm template` renders with `set`.
fn render(helm: &Path, set: &[&str]) -> Vec<Value> {
    let out = helm_template(helm, set).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template {set:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered YAML parses");
    docs.into_iter().filter(|d| d.is_object()).collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = of_kind(objs, kind)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name}, found {found:#?}");
    found[0]
}

fn rules(obj: &Value) -> Rules {
    let s = |x: &Value| x.as_str().expect("a string").to_string();
    let arr = |x: &Value| x.as_array().cloned().unwrap_or_default();
    let mut out = BTreeSet::new();
    for rule in arr(&obj["rules"]) {
        for g in arr(&rule["apiGroups"]) {
            for r in arr(&rule["resources"]) {
                for v in arr(&rule["verbs"]) {
                    out.insert((s(&g), s(&r), s(&v)));
                }
            }
        }
    }
    out
}

fn set(perms: &[&[Permission]]) -> Rules {
    perms
        .iter()
        .flat_map(|ps| ps.iter())
        .map(|p| (p.group.into(), p.resource.into(), p.verb.into()))
        .collect()
}

/// The binding grants `role_kind`/`name` to the operator's ServiceAccount (in the release
/// namespace), and nothing else.
fn assert_binds(binding: &Value, role_kind: &str, name: &str) {
    assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(binding["roleRef"]["kind"], role_kind, "{binding:#?}");
    assert_eq!(binding["roleRef"]["name"], name, "{binding:#?}");
    let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{binding:#?}");
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], FULLNAME);
    assert_eq!(subjects[0]["namespace"], RELEASE_NS);
}

fn operator_args(objs: &[Value]) -> Vec<String> {
    let d = named(objs, "Deployment", FULLNAME);
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn assert_leader_election_role(objs: &[Value]) {
    let name = format!("{FULLNAME}-leader-election");
    let role = named(objs, "Role", &name);
    assert_eq!(role["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(rules(role), set(&[rbac::LEADER_ELECTION]));
    let binding = named(objs, "RoleBinding", &name);
    assert_eq!(binding["metadata"]["namespace"], RELEASE_NS);
    assert_binds(binding, "Role", &name);
}

#[test]
fn all_namespaces_get_a_cluster_role_with_exactly_the_operator_rules() {
    let Some(helm) = helm() else { return };
    let objs = render(&helm, &[]);
    let role = named(&objs, "ClusterRole", FULLNAME);
    assert!(role["metadata"].get("namespace").is_none(), "{role:#?}");
    assert_eq!(rules(role), set(&[rbac::CLUSTER, rbac::AUTOSCALER]));
    assert_binds(
        named(&objs, "ClusterRoleBinding", FULLNAME),
        "ClusterRole",
        FULLNAME,
    );
    assert_eq!(of_kind(&objs, "ClusterRole").len(), 1);
    assert_eq!(of_kind(&objs, "ClusterRoleBinding").len(), 1);
    // The only namespaced Role is the Lease's.
    assert_eq!(of_kind(&objs, "Role").len(), 1);
    assert_eq!(of_kind(&objs, "RoleBinding").len(), 1);
    assert_leader_election_role(&objs);
    assert!(
        !operator_args(&objs)
            .iter()
            .any(|a| a.starts_with("--namespace")),
        "the operator watches every namespace"
    );
}

#[test]
fn a_watch_namespace_gets_a_role_there_and_nothing_cluster_wide() {
    let Some(helm) = helm() else { return };
    for extra in [
        &[][..],
        &["leaderElection.enabled=false", "replicaCount=1"][..],
    ] {
        let mut values = vec!["watchNamespace=games"];
        values.extend_from_slice(extra);
        let objs = render(&helm, &values);
        assert!(
            of_kind(&objs, "ClusterRole").is_empty()
                && of_kind(&objs, "ClusterRoleBinding").is_empty(),
            "{values:?}: no cluster-wide grant with a watch namespace"
        );
        let role = named(&objs, "Role", FULLNAME);
        assert_eq!(role["metadata"]["namespace"], "games", "{values:?}");
        assert_eq!(
            rules(role),
            set(&[rbac::CLUSTER, rbac::AUTOSCALER]),
            "{values:?}"
        );
        let binding = named(&objs, "RoleBinding", FULLNAME);
        assert_eq!(binding["metadata"]["namespace"], "games", "{values:?}");
        assert_binds(binding, "Role", FULLNAME);
        // The operator is told to watch that namespace only.
        let args = operator_args(&objs);
        assert!(
            args.iter().any(|a| a == "--namespace=games"),
            "{values:?}: {args:?}"
        );
        if extra.is_empty() {
            assert_eq!(of_kind(&objs, "Role").len(), 2, "{values:?}");
            assert_eq!(of_kind(&objs, "RoleBinding").len(), 2, "{values:?}");
            assert_leader_election_role(&objs);
        } else {
            assert_eq!(of_kind(&objs, "Role").len(), 1, "{values:?}");
            assert_eq!(of_kind(&objs, "RoleBinding").len(), 1, "{values:?}");
        }
    }
}

#[test]
fn the_watch_namespace_must_be_a_namespace_name() {
    let Some(helm) = helm() else { return };
    for bad in ["Games", "games/x", "-games"] {
        let out = helm_template(&helm, &[&format!("watchNamespace={bad}")])
            .output()
            .expect("helm runs");
        assert!(
            !out.status.success(),
            "values.schema.json accepted watchNamespace={bad}"
        );
    }
}
