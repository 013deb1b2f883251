//! The real reconciler (kube-runtime Controller, leader election on) against the simulated
//! cluster, with the gameserver and Redis running as pods. One cluster and one operator for the
//! whole life of a fleet, to keep the suite lean; each step waits with a bounded timeout.
//! At the end, the requests the operator made are compared with the chart's RBAC rules.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{prepare, start_operator, start_operator_in, wait_for};
use gamefleet_operator::crd::GameFleet;
use gamefleet_operator::rbac;
use gamefleet_operator::status::{self, DEGRADED, READY};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "games";
const OPERATOR: &str = "operator-0";
const TEST: &str = "controller-test";

fn fleet(name: &str, gateway_replicas: i32, extra_gateway: Value) -> Value {
    let mut gateway = json!({
        "image": "ghcr.io/gamefleet/gameserver:test",
        "replicas": gateway_replicas,
        "minReadySeconds": 0,
    });
    for (k, v) in extra_gateway.as_object().cloned().unwrap_or_default() {
        gateway[k] = v;
    }
    json!({
        "apiVersion": "gamefleet.dev/v1alpha1",
        "kind": "GameFleet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "gateway": gateway,
            "engine": {"replicas": 1},
            "rooms": {"bettingWindowMs": 500, "roundPauseMs": 100},
            "redis": {"urlSecretRef": {"name": "dice-secrets", "key": "redis-url"}},
            "auth": {"jwtSecretRef": {"name": "dice-secrets", "key": "jwt-secret"}},
            "drain": {"timeoutSeconds": 2, "reconnectSpreadSeconds": 1},
        }
    })
}

async fn apply_fleet(fleets: &Api<GameFleet>, obj: &Value) -> GameFleet {
    let name = obj["metadata"]["name"].as_str().unwrap();
    fleets
        .patch(name, &PatchParams::apply(TEST).force(), &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("apply GameFleet {name}: {e}"))
}

fn cond(f: &GameFleet, type_: &str) -> Option<(String, String, String)> {
    let s = f.status.as_ref()?;
    status::find(s, type_).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn controlled_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "GameFleet")
}

async fn events_of(client: &kube::Client, fleet: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(fleet))
        .collect()
}

fn has_event(events: &[Event], type_: &str, reason: &str, note_part: &str) -> bool {
    events.iter().any(|e| {
        e.type_.as_deref() == Some(type_)
            && e.reason.as_deref() == Some(reason)
            && e.note.as_deref().is_some_and(|n| n.contains(note_part))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_lifecycle_with_the_real_reconciler() {
    let started = Instant::now();
    let cluster = common::cluster().await;
    let client = cluster.client_as(TEST).await.unwrap();
    prepare(&client, &[NS]).await;
    common::install_redis_and_secret(
        &client,
        NS,
        "dice-secrets",
        &[("jwt-secret", "controller-test-secret-of-at-least-32-bytes")],
    )
    .await;
    let operator = start_operator(
        &cluster,
        OPERATOR,
        Some((Duration::from_secs(4), Duration::from_secs(1))),
    )
    .await;

    let fleets: Api<GameFleet> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let long = Duration::from_secs(60);
    let short = Duration::from_secs(15);

    // 1. Apply → every object created, owned by the fleet; Ready once the pods are.
    let dice = apply_fleet(&fleets, &fleet("dice", 1, json!({}))).await;
    let uid = dice.uid().unwrap();
    wait_for(&cluster, NS, long, "fleet dice Ready=True", || async {
        let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
        match cond(&f, READY) {
            Some((s, _, _)) if s == "True" => Ok(()),
            c => Err(format!("Ready {c:?}")),
        }
    })
    .await;
    for name in ["dice-gateway", "dice-engine"] {
        let d = deployments.get(name).await.unwrap();
        assert!(
            controlled_by(&d.metadata, &uid),
            "{name} owned by the fleet"
        );
    }
    for name in ["dice-players", "dice-metrics"] {
        let s = services.get(name).await.unwrap();
        assert!(
            controlled_by(&s.metadata, &uid),
            "{name} owned by the fleet"
        );
    }
    let pdb = pdbs.get("dice-gateway").await.unwrap();
    assert!(controlled_by(&pdb.metadata, &uid));
    let f = fleets.get("dice").await.unwrap();
    let st = f.status.clone().unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.gateways_ready.as_deref(), Some("1/1"));
    assert_eq!(st.engines_ready.as_deref(), Some("1/1"));
    assert_eq!(cond(&f, DEGRADED).unwrap().0, "False");
    let ready_at = started.elapsed();

    // 2. Edit the spec → objects updated, observedGeneration follows, Ready again at 2/2. The
    // PDB is no longer asked for → deleted.
    let edited = fleet(
        "dice",
        2,
        json!({"service": {"port": 8081}, "podDisruptionBudget": {"enabled": false}}),
    );
    let gen = apply_fleet(&fleets, &edited)
        .await
        .metadata
        .generation
        .unwrap();
    assert_eq!(gen, 2);
    wait_for(
        &cluster,
        NS,
        long,
        "observedGeneration 2 and Ready 2/2",
        || async {
            let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
            let s = f.status.clone().unwrap_or_default();
            let ready = cond(&f, READY).map(|c| c.0);
            if s.observed_generation == Some(2)
                && s.gateways_ready.as_deref() == Some("2/2")
                && ready.as_deref() == Some("True")
            {
                Ok(())
            } else {
                Err(format!(
                    "observedGeneration {:?}, gateways {:?}, Ready {ready:?}",
                    s.observed_generation, s.gateways_ready
                ))
            }
        },
    )
    .await;
    assert_eq!(
        deployments.get("dice-gateway").await.unwrap().spec.replicas,
        Some(2)
    );
    let port = services
        .get("dice-players")
        .await
        .unwrap()
        .spec
        .unwrap()
        .ports
        .unwrap()[0]
        .port;
    assert_eq!(port, 8081);
    wait_for(&cluster, NS, short, "the PDB deleted", || async {
        match pdbs.get_opt("dice-gateway").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // 3. Delete owned objects → recreated (new uid).
    let old_svc = services.get("dice-players").await.unwrap().uid().unwrap();
    let old_engine = deployments.get("dice-engine").await.unwrap().uid().unwrap();
    services
        .delete("dice-players", &DeleteParams::default())
        .await
        .unwrap();
    deployments
        .delete("dice-engine", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        &cluster,
        NS,
        short,
        "dice-players and dice-engine recreated",
        || async {
            let s = services
                .get_opt("dice-players")
                .await
                .map_err(|e| e.to_string())?;
            let d = deployments
                .get_opt("dice-engine")
                .await
                .map_err(|e| e.to_string())?;
            match (s, d) {
                (Some(s), Some(d))
                    if s.uid() != Some(old_svc.clone()) && d.uid() != Some(old_engine.clone()) =>
                {
                    Ok(())
                }
                (s, d) => Err(format!(
                    "service uid {:?}, engine uid {:?}",
                    s.and_then(|s| s.uid()),
                    d.and_then(|d| d.uid())
                )),
            }
        },
    )
    .await;

    // 4. Objects the fleet controls but no longer asks for (e.g. left by an older operator
    // version) are deleted.
    let owner = dice.controller_owner_ref(&()).unwrap();
    let orphan_meta = json!({
        "name": "dice-old",
        "labels": {"app.kubernetes.io/instance": "dice", "app.kubernetes.io/managed-by": "gamefleet-operator"},
        "ownerReferences": [owner],
    });
    let orphan_deploy: Deployment = serde_json::from_value(json!({
        "metadata": orphan_meta,
        "spec": {"replicas": 0, "selector": {"matchLabels": {"x": "old"}},
                 "template": {"metadata": {"labels": {"x": "old"}},
                              "spec": {"containers": [{"name": "c", "image": "example.com/none:1"}]}}}
    }))
    .unwrap();
    let orphan_svc: Service = serde_json::from_value(json!({
        "metadata": orphan_meta, "spec": {"ports": [{"port": 1}], "selector": {"x": "old"}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &orphan_deploy)
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &orphan_svc)
        .await
        .unwrap();
    wait_for(&cluster, NS, short, "orphans dice-old deleted", || async {
        let d = deployments
            .get_opt("dice-old")
            .await
            .map_err(|e| e.to_string())?;
        let s = services
            .get_opt("dice-old")
            .await
            .map_err(|e| e.to_string())?;
        if d.is_none() && s.is_none() {
            Ok(())
        } else {
            Err(format!(
                "deployment {} service {}",
                d.is_some(),
                s.is_some()
            ))
        }
    })
    .await;

    // 5. A spec the schema accepts but the operator cannot use → Degraded + a Warning event
    // naming the field; fixing one field and breaking another names the new one. The operator
    // keeps running and keeps reconciling the other fleet.
    let reconciles_before = operator.reconciles();
    apply_fleet(
        &fleets,
        &fleet("broken", 1, json!({"playerPort": 9090, "adminPort": 9090})),
    )
    .await;
    wait_for(
        &cluster,
        NS,
        short,
        "fleet broken Degraded naming gateway.adminPort",
        || async {
            let f = fleets.get("broken").await.map_err(|e| e.to_string())?;
            match cond(&f, DEGRADED) {
                Some((s, r, m))
                    if s == "True"
                        && r == "InvalidSpec"
                        && m.contains("spec.gateway.adminPort") =>
                {
                    Ok(())
                }
                c => Err(format!("Degraded {c:?}")),
            }
        },
    )
    .await;
    wait_for(
        &cluster,
        NS,
        short,
        "a Warning event naming spec.gateway.adminPort",
        || async {
            let ev = events_of(&client, "broken").await;
            has_event(&ev, "Warning", "InvalidSpec", "spec.gateway.adminPort")
                .then_some(())
                .ok_or(format!(
                    "{:?}",
                    ev.iter().map(|e| &e.note).collect::<Vec<_>>()
                ))
        },
    )
    .await;
    apply_fleet(
        &fleets,
        &fleet(
            "broken",
            1,
            json!({"image": "ghcr.io/gamefleet/gameserver :test"}),
        ),
    )
    .await;
    wait_for(
        &cluster,
        NS,
        short,
        "a Warning event naming spec.gateway.image",
        || async {
            let ev = events_of(&client, "broken").await;
            has_event(&ev, "Warning", "InvalidSpec", "spec.gateway.image")
                .then_some(())
                .ok_or(format!(
                    "{:?}",
                    ev.iter().map(|e| &e.note).collect::<Vec<_>>()
                ))
        },
    )
    .await;
    assert!(
        deployments
            .get_opt("broken-gateway")
            .await
            .unwrap()
            .is_none(),
        "nothing is deployed for an invalid fleet"
    );
    // Meanwhile the valid fleet is still reconciled.
    apply_fleet(
        &fleets,
        &fleet("dice", 1, json!({"podDisruptionBudget": {"enabled": true}})),
    )
    .await;
    wait_for(
        &cluster,
        NS,
        long,
        "dice observedGeneration 3 with its PDB back",
        || async {
            let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
            let og = f.status.as_ref().and_then(|s| s.observed_generation);
            let pdb = pdbs
                .get_opt("dice-gateway")
                .await
                .map_err(|e| e.to_string())?;
            if og == Some(3) && pdb.is_some() {
                Ok(())
            } else {
                Err(format!("observedGeneration {og:?}, pdb {}", pdb.is_some()))
            }
        },
    )
    .await;
    // A rollout (new gateway image): Progressing says RollingOut, then RolloutComplete, and
    // events mark its start and finish.
    apply_fleet(
        &fleets,
        &fleet(
            "dice",
            1,
            json!({"image": "ghcr.io/gamefleet/gameserver:test-2", "podDisruptionBudget": {"enabled": true}}),
        ),
    )
    .await;
    wait_for(&cluster, NS, long, "rollout of generation 4 complete", || async {
        let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
        let og = f.status.as_ref().and_then(|s| s.observed_generation);
        let p = cond(&f, status::PROGRESSING);
        let ev = events_of(&client, "dice").await;
        let finished = has_event(&ev, "Normal", "RolloutFinished", "Rollout finished");
        match p {
            Some((s, r, _)) if og == Some(4) && s == "False" && r == status::ROLLOUT_COMPLETE && finished => Ok(()),
            p => Err(format!("observedGeneration {og:?}, Progressing {p:?}, RolloutFinished event {finished}")),
        }
    })
    .await;
    let ev = events_of(&client, "dice").await;
    assert!(
        has_event(&ev, "Normal", "RolloutStarted", "Rollout started"),
        "{:?}",
        ev.iter().map(|e| e.note.clone()).collect::<Vec<_>>()
    );
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=gateway"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec.and_then(|s| s.containers[0].image.clone()))
        .collect();
    assert_eq!(
        images,
        vec!["ghcr.io/gamefleet/gameserver:test-2".to_string()]
    );

    // No hot loop on the invalid fleet: it waits for a change.
    let settled = operator.reconciles();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = operator.reconciles() - settled;
    assert!(
        idle <= 4,
        "the operator reconciled {idle} times in 2 s with nothing changing (hot loop?)"
    );
    assert!(operator.reconciles() > reconciles_before);
    assert!(operator.is_running(), "the operator is still running");

    // Events tell the story, each with its own note.
    let ev = events_of(&client, "dice").await;
    for (reason, note) in [
        ("Created", "Created Deployment dice-gateway"),
        ("Created", "Created Deployment dice-engine"),
        ("Created", "Created Service dice-players"),
        ("Created", "Created PodDisruptionBudget dice-gateway"),
        ("Updated", "Updated Deployment dice-gateway"),
        ("Scaled", "Scaled gateway from 1 to 2 (spec)"),
        ("Deleted", "Deleted PodDisruptionBudget dice-gateway"),
        ("Deleted", "Deleted Deployment dice-old"),
    ] {
        assert!(
            has_event(&ev, "Normal", reason, note),
            "no {reason} event {note:?} among {:?}",
            ev.iter().map(|e| e.note.clone()).collect::<Vec<_>>()
        );
    }

    // 6. Delete the fleets → everything garbage-collected, pods included.
    fleets
        .delete("dice", &DeleteParams::background())
        .await
        .unwrap();
    fleets
        .delete("broken", &DeleteParams::background())
        .await
        .unwrap();
    let sel = "app.kubernetes.io/managed-by=gamefleet-operator";
    wait_for(
        &cluster,
        NS,
        long,
        "every owned object and pod gone",
        || async {
            let lp = ListParams::default().labels(sel);
            let d = deployments
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let s = services
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let p = pdbs.list(&lp).await.map_err(|e| e.to_string())?.items.len();
            let gp = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=gameserver"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if d + s + p + gp == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{d} deployments, {s} services, {p} PDBs, {gp} pods"
                ))
            }
        },
    )
    .await;

    operator.stop().await;

    // 7. RBAC: the chart's rules (rbac.rs, kept identical to the chart by its unit tests) are
    // exactly what the operator used: nothing missing, nothing unused.
    let used: BTreeSet<(String, String, String)> = cluster
        .audit()
        .of_user(OPERATOR)
        .into_iter()
        .map(|k| (k.group, k.resource, k.verb))
        .collect();
    let granted: BTreeSet<(String, String, String)> = rbac::CLUSTER
        .iter()
        .chain(rbac::LEADER_ELECTION)
        .map(|p| {
            (
                p.group.to_string(),
                p.resource.to_string(),
                p.verb.to_string(),
            )
        })
        .collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "RBAC drift: used but not granted {missing:?}; granted but never used {unused:?}"
    );
    // Leader election stays in the operator's namespace.
    for k in cluster.audit().of_user(OPERATOR) {
        if k.group == "coordination.k8s.io" {
            assert_eq!(k.namespace, "default", "{k:?}");
        }
    }
    cluster.shutdown().await;
    eprintln!(
        "controller lifecycle: first Ready after {ready_at:?}, total {:?}",
        started.elapsed()
    );
}

/// With a watch namespace (the chart's `watchNamespace`, which then grants the rules with a Role
/// in that namespace only) every request the operator makes stays in that namespace, apart from
/// the leader-election Lease in its own namespace: no cluster-wide list, watch, get or patch. It
/// reads Secrets only with `get`, by the names its fleets reference, and ignores fleets elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespace_keeps_every_request_in_it() {
    const OTHER: &str = "elsewhere";
    const LEASE_NS: &str = "default";
    let cluster = common::cluster().await;
    let client = cluster.client_as(TEST).await.unwrap();
    prepare(&client, &[NS, OTHER]).await;
    common::install_redis_and_secret(
        &client,
        NS,
        "dice-secrets",
        &[("jwt-secret", "controller-test-secret-of-at-least-32-bytes")],
    )
    .await;
    // Secrets no fleet names, in the watched namespace and in another: never read.
    for ns in [NS, OTHER] {
        let unrelated: Secret = serde_json::from_value(json!({
            "metadata": {"name": "unrelated"},
            "stringData": {"jwt-secret": "x", "redis-url": "redis://127.0.0.1:1"},
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &unrelated)
            .await
            .unwrap();
    }
    let operator = start_operator_in(
        &cluster,
        OPERATOR,
        Some((Duration::from_secs(4), Duration::from_secs(1))),
        NS,
    )
    .await;
    let fleets: Api<GameFleet> = Api::namespaced(client.clone(), NS);
    let other_fleets: Api<GameFleet> = Api::namespaced(client.clone(), OTHER);
    let long = Duration::from_secs(60);
    let short = Duration::from_secs(15);

    // A fleet in the watched namespace is reconciled to Ready; one naming a missing Secret is
    // Degraded (a `get` of that name, answered 404).
    apply_fleet(&fleets, &fleet("dice", 1, json!({}))).await;
    let mut missing = fleet("nosecret", 1, json!({}));
    missing["spec"]["auth"]["jwtSecretRef"]["name"] = json!("missing-secrets");
    apply_fleet(&fleets, &missing).await;
    // A fleet in another namespace (with its own valid-looking Secret) is not the operator's.
    let mut elsewhere = fleet("elsewhere", 1, json!({}));
    elsewhere["metadata"]["namespace"] = json!(OTHER);
    elsewhere["spec"]["auth"]["jwtSecretRef"]["name"] = json!("unrelated");
    elsewhere["spec"]["redis"]["urlSecretRef"]["name"] = json!("unrelated");
    apply_fleet(&other_fleets, &elsewhere).await;

    wait_for(&cluster, NS, long, "fleet dice Ready=True", || async {
        let f = fleets.get("dice").await.map_err(|e| e.to_string())?;
        match cond(&f, READY) {
            Some((s, _, _)) if s == "True" => Ok(()),
            c => Err(format!("Ready {c:?}")),
        }
    })
    .await;
    wait_for(
        &cluster,
        NS,
        short,
        "fleet nosecret Degraded with SecretNotFound",
        || async {
            let f = fleets.get("nosecret").await.map_err(|e| e.to_string())?;
            match cond(&f, DEGRADED) {
                Some((s, r, m))
                    if s == "True" && r == "SecretNotFound" && m.contains("missing-secrets") =>
                {
                    Ok(())
                }
                c => Err(format!("Degraded {c:?}")),
            }
        },
    )
    .await;
    let f = other_fleets.get("elsewhere").await.unwrap();
    assert!(
        f.status.is_none(),
        "a fleet outside the watch namespace got a status: {:?}",
        f.status
    );
    let foreign = Api::<Deployment>::namespaced(client.clone(), OTHER)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        foreign.items.is_empty(),
        "nothing is deployed outside the watch namespace"
    );

    operator.stop().await;

    let audited = cluster.audit().of_user(OPERATOR);
    assert!(!audited.is_empty(), "the operator's requests were audited");
    // Every request is in the watched namespace, or the Lease in the operator's namespace.
    let outside: Vec<_> = audited
        .iter()
        .filter(|k| {
            let lease = k.group == "coordination.k8s.io" && k.resource == "leases";
            if lease {
                k.namespace != LEASE_NS
            } else {
                k.namespace != NS
            }
        })
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside {NS} (cluster-wide when the namespace is empty): {outside:#?}"
    );
    // The watches and lists the Role must grant in the namespace were made there.
    for (group, resource) in [
        ("gamefleet.dev", "gamefleets"),
        ("apps", "deployments"),
        ("", "services"),
        ("policy", "poddisruptionbudgets"),
    ] {
        for verb in ["list", "watch"] {
            assert!(
                audited.iter().any(|k| k.group == group
                    && k.resource == resource
                    && k.verb == verb
                    && k.namespace == NS),
                "no {verb} of {resource} in {NS}: {audited:#?}"
            );
        }
    }
    // Secrets: only `get` by name, of the Secrets the watched fleets reference.
    let secrets: BTreeSet<(String, String, String)> = audited
        .iter()
        .filter(|k| k.group.is_empty() && k.resource.starts_with("secrets"))
        .map(|k| (k.verb.clone(), k.namespace.clone(), k.name.clone()))
        .collect();
    let want: BTreeSet<(String, String, String)> = ["dice-secrets", "missing-secrets"]
        .into_iter()
        .map(|name| ("get".to_string(), NS.to_string(), name.to_string()))
        .collect();
    assert_eq!(secrets, want, "secret requests (verb, namespace, name)");
    // And nothing beyond the rules the chart grants (the Role has the same rules as the
    // ClusterRole: rbac::CLUSTER + rbac::AUTOSCALER, the Lease Role rbac::LEADER_ELECTION).
    let granted: BTreeSet<(&str, &str, &str)> = rbac::CLUSTER
        .iter()
        .chain(rbac::AUTOSCALER)
        .chain(rbac::LEADER_ELECTION)
        .map(|p| (p.group, p.resource, p.verb))
        .collect();
    let ungranted: Vec<_> = audited
        .iter()
        .filter(|k| !granted.contains(&(k.group.as_str(), k.resource.as_str(), k.verb.as_str())))
        .collect();
    assert!(ungranted.is_empty(), "used but not granted: {ungranted:#?}");
    cluster.shutdown().await;
}
