//! The resources the API server serves: built-in kinds plus CRD-defined ones.

use serde_json::Value;
use std::sync::RwLock;

/// One printer column of a CRD (`additionalPrinterColumns`).
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Where the scale subresource reads and writes replicas.
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// A served resource (one group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    /// Storage key; two resources may share storage (core and events.k8s.io Events).
    pub storage: String,
    /// CRD data: printer columns and the structural schema.
    pub columns: Vec<PrinterColumn>,
    pub schema: Option<Value>,
    /// Name of the CRD that defined it (None for built-ins).
    pub crd: Option<String>,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True for events.k8s.io Events, which are a view on core Events.
    pub fn is_events_v1_view(&self) -> bool {
        self.group == "events.k8s.io"
    }
}

#[allow(clippy::too_many_arguments)] // one row of the built-in table
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    scale: bool,
) -> ResourceDef {
    let storage = if group == "events.k8s.io" {
        "core/events".to_string()
    } else {
        format!(
            "{}/{}",
            if group.is_empty() { "core" } else { group },
            plural
        )
    };
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if ["pods", "services", "deployments", "replicasets"].contains(&plural) {
            vec!["all".into()]
        } else {
            vec![]
        },
        status,
        scale: scale.then(|| ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        }),
        storage,
        columns: vec![],
        schema: None,
        crd: None,
    }
}

/// Every built-in resource, in discovery order.
fn builtins() -> Vec<ResourceDef> {
    [
        core_builtins(),
        node_and_quota_builtins(),
        workload_builtins(),
        network_and_policy_builtins(),
        access_builtins(),
    ]
    .concat()
}

/// The core (`v1`) resources of namespaces and workloads.
fn core_builtins() -> Vec<ResourceDef> {
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
        ),
        builtin("", "v1", "pods", "Pod", true, &["po"], true, false),
        builtin("", "v1", "services", "Service", true, &["svc"], true, false),
        builtin(
            "",
            "v1",
            "endpoints",
            "Endpoints",
            true,
            &["ep"],
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        builtin("", "v1", "secrets", "Secret", true, &[], false, false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin("", "v1", "events", "Event", true, &["ev"], false, false),
    ]
}

/// The core (`v1`) resources of nodes, quotas, limits and volume claims.
fn node_and_quota_builtins() -> Vec<ResourceDef> {
    vec![
        builtin("", "v1", "nodes", "Node", false, &["no"], true, false),
        builtin(
            "",
            "v1",
            "resourcequotas",
            "ResourceQuota",
            true,
            &["quota"],
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "limitranges",
            "LimitRange",
            true,
            &["limits"],
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            true,
            false,
        ),
    ]
}

/// The `apps` and `batch` resources.
fn workload_builtins() -> Vec<ResourceDef> {
    vec![
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            true,
            &["ds"],
            true,
            false,
        ),
        builtin(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
            &[],
            false,
            false,
        ),
        builtin("batch", "v1", "jobs", "Job", true, &[], true, false),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            &["cj"],
            true,
            false,
        ),
    ]
}

/// Discovery, events, policy, coordination, autoscaling and networking resources.
fn network_and_policy_builtins() -> Vec<ResourceDef> {
    vec![
        builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
        ),
        builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            true,
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            true,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            &["ing"],
            true,
            false,
        ),
    ]
}

/// RBAC resources and CustomResourceDefinitions.
fn access_builtins() -> Vec<ResourceDef> {
    vec![
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            false,
        ),
    ]
}

/// The set of served resources; CRDs add and remove entries at run time.
pub struct Registry {
    defs: RwLock<Vec<ResourceDef>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            defs: RwLock::new(builtins()),
        }
    }
}

impl Registry {
    pub fn all(&self) -> Vec<ResourceDef> {
        self.defs.read().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.all()
            .into_iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }

    /// The group/version pairs served, in discovery order (core first).
    pub fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in self.all() {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, vs)) => {
                    if !vs.contains(&d.version) {
                        vs.push(d.version.clone())
                    }
                }
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        out
    }

    /// Replaces every resource defined by the CRD `crd_name` with `defs`.
    pub fn set_crd(&self, crd_name: &str, defs: Vec<ResourceDef>) {
        if let Ok(mut all) = self.defs.write() {
            all.retain(|d| d.crd.as_deref() != Some(crd_name));
            all.extend(defs);
        }
    }
}
