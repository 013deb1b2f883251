//! Real kubectl and helm against the simulated cluster.

mod common;

use std::path::Path;
use std::process::Command;

fn run(tool: &str, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = Command::new(common::tool(tool));
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap());
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_workflow() {
    let c = common::cluster().await;
    let kc = c.kubeconfig_path().to_path_buf();
    let k = move |args: Vec<&'static str>, stdin: Option<String>| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || run("kubectl", &kc, &args, stdin.as_deref()))
    };
    let manifest = common::manifests::web("web", 2, "1", "");
    let out = k(vec!["apply", "--server-side", "-f", "-"], Some(manifest))
        .await
        .unwrap();
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let out = k(
        vec!["rollout", "status", "deployment/web", "--timeout=30s"],
        None,
    )
    .await
    .unwrap();
    assert!(out.contains("successfully rolled out"), "{out}");

    let out = k(vec!["get", "deployments"], None).await.unwrap();
    assert!(out.contains("READY") && out.contains("2/2"), "{out}");
    let out = k(vec!["get", "pods", "-l", "app=web"], None).await.unwrap();
    assert_eq!(out.matches("Running").count(), 2, "{out}");
    let out = k(vec!["describe", "deployment", "web"], None)
        .await
        .unwrap();
    assert!(out.contains("ScalingReplicaSet"), "{out}");

    let out = k(vec!["scale", "deployment/web", "--replicas=3"], None)
        .await
        .unwrap();
    assert!(out.contains("scaled"), "{out}");
    k(
        vec![
            "wait",
            "--for=jsonpath={.status.readyReplicas}=3",
            "deployment/web",
            "--timeout=30s",
        ],
        None,
    )
    .await
    .unwrap();
    let out = k(vec!["get", "events"], None).await.unwrap();
    assert!(
        out.contains("SuccessfulCreate") && out.contains("Started"),
        "{out}"
    );

    // CRD printer columns through server-side tables.
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gizmos.example.com"},
      "spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"gizmos","kind":"Gizmo","shortNames":["gz"]},
      "versions":[{"name":"v1","served":true,"storage":true,
        "additionalPrinterColumns":[{"name":"Size","type":"string","jsonPath":".spec.size"}],
        "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"size":{"type":"string"}}}}}}}]}}"#;
    k(
        vec!["apply", "--server-side", "-f", "-"],
        Some(crd.to_string()),
    )
    .await
    .unwrap();
    let gz =
        "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g1\nspec:\n  size: large\n";
    k(
        vec!["apply", "--server-side", "-f", "-"],
        Some(gz.to_string()),
    )
    .await
    .unwrap();
    let out = k(vec!["get", "gz"], None).await.unwrap();
    assert!(out.contains("SIZE") && out.contains("large"), "{out}");

    let out = k(vec!["delete", "deployment", "web"], None).await.unwrap();
    assert!(out.contains("deleted"), "{out}");
    k(
        vec![
            "wait",
            "--for=delete",
            "pod",
            "-l",
            "app=web",
            "--timeout=30s",
        ],
        None,
    )
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_upgrade_uninstall() {
    let c = common::cluster().await;
    let kc = c.kubeconfig_path().to_path_buf();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart");
    let chart = chart.to_str().unwrap().to_string();
    let kc2 = kc.clone();
    tokio::task::spawn_blocking(move || {
        let out = run(
            "helm",
            &kc2,
            &["install", "demo", &chart, "--wait", "--timeout", "30s"],
            None,
        );
        assert!(out.contains("STATUS: deployed"), "{out}");
        let out = run(
            "kubectl",
            &kc2,
            &[
                "get",
                "configmap",
                "demo-cfg",
                "-o",
                "jsonpath={.data.greeting}",
            ],
            None,
        );
        assert_eq!(out, "hi");
        run(
            "helm",
            &kc2,
            &["upgrade", "demo", &chart, "--set", "greeting=yo"],
            None,
        );
        let out = run(
            "kubectl",
            &kc2,
            &[
                "get",
                "configmap",
                "demo-cfg",
                "-o",
                "jsonpath={.data.greeting}",
            ],
            None,
        );
        assert_eq!(out, "yo");
        let out = run("helm", &kc2, &["list"], None);
        assert!(out.contains("demo") && out.contains("deployed"), "{out}");
        run("helm", &kc2, &["uninstall", "demo"], None);
        let out = run(
            "kubectl",
            &kc2,
            &["get", "configmaps,secrets", "-o", "name"],
            None,
        );
        assert!(out.trim().is_empty(), "left behind: {out}");
    })
    .await
    .unwrap();
    c.shutdown().await;
}
