//! The metrics Service: headless, over every gateway and engine pod's admin port, so Prometheus
//! (or a ServiceMonitor) scrapes each pod rather than a random one behind a virtual IP.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{names, Owner};
use super::pod::ADMIN_PORT_NAME;
use crate::crd::GameFleetSpec;

/// Port name a ServiceMonitor selects.
pub const METRICS_PORT_NAME: &str = "metrics";

pub fn build(spec: &GameFleetSpec, owner: &Owner) -> Service {
    let mut metadata = owner.child_meta(names::metrics_service(&owner.name), None);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert("gamefleet.dev/metrics".into(), "true".into());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            // Both tiers: the selector leaves out the component label.
            selector: Some(owner.selector(None)),
            // Scrape pods that are up but not ready too (e.g. draining gateways).
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.into()),
                // Gateways and engines both default to 9090; the named target port follows each
                // pod's own admin port.
                port: spec.gateway.admin_port,
                target_port: Some(IntOrString::String(ADMIN_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fleet, spec};

    #[test]
    fn headless_over_both_tiers() {
        let s = build(&spec(), &Owner::of(&fleet()).unwrap());
        assert_eq!(s.metadata.name.as_deref(), Some("dice-metrics"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels["gamefleet.dev/metrics"], "true");
        assert_eq!(labels["app.kubernetes.io/instance"], "dice");
        assert!(!labels.contains_key("app.kubernetes.io/component"));
        let sp = s.spec.unwrap();
        assert_eq!(sp.cluster_ip.as_deref(), Some("None"));
        assert_eq!(sp.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(sp.publish_not_ready_addresses, Some(true));
        let sel = sp.selector.unwrap();
        assert_eq!(sel.len(), 2);
        assert!(!sel.contains_key("app.kubernetes.io/component"));
        let ports = sp.ports.unwrap();
        assert_eq!(ports[0].name.as_deref(), Some("metrics"));
        assert_eq!(ports[0].port, 9090);
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("admin".into()))
        );
    }
}
