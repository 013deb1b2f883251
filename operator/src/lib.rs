//! GameFleet operator: the `GameFleet` resource, its reconciler and the objects it manages.
//!
//! The reconcile pipeline: dereference (read referenced Secrets) → [`validate`] (pure) →
//! [`build`] (pure: spec → objects) → apply (server-side apply, delete orphans) → [`status`]
//! (pure computation, written only when it changes).

pub mod apply;
pub mod autoscale;
pub mod build;
pub mod controller;
pub mod crd;
pub mod drain;
pub mod drain_probe;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod render;
pub mod runtime;
pub mod scaling;
pub mod server;
pub mod status;
pub mod validate;

#[cfg(test)]
mod test_support;

use kube::CustomResourceExt;

/// The CRD YAML, as `gamefleet-operator crd` prints it and `crds/` stores it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd::GameFleet::crd())
}
