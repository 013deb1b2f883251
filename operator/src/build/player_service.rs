//! The Service players connect to, in front of the gateways.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{names, Component, Owner};
use super::pod::PLAYER_PORT_NAME;
use crate::crd::GameFleetSpec;

pub fn build(spec: &GameFleetSpec, owner: &Owner) -> Service {
    let svc = &spec.gateway.service;
    let mut metadata =
        owner.child_meta(names::player_service(&owner.name), Some(Component::Gateway));
    if !svc.annotations.is_empty() {
        metadata.annotations = Some(svc.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(svc.type_.as_str().into()),
            selector: Some(owner.selector(Some(Component::Gateway))),
            ports: Some(vec![ServicePort {
                name: Some(PLAYER_PORT_NAME.into()),
                port: svc.port,
                target_port: Some(IntOrString::String(PLAYER_PORT_NAME.into())),
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::crd::ServiceType;
    use crate::test_support::{fleet, spec};

    #[test]
    fn defaults() {
        let s = build(&spec(), &Owner::of(&fleet()).unwrap());
        assert_eq!(s.metadata.name.as_deref(), Some("dice-players"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("games"));
        assert_eq!(s.metadata.annotations, None);
        assert_eq!(
            s.metadata.owner_references.as_ref().unwrap()[0].name,
            "dice"
        );
        let sp = s.spec.unwrap();
        assert_eq!(sp.type_.as_deref(), Some("ClusterIP"));
        let sel = sp.selector.unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "gateway");
        assert_eq!(sel["app.kubernetes.io/instance"], "dice");
        let ports = sp.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("player"));
        assert_eq!(ports[0].port, 80);
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("player".into()))
        );
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn type_port_and_annotations_from_spec() {
        let mut sp = spec();
        sp.gateway.service.type_ = ServiceType::LoadBalancer;
        sp.gateway.service.port = 443;
        sp.gateway.service.annotations = BTreeMap::from([(
            "service.beta.kubernetes.io/aws-load-balancer-type".to_string(),
            "nlb".to_string(),
        )]);
        let s = build(&sp, &Owner::of(&fleet()).unwrap());
        assert_eq!(
            s.metadata.annotations,
            Some(sp.gateway.service.annotations.clone())
        );
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ports.unwrap()[0].port, 443);
    }
}
