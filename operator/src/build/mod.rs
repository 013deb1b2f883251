//! Desired state: pure functions from a `GameFleet` to the objects the operator applies.
//!
//! One file per resource, so "what does the player Service look like" is answered in one place.
//! Nothing here talks to the API server.

mod deployment;
pub mod engine_deployment;
pub mod gateway_deployment;
mod meta;
pub mod metrics_service;
pub mod pdb;
pub mod player_service;
pub mod pod;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::crd::GameFleet;
use crate::scaling::DesiredReplicas;

pub use meta::{
    names, selector_string, Component, Owner, FIELD_MANAGER, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF,
};

/// Everything a fleet asks for. `None` means "must not exist" (deleted if found).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetObjects {
    pub gateway: Deployment,
    pub engine: Deployment,
    pub player_service: Service,
    pub metrics_service: Service,
    pub gateway_pdb: Option<PodDisruptionBudget>,
}

/// Builds every object of a fleet.
pub fn build(fleet: &GameFleet, owner: &Owner, replicas: DesiredReplicas) -> FleetObjects {
    let spec = &fleet.spec;
    FleetObjects {
        gateway: gateway_deployment::build(spec, owner, replicas.gateway),
        engine: engine_deployment::build(spec, owner, replicas.engine),
        player_service: player_service::build(spec, owner),
        metrics_service: metrics_service::build(spec, owner),
        gateway_pdb: pdb::build(spec, owner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fleet;

    #[test]
    fn pdb_is_omitted_when_disabled() {
        let mut f = fleet();
        let owner = Owner::of(&f).unwrap();
        let r = DesiredReplicas {
            gateway: 3,
            engine: 1,
        };
        assert!(build(&f, &owner, r).gateway_pdb.is_some());
        f.spec.gateway.pod_disruption_budget.enabled = false;
        assert!(build(&f, &owner, r).gateway_pdb.is_none());
    }
}
