//! Service names inside pods: a running process resolves `<svc>`, `<svc>.<ns>`,
//! `<svc>.<ns>.svc` and `<svc>.<ns>.svc.cluster.local` to the Service's cluster IP, follows
//! Services created and deleted after it started, and the host's `/etc/hosts` is untouched.

mod common;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const NAMES: &[&str] = &[
    "backend",
    "backend.default",
    "backend.default.svc",
    "backend.default.svc.cluster.local",
    "other",
    "other.elsewhere",
    "other.elsewhere.svc.cluster.local",
    "headless",
    "late",
];

/// The last complete round of lookups the pod printed: name -> address ("" = unresolved).
fn lookups(c: &kubesim::Cluster) -> Option<BTreeMap<String, String>> {
    let logs = c.pod_logs("default", "resolver");
    let mut rounds: Vec<&str> = logs.split("--\n").collect();
    rounds.pop(); // the round being printed
    let last = rounds.pop()?;
    Some(
        last.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, ip)| (n.to_string(), ip.trim().to_string()))
            .collect(),
    )
}

async fn service(client: &kube::Client, ns: &str, name: &str, headless: bool) -> String {
    let mut spec = json!({"ports": [{"port": 80}]});
    if headless {
        spec["clusterIP"] = json!("None");
    }
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_service_names_and_follow_service_changes() {
    let c = common::cluster().await;
    if !c.resolves_service_names() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true: kubesim needs mount namespaces (root) for Service names"
        );
        eprintln!("SKIPPED: no mount namespaces here (not root); pods get no Service names");
        return;
    }
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let client = c.client().await.unwrap();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).unwrap(),
        )
        .await
        .unwrap();
    let backend = service(&client, "default", "backend", false).await;
    let other = service(&client, "elsewhere", "other", false).await;
    service(&client, "default", "headless", true).await;

    let script = format!(
        "while true; do for n in {}; do echo \"$n=$(getent hosts $n | cut -d' ' -f1)\"; done; echo --; sleep 0.2; done",
        NAMES.join(" ")
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "resolver"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "sh", "image": "busybox",
            "command": ["sh", "-c", script]}]},
    }))
    .unwrap();
    Api::<Pod>::default_namespaced(client.clone())
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let first = common::eventually(Duration::from_secs(20), "lookups printed", || async {
        lookups(&c)
    })
    .await;
    for name in &NAMES[..4] {
        assert_eq!(first[*name], backend, "{name}: {first:?}");
    }
    assert_eq!(
        first["other"], "",
        "short names only in the pod's own namespace"
    );
    assert_eq!(first["other.elsewhere"], other, "{first:?}");
    assert_eq!(
        first["other.elsewhere.svc.cluster.local"], other,
        "{first:?}"
    );
    assert_eq!(first["headless"], "", "a headless Service has no address");
    assert_eq!(first["late"], "", "{first:?}");

    // A Service created after the process started resolves in it; a deleted one stops.
    let late = service(&client, "default", "late", false).await;
    Api::<Service>::default_namespaced(client.clone())
        .delete("backend", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(
        Duration::from_secs(10),
        "the running pod sees the new and the deleted Service",
        || async {
            let now = lookups(&c)?;
            (now["late"] == late && now["backend"].is_empty()).then_some(())
        },
    )
    .await;

    assert_eq!(
        std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        host_hosts,
        "the host's /etc/hosts is untouched"
    );
    c.shutdown().await;
}
