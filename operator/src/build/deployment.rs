//! The Deployment shape both tiers share: a rolling update that never drops capacity, the
//! hardened pod with the drain budget as its grace period, and the tier's scheduling.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Affinity, Container, PodSpec, PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Component, Owner};
use super::pod;
use crate::crd::GameFleetSpec;
use crate::drain;

/// What the gateway and engine Deployments differ in.
pub struct Tier<'a> {
    pub component: Component,
    pub name: String,
    pub replicas: i32,
    /// The tier's container; its pull policy, probes and hardening are the same for both
    /// tiers and set here.
    pub container: Container,
    /// Extra pods a rollout may start before old ones stop (maxUnavailable is always 0).
    pub max_surge: IntOrString,
    pub min_ready_seconds: Option<i32>,
    pub node_selector: &'a BTreeMap<String, String>,
    pub tolerations: &'a [Toleration],
    pub affinity: &'a Option<Affinity>,
}

/// The tier's Deployment: its pods run `tier.container` alone.
pub fn build(spec: &GameFleetSpec, owner: &Owner, tier: Tier<'_>) -> Deployment {
    let component = Some(tier.component);
    let container = Container {
        image_pull_policy: Some(spec.gateway.image_pull_policy.as_str().into()),
        readiness_probe: Some(pod::readiness_probe()),
        liveness_probe: Some(pod::liveness_probe()),
        security_context: Some(pod::container_security_context()),
        ..tier.container
    };
    Deployment {
        metadata: owner.child_meta(tier.name, component),
        spec: DeploymentSpec {
            replicas: Some(tier.replicas),
            selector: LabelSelector {
                match_labels: Some(owner.selector(component)),
                ..Default::default()
            },
            min_ready_seconds: tier.min_ready_seconds,
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(tier.max_surge),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels(component)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(
                        drain::termination_grace_period_seconds(&spec.drain),
                    ),
                    security_context: Some(pod::pod_security_context()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: (!tier.node_selector.is_empty())
                        .then(|| tier.node_selector.clone()),
                    tolerations: (!tier.tolerations.is_empty()).then(|| tier.tolerations.to_vec()),
                    affinity: tier.affinity.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}
