//! Two operator replicas against the simulated cluster: only the Lease holder reconciles, and
//! the standby takes over within a bounded time when the leader dies without releasing it.

mod common;

use std::time::{Duration, Instant};

use common::{prepare, start_operator, wait_for};
use gamefleet_operator::crd::GameFleet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const NS: &str = "default";
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);

/// A fleet scaled to zero: reconciled like any other, without starting pods.
fn fleet(room_capacity: i32) -> serde_json::Value {
    json!({
        "apiVersion": "gamefleet.dev/v1alpha1",
        "kind": "GameFleet",
        "metadata": {"name": "ha", "namespace": NS},
        "spec": {
            "gateway": {"image": "example.com/gameserver:1", "replicas": 0},
            "engine": {"replicas": 0},
            "rooms": {"maxPlayersPerRoom": room_capacity},
            "redis": {"url": "redis://127.0.0.1:1"},
            "auth": {"jwtSecretRef": {"name": "ha-secrets", "key": "jwt"}},
        }
    })
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("gamefleet-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let started = Instant::now();
    let cluster = common::cluster().await;
    let client = cluster.client_as("test").await.unwrap();
    prepare(&client, &[]).await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "ha-secrets"}, "stringData": {"jwt": "x"}}),
    )
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let fleets: Api<GameFleet> = Api::namespaced(client.clone(), NS);
    let pp = PatchParams::apply("test").force();
    let bound = Duration::from_secs(10);

    let a = start_operator(&cluster, "op-a", Some((LEASE, RENEW))).await;
    wait_for(&cluster, NS, bound, "op-a to lead", || async {
        (a.is_leader() && holder(&leases).await.as_deref() == Some("op-a"))
            .then_some(())
            .ok_or("not yet".to_string())
    })
    .await;
    let b = start_operator(&cluster, "op-b", Some((LEASE, RENEW))).await;

    fleets
        .patch("ha", &pp, &Patch::Apply(fleet(10)))
        .await
        .unwrap();
    wait_for(
        &cluster,
        NS,
        bound,
        "the leader to reconcile generation 1",
        || async {
            let f = fleets.get("ha").await.map_err(|e| e.to_string())?;
            let og = f.status.and_then(|s| s.observed_generation);
            (og == Some(1))
                .then_some(())
                .ok_or(format!("observedGeneration {og:?}"))
        },
    )
    .await;
    // The standby had time to renew-check a few times; it never reconciled.
    tokio::time::sleep(RENEW * 2).await;
    assert!(a.reconciles() > 0, "the leader reconciled");
    assert_eq!(b.reconciles(), 0, "the standby must not reconcile");
    assert!(!b.is_leader());
    let events = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("gamefleet-operator"))
        .collect::<Vec<_>>();
    assert!(!events.is_empty(), "the leader recorded events");
    for e in &events {
        assert_eq!(e.reporting_instance.as_deref(), Some("op-a"), "{e:?}");
    }

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    a.kill();
    let killed = Instant::now();
    wait_for(
        &cluster,
        NS,
        LEASE + RENEW * 4,
        "op-b to take the Lease over",
        || async {
            (b.is_leader() && holder(&leases).await.as_deref() == Some("op-b"))
                .then_some(())
                .ok_or(format!("holder {:?}", holder(&leases).await))
        },
    )
    .await;
    let takeover = killed.elapsed();
    fleets
        .patch("ha", &pp, &Patch::Apply(fleet(20)))
        .await
        .unwrap();
    wait_for(
        &cluster,
        NS,
        bound,
        "the new leader to reconcile generation 2",
        || async {
            let f = fleets.get("ha").await.map_err(|e| e.to_string())?;
            let og = f.status.and_then(|s| s.observed_generation);
            (og == Some(2))
                .then_some(())
                .ok_or(format!("observedGeneration {og:?}"))
        },
    )
    .await;
    assert!(b.reconciles() > 0);
    let lease = leases
        .get("gamefleet-operator")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.lease_transitions, Some(1));

    // A clean stop hands the Lease back at once.
    b.stop().await;
    let after = holder(&leases).await;
    assert!(
        after.as_deref().unwrap_or("").is_empty(),
        "released, holder {after:?}"
    );
    cluster.shutdown().await;
    eprintln!(
        "leader election: takeover {takeover:?} after the leader died (lease {LEASE:?}), total {:?}",
        started.elapsed()
    );
}
