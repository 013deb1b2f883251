//! The gateways' PodDisruptionBudget: voluntary evictions (node drains) take at most
//! `maxUnavailable` gateways at a time, so players are drained in waves, not all at once.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{names, Component, Owner};
use crate::crd::GameFleetSpec;

/// `None` when the spec disables it (an existing one is then deleted).
pub fn build(spec: &GameFleetSpec, owner: &Owner) -> Option<PodDisruptionBudget> {
    let pdb = &spec.gateway.pod_disruption_budget;
    if !pdb.enabled {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: owner.child_meta(names::gateway_pdb(&owner.name), Some(Component::Gateway)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(pdb.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.selector(Some(Component::Gateway))),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fleet, spec};

    #[test]
    fn selects_gateways_with_max_unavailable() {
        let mut sp = spec();
        sp.gateway.pod_disruption_budget.max_unavailable = 2;
        let p = build(&sp, &Owner::of(&fleet()).unwrap()).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("dice-gateway"));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].name,
            "dice"
        );
        let s = p.spec.unwrap();
        assert_eq!(s.max_unavailable, Some(IntOrString::Int(2)));
        assert_eq!(s.min_available, None);
        let sel = s.selector.unwrap().match_labels.unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "gateway");
        assert_eq!(sel["app.kubernetes.io/instance"], "dice");
    }

    #[test]
    fn disabled_means_absent() {
        let mut sp = spec();
        sp.gateway.pod_disruption_budget.enabled = false;
        assert!(build(&sp, &Owner::of(&fleet()).unwrap()).is_none());
    }
}
