//! Controllers, kubelet and Services with real processes.

mod common;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

async fn apply_web(c: &kubesim::Cluster, name: &str, replicas: u32, tag: &str) {
    let client = c.client().await.unwrap();
    for doc in common::manifests::web(name, replicas, tag, "").split("\n---\n") {
        let v: serde_json::Value = serde_yaml::from_str(doc).unwrap();
        let kind = v["kind"].as_str().unwrap().to_string();
        let pp = PatchParams::apply("test").force();
        if kind == "Deployment" {
            Api::<Deployment>::default_namespaced(client.clone())
                .patch(name, &pp, &Patch::Apply(&v))
                .await
                .unwrap();
        } else {
            Api::<Service>::default_namespaced(client.clone())
                .patch(name, &pp, &Patch::Apply(&v))
                .await
                .unwrap();
        }
    }
}

async fn ready_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_real_processes_step_by_step() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    apply_web(&c, "roll", 3, "v1").await;
    // Wait as `kubectl rollout status` does: the Deployment itself reports
    // three available replicas, not only the pods.
    common::eventually(Duration::from_secs(20), "v1 rolled out", || async {
        let d = deploys.get("roll").await.ok()?;
        let st = d.status?;
        let ready = ready_pods(&pods, "roll").await.len();
        (ready == 3 && st.available_replicas == Some(3) && st.updated_replicas == Some(3))
            .then_some(())
    })
    .await;
    let d = deploys.get("roll").await.unwrap();
    assert_eq!(
        d.status.as_ref().unwrap().observed_generation,
        d.metadata.generation
    );

    // Change the image; with maxSurge 1 / maxUnavailable 0, never fewer than 3
    // ready pods and never more than 4 pods in total.
    apply_web(&c, "roll", 3, "v2").await;
    let mut max_total = 0;
    let mut min_ready = usize::MAX;
    let mut seen_mixed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout to v2 timed out"
        );
        let all = pods
            .list(&ListParams::default().labels("app=roll"))
            .await
            .unwrap()
            .items;
        let ready = ready_pods(&pods, "roll").await;
        let images: BTreeSet<String> = ready
            .iter()
            .map(|p| {
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap()
            })
            .collect();
        max_total = max_total.max(
            all.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count(),
        );
        min_ready = min_ready.min(ready.len());
        seen_mixed |= images.len() == 2;
        let st = deploys.get("roll").await.unwrap().status.unwrap();
        let done = st.updated_replicas == Some(3)
            && st.replicas == Some(3)
            && st.available_replicas == Some(3)
            && images.len() == 1
            && images.iter().next().unwrap().ends_with(":v2");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(max_total <= 4, "surge exceeded: {max_total} pods");
    assert!(min_ready >= 3, "availability dropped to {min_ready}");
    assert!(seen_mixed, "never observed old and new pods together");
    let rs: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    assert_eq!(
        rs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // The Service proxies to ready pods only.
    let svc = Api::<Service>::default_namespaced(client.clone())
        .get("roll")
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    let names: BTreeSet<String> = ready_pods(&pods, "roll")
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    for _ in 0..6 {
        let body = http_get(&format!("{ip}:80"), "/").await;
        assert!(names.contains(&body), "{body} not among {names:?}");
    }
    // Logs were captured per pod.
    let first = names.iter().next().unwrap();
    assert!(
        c.pod_logs("default", first).contains("listening on"),
        "{}",
        c.pod_logs("default", first)
    );
    c.shutdown().await;
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_removes_lowest_deletion_cost_first() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    apply_web(&c, "cost", 4, "v1").await;
    let ready = common::eventually(Duration::from_secs(20), "4 ready pods", || async {
        let r = ready_pods(&pods, "cost").await;
        (r.len() == 4).then_some(r)
    })
    .await;
    let mut names: Vec<String> = ready
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    names.sort();
    // Costs: names[2] cheapest, names[0] next; those two must go.
    for (n, cost) in names.iter().zip(["-10", "500", "-100", "300"]) {
        pods.patch(n, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}})))
            .await
            .unwrap();
    }
    deploys
        .patch_scale(
            "cost",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let left = common::eventually(Duration::from_secs(20), "2 pods left", || async {
        let all = pods
            .list(&ListParams::default().labels("app=cost"))
            .await
            .unwrap()
            .items;
        let live: BTreeSet<String> = all
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.unwrap())
            .collect();
        (live.len() == 2).then_some(live)
    })
    .await;
    assert_eq!(left, [names[1].clone(), names[3].clone()].into());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_background_and_foreground() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let oref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "blockOwnerDeletion": true}]);
    for n in ["dep1", "dep2"] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n, "ownerReferences": oref}}))
                .unwrap(),
        )
        .await
        .unwrap();
    }
    // Foreground: the owner stays (with a finalizer) until dependents are gone.
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let o = cms.get("owner").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(o.metadata.finalizers.unwrap(), ["foregroundDeletion"]);
    common::eventually(Duration::from_secs(10), "foreground deletion", || async {
        (cms.get_opt("owner").await.unwrap().is_none()
            && cms.get_opt("dep1").await.unwrap().is_none())
        .then_some(())
    })
    .await;

    // Background: a Deployment's ReplicaSets and pods follow it.
    apply_web(&c, "gc", 1, "v1").await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    common::eventually(Duration::from_secs(20), "1 ready pod", || async {
        (ready_pods(&pods, "gc").await.len() == 1).then_some(())
    })
    .await;
    Api::<Deployment>::default_namespaced(client.clone())
        .delete("gc", &DeleteParams::background())
        .await
        .unwrap();
    let rs: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    common::eventually(
        Duration::from_secs(20),
        "ReplicaSets and pods collected",
        || async {
            let no_rs = rs
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty();
            let no_pods = pods
                .list(&ListParams::default().labels("app=gc"))
                .await
                .unwrap()
                .items
                .is_empty();
            (no_rs && no_pods).then_some(())
        },
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_stops_routing_to_a_pod_that_turns_unready() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    apply_web(&c, "route", 2, "v1").await;
    let ready = common::eventually(Duration::from_secs(20), "2 ready pods", || async {
        let r = ready_pods(&pods, "route").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let svc = Api::<Service>::default_namespaced(client.clone())
        .get("route")
        .await
        .unwrap();
    let addr = format!("{}:80", svc.spec.unwrap().cluster_ip.unwrap());
    let (sick, healthy) = (&ready[0], &ready[1]);
    let sick_ip = sick.status.as_ref().unwrap().pod_ip.clone().unwrap();
    http_get(&format!("{sick_ip}:8080"), "/fail-ready").await;
    common::eventually(Duration::from_secs(10), "pod marked not ready", || async {
        (ready_pods(&pods, "route").await.len() == 1).then_some(())
    })
    .await;
    let healthy_name = healthy.metadata.name.clone().unwrap();
    // Endpoints follow within a controller pass; then every connection lands on the healthy pod.
    common::eventually(Duration::from_secs(5), "endpoints updated", || async {
        let mut all = true;
        for _ in 0..4 {
            all &= http_get(&addr, "/").await == healthy_name;
        }
        all.then_some(())
    })
    .await;
    for _ in 0..10 {
        assert_eq!(http_get(&addr, "/").await, healthy_name);
    }
    c.shutdown().await;
}

/// `kubectl <args>` against `c`; its stdout, or a panic with its stderr.
async fn kubectl(c: &kubesim::Cluster, kubectl: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig_path())
        .env("HOME", c.kubeconfig_path().parent().unwrap())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The Deployment of `web` without `replicas` (left to `kubectl scale`), `FLAVOUR` in its pods.
fn flavoured(name: &str, flavour: &str) -> String {
    let extra = format!("        - {{name: FLAVOUR, value: \"{flavour}\"}}\n");
    let all = common::manifests::web(name, 0, "v1", &extra);
    let deploy = all.split("\n---\n").next().unwrap_or_default();
    deploy
        .lines()
        .filter(|l| l.trim() != "replicas: 0")
        .collect::<Vec<_>>()
        .join("\n")
}

/// `kubectl scale`, then a server-side apply that changes only one env value of the pod
/// template, then `kubectl rollout status`: once it reports the rollout done, every pod that
/// is not being deleted runs the new template, and there are as many as the scale asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_after_scale_and_template_apply_waits_for_the_new_pods() {
    let Some(kc) = common::install::client_tool("kubectl") else {
        return;
    };
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let dir = c.kubeconfig_path().parent().unwrap().to_path_buf();
    let apply = |flavour: &str| {
        let path = dir.join(format!("flavour-{flavour}.yaml"));
        std::fs::write(&path, flavoured("flavour", flavour)).unwrap();
        path.display().to_string()
    };
    let first = apply("f0");
    kubectl(&c, &kc, &["apply", "--server-side", "-f", &first]).await;
    kubectl(
        &c,
        &kc,
        &["rollout", "status", "deployment/flavour", "--timeout=60s"],
    )
    .await;
    for (round, replicas) in [3, 4, 2, 5].into_iter().enumerate() {
        let flavour = format!("f{}", round + 1);
        let file = apply(&flavour);
        kubectl(
            &c,
            &kc,
            &[
                "scale",
                "deployment/flavour",
                &format!("--replicas={replicas}"),
            ],
        )
        .await;
        kubectl(&c, &kc, &["apply", "--server-side", "-f", &file]).await;
        let out = kubectl(
            &c,
            &kc,
            &["rollout", "status", "deployment/flavour", "--timeout=60s"],
        )
        .await;
        assert!(out.contains("successfully rolled out"), "{out}");
        let all = pods
            .list(&ListParams::default().labels("app=flavour"))
            .await
            .unwrap()
            .items;
        let live: Vec<(String, String, bool)> = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let env = p.spec.as_ref().unwrap().containers[0]
                    .env
                    .clone()
                    .unwrap_or_default();
                let value = env
                    .iter()
                    .find(|e| e.name == "FLAVOUR")
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default();
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                (p.metadata.name.clone().unwrap(), value, ready)
            })
            .collect();
        // Pods being deleted may still run the old template, as in Kubernetes: the status
        // counts no terminating pod, so rollout status does not wait for them.
        let terminating = all.len() - live.len();
        eprintln!(
            "round {round}: {} pods run {flavour}, {terminating} terminating",
            live.len()
        );
        assert!(
            live.iter().all(|(_, v, _)| *v == flavour),
            "round {round}: rollout status said done, but not every pod runs {flavour}: {live:?}"
        );
        assert_eq!(live.len(), replicas, "round {round}: {live:?}");
        assert!(
            live.iter().all(|(_, _, ready)| *ready),
            "round {round}: rollout status said done before every new pod was ready: {live:?}"
        );
    }
    c.shutdown().await;
}
