//! Identity of the objects a fleet owns: their names, labels, selectors and owner reference.
//! A leaf of `build`: every builder uses it, it uses none of them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::GameFleet;

/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "gamefleet-operator";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";

/// Which tier a pod belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Gateway,
    Engine,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Engine => "engine",
        }
    }
}

/// Names of the objects a fleet owns (stable, so renames never orphan anything silently).
pub mod names {
    pub fn gateway(fleet: &str) -> String {
        format!("{fleet}-gateway")
    }
    pub fn engine(fleet: &str) -> String {
        format!("{fleet}-engine")
    }
    pub fn player_service(fleet: &str) -> String {
        format!("{fleet}-players")
    }
    pub fn metrics_service(fleet: &str) -> String {
        format!("{fleet}-metrics")
    }
    pub fn gateway_pdb(fleet: &str) -> String {
        format!("{fleet}-gateway")
    }
}

/// What the builders need besides the spec: identity and ownership, resolved once.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub reference: OwnerReference,
}

impl Owner {
    /// `None` until the API server has given the fleet a name, namespace and uid.
    pub fn of(fleet: &GameFleet) -> Option<Owner> {
        Some(Owner {
            name: fleet.metadata.name.clone()?,
            namespace: fleet.metadata.namespace.clone()?,
            reference: fleet.controller_owner_ref(&())?,
        })
    }

    /// Metadata of a child object: name, namespace, labels, controller owner reference.
    pub fn child_meta(&self, name: String, component: Option<Component>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.reference.clone()]),
            ..Default::default()
        }
    }

    /// Labels on every child object and pod.
    pub fn labels(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut l = self.selector(component);
        l.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
        l.insert(LABEL_PART_OF.into(), "gamefleet".into());
        l
    }

    /// Labels that select the fleet's pods (of one tier, or of both with `None`).
    pub fn selector(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        l.insert(LABEL_NAME.into(), "gameserver".into());
        l.insert(LABEL_INSTANCE.into(), self.name.clone());
        if let Some(c) = component {
            l.insert(LABEL_COMPONENT.into(), c.as_str().into());
        }
        l
    }

    /// Label selector string of the objects this fleet owns (used to find orphans).
    pub fn owned_selector(&self) -> String {
        format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.name
        )
    }
}

/// Label selector string, `k=v,k=v`, in a stable order.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fleet;

    #[test]
    fn owner_needs_uid_and_namespace() {
        let mut f = fleet();
        assert!(Owner::of(&f).is_some());
        f.metadata.uid = None;
        assert!(Owner::of(&f).is_none());
        let mut f = fleet();
        f.metadata.namespace = None;
        assert!(Owner::of(&f).is_none());
    }

    #[test]
    fn child_meta_carries_labels_and_controller_reference() {
        let owner = Owner::of(&fleet()).unwrap();
        let meta = owner.child_meta("dice-gateway".into(), Some(Component::Gateway));
        assert_eq!(meta.name.as_deref(), Some("dice-gateway"));
        assert_eq!(meta.namespace.as_deref(), Some("games"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels[LABEL_NAME], "gameserver");
        assert_eq!(labels[LABEL_INSTANCE], "dice");
        assert_eq!(labels[LABEL_COMPONENT], "gateway");
        assert_eq!(labels[LABEL_MANAGED_BY], "gamefleet-operator");
        assert_eq!(labels[LABEL_PART_OF], "gamefleet");
        let refs = meta.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "GameFleet");
        assert_eq!(refs[0].api_version, "gamefleet.dev/v1alpha1");
        assert_eq!(refs[0].name, "dice");
        assert_eq!(refs[0].uid, "5b1c7c6e-1111-4222-8333-944455556666");
        assert_eq!(refs[0].controller, Some(true));
    }

    #[test]
    fn selectors() {
        let owner = Owner::of(&fleet()).unwrap();
        assert_eq!(
            selector_string(&owner.selector(Some(Component::Engine))),
            "app.kubernetes.io/component=engine,app.kubernetes.io/instance=dice,app.kubernetes.io/name=gameserver"
        );
        assert_eq!(
            owner.owned_selector(),
            "app.kubernetes.io/instance=dice,app.kubernetes.io/managed-by=gamefleet-operator"
        );
    }
}
