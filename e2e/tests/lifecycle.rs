//! Process lifecycle: restarts, and every process dying with the simulator.

mod common;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::time::Duration;

async fn connectable(addr: &str) -> bool {
    tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

fn testpod(name: &str, policy: &str, exit_after_ms: Option<u64>) -> Pod {
    let mut env = vec![
        json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    if let Some(ms) = exit_after_ms {
        env.push(json!({"name": "EXIT_AFTER_MS", "value": ms.to_string()}));
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "kubesim-testpod", "env": env}]}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_and_exit_codes() {
    let c = common::cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await.unwrap());
    pods.create(
        &PostParams::default(),
        &testpod("always", "Always", Some(100)),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &testpod("never", "Never", Some(100)),
    )
    .await
    .unwrap();
    common::eventually(
        Duration::from_secs(20),
        "restarts and a Failed pod",
        || async {
            let always = pods.get("always").await.unwrap().status?;
            let restarts = always.container_statuses?.first()?.restart_count;
            let never = pods.get("never").await.unwrap().status?;
            let code = never
                .container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .terminated
                .as_ref()?
                .exit_code;
            (restarts >= 2 && never.phase.as_deref() == Some("Failed") && code == 3).then_some(())
        },
    )
    .await;
    assert!(
        c.pod_logs("default", "always")
            .matches("exiting as asked")
            .count()
            >= 2
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cluster_kills_pod_processes() {
    let c = common::cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await.unwrap());
    pods.create(&PostParams::default(), &testpod("p", "Always", None))
        .await
        .unwrap();
    let addr = common::eventually(Duration::from_secs(20), "pod serving", || async {
        let ip = pods.get("p").await.unwrap().status?.pod_ip?;
        let addr = format!("{ip}:8080");
        connectable(&addr).await.then_some(addr)
    })
    .await;
    drop(c);
    common::eventually(Duration::from_secs(5), "pod process gone", || async {
        (!connectable(&addr).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_up_serves_until_sigterm() {
    let dir = std::env::temp_dir().join(format!("kubesim-up-test-{}", std::process::id()));
    let kc = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["up", "--kubeconfig", kc.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::eventually(Duration::from_secs(10), "kubeconfig written", || async {
        kc.is_file().then_some(())
    })
    .await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kc).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    let addr = common::eventually(
        Duration::from_secs(20),
        "API up and pod serving",
        || async {
            let _ = pods
                .create(&PostParams::default(), &testpod("up", "Always", None))
                .await;
            let ip = pods.get("up").await.ok()?.status?.pod_ip?;
            let addr = format!("{ip}:8080");
            connectable(&addr).await.then_some(addr)
        },
    )
    .await;
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id().unwrap() as i32, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    // SIGKILL is delivered asynchronously: the pod process is gone shortly after, not at once.
    common::eventually(
        Duration::from_secs(5),
        "the pod process to die with the simulator",
        || async { (!connectable(&addr).await).then_some(()) },
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);
}
