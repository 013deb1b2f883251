//! kube::Client against the API server: CRUD, conflicts, patches, server-side
//! apply, watches (resume, bookmarks, 410 Gone), CRDs, finalizers.

mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::time::Duration;

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "t"}}, "data": data}))
    .unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_selectors() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &cm("a", json!({"k": "1"})))
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    let err = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );

    // Update with the current resourceVersion succeeds; a stale one conflicts.
    let mut upd = created.clone();
    upd.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &upd)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );
    let err = cms
        .replace("a", &PostParams::default(), &upd)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );

    cms.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let mut other = cm("c", json!({}));
    other.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
    cms.create(&PostParams::default(), &other).await.unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app=t"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app notin (t)"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );

    // Unknown namespace -> 404; missing object -> 404.
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = nowhere
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err}"
    );
    assert!(cms.get_opt("zzz").await.unwrap().is_none());

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    c.shutdown().await;
}

#[tokio::test]
async fn patch_types() {
    let c = common::cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    cms.create(
        &PostParams::default(),
        &cm("p", json!({"a": "1", "b": "2"})),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();

    let merged = cms
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        [
            ("b".to_string(), "2".to_string()),
            ("c".to_string(), "3".to_string())
        ]
        .into()
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "20"}]))
    .unwrap();
    let patched = cms.patch("p", &pp, &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "20");
    // A failing `test` op rejects the whole patch.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "99"}]))
    .unwrap();
    let err = cms
        .patch("p", &pp, &Patch::<()>::Json(ops))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );

    let strategic = cms
        .patch("p", &pp, &Patch::Strategic(json!({"data": {"d": "4"}})))
        .await
        .unwrap();
    assert_eq!(strategic.data.unwrap().len(), 3);

    // A merge patch carrying a stale resourceVersion conflicts.
    let err = cms
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_field_managers() {
    let c = common::cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"},
        "data": {"owned": "1", "dropped": "x"}});
    let created = cms
        .patch("s", &PatchParams::apply("op"), &Patch::Apply(&body))
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("op"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Another manager changing an owned field conflicts, unless forced.
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"owned": "2"}});
    let err = cms
        .patch("s", &PatchParams::apply("them"), &Patch::Apply(&theirs))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"op\""), "{}", s.message);
        }
        other => panic!("unexpected {other}"),
    }
    let forced = cms
        .patch(
            "s",
            &PatchParams::apply("them").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["owned"], "2");

    // op re-applies without `dropped`: it is removed; `owned` now belongs to them and stays.
    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"new": "n"}});
    let out = cms
        .patch("s", &PatchParams::apply("op"), &Patch::Apply(&again))
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert_eq!(data.get("dropped"), None);
    assert_eq!(data["owned"], "2");
    assert_eq!(data["new"], "n");
    c.shutdown().await;
}

#[tokio::test]
async fn watch_resume_bookmarks_and_gone() {
    let c = kubesim::Cluster::start(
        kubesim::ClusterConfig::default()
            .watch_history(20)
            .bookmark_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv0 = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();

    // Resuming from rv0 replays the three changes in order, then bookmarks arrive.
    let wp = WatchParams::default().timeout(5);
    let mut stream = cms.watch(&wp, &rv0).await.unwrap().boxed();
    let mut kinds = vec![];
    while kinds.len() < 4 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Bookmark(_) => kinds.push("BOOKMARK"),
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]);

    // Push rv0 out of the 20-change history: resuming from it is 410 Gone.
    for i in 0..25 {
        cms.create(&PostParams::default(), &cm(&format!("g{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test]
async fn label_selected_watch_sees_objects_leave_the_selection() {
    let c = common::cluster().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=t").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("l", json!({})))
        .await
        .unwrap();
    cms.patch(
        "l",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(
        stream.try_next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        stream.try_next().await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));
    c.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_watcher_and_finalizers() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let w = kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default());
    let mut applied = kube::runtime::WatchStreamExt::applied_objects(w).boxed();

    let mut with_fin = cm("f", json!({}));
    with_fin.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &with_fin).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), applied.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("f"));

    // Delete only marks it; removing the finalizer completes the deletion.
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("f").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("f").await.unwrap().is_none());

    // Namespaces are cluster-scoped and start Active.
    let nss: Api<Namespace> = Api::all(client);
    let ns = nss.get("default").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    c.shutdown().await;
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
      "additionalPrinterColumns": [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}],
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"],
          "x-kubernetes-validations": [{"rule": "self.size != 'large' || self.replicas >= 2", "message": "large widgets need at least 2 replicas"}],
          "properties": {
          "size": {"type": "string", "enum": ["small", "large"]},
          "replicas": {"type": "integer", "minimum": 0, "default": 1}}},
        "status": {"type": "object", "properties": {
          "replicas": {"type": "integer"}, "observedGeneration": {"type": "integer"},
          "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}}]}}"#;

pub fn widget_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    Api::namespaced_with(
        client,
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    )
}

#[tokio::test]
async fn crds_validate_default_and_split_status() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_str(CRD).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let widgets = widget_api(client);

    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": "small", "junk": true}, "status": {"replicas": 9}})).unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"size": "small", "replicas": 1}),
        "defaulted and pruned"
    );
    assert!(
        created.data.get("status").is_none(),
        "status ignored on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let bad: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "bad"}, "spec": {"size": "huge"}}))
        .unwrap();
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec.size"), "{}", s.message);
        }
        other => panic!("{other}"),
    }

    // CEL rules run after defaulting.
    let large: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "large"}, "spec": {"size": "large"}}))
        .unwrap();
    let err = widgets
        .create(&PostParams::default(), &large)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("large widgets need at least 2 replicas")),
        "{err}"
    );

    // Status writes don't bump generation; spec writes do and leave status alone.
    let st = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "observedGeneration": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(1));
    let sp = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(sp.metadata.generation, Some(2));
    assert_eq!(sp.data["status"]["replicas"], 1);

    // Scale subresource reads and writes spec.replicas.
    let scale = widgets.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    widgets
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(widgets.get("w").await.unwrap().data["spec"]["replicas"], 5);
    c.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_event_recorder_shows_in_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    use kube::Resource;
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let obj = cms
        .create(&PostParams::default(), &cm("evt", json!({})))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-ctl".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "Degraded".into(),
        note: Some("spec.x is invalid".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let oref = obj.object_ref(&());
    recorder.publish(&ev, &oref).await.unwrap();
    // The same event again becomes a series (a merge patch of the first).
    recorder.publish(&ev, &oref).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let list = core
        .list(&ListParams::default().fields("involvedObject.name=evt"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "{:?}", list.items);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Degraded"));
    assert_eq!(e.message.as_deref(), Some("spec.x is invalid"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(Some(2)));
    c.shutdown().await;
}

#[tokio::test]
async fn audit_log_attributes_requests_to_their_token() {
    let c = common::cluster().await;
    let client = c.client_as("reader").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("audited", json!({})))
        .await
        .unwrap();
    cms.get("audited").await.unwrap();
    // An apply that creates is authorized (and recorded) as create as well as patch.
    cms.patch(
        "applied",
        &PatchParams::apply("reader"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}}),
        ),
    )
    .await
    .unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.patch_status(
        "audited",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {}})),
    )
    .await
    .ok();
    let seen: Vec<(String, String, String, String, String)> = c
        .audit()
        .of_user("reader")
        .into_iter()
        .map(|k| (k.verb, k.group, k.resource, k.namespace, k.name))
        .collect();
    let s = |v: &str, r: &str, name: &str| {
        (
            v.to_string(),
            String::new(),
            r.to_string(),
            "default".to_string(),
            name.to_string(),
        )
    };
    // The name is the one in the path (none for a create by POST or a list).
    assert_eq!(
        seen,
        vec![
            s("create", "configmaps", ""),
            s("create", "configmaps", "applied"),
            s("get", "configmaps", "audited"),
            s("list", "configmaps", ""),
            s("patch", "configmaps", "applied"),
            s("patch", "configmaps/status", "audited"),
        ]
    );
    // Requests without a token are anonymous, and discovery is not a resource request.
    let anon = c.client().await.unwrap();
    anon.apiserver_version().await.unwrap();
    Api::<ConfigMap>::namespaced(anon, "default")
        .get("audited")
        .await
        .unwrap();
    assert_eq!(c.audit().of_user("system:anonymous").len(), 1);
    assert_eq!(c.audit().of_user("reader").len(), 6);
    c.shutdown().await;
}

#[tokio::test]
async fn no_op_writes_keep_the_resource_version() {
    let c = common::cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("op").force();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same"}, "data": {"k": "1"}});
    let first = cms.patch("same", &pp, &Patch::Apply(&obj)).await.unwrap();
    let again = cms.patch("same", &pp, &Patch::Apply(&obj)).await.unwrap();
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
    let merged = cms
        .patch(
            "same",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        merged.metadata.resource_version
    );
    let changed = cms
        .patch("same", &pp, &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same"}, "data": {"k": "2"}})))
        .await
        .unwrap();
    assert_ne!(
        first.metadata.resource_version,
        changed.metadata.resource_version
    );
    c.shutdown().await;
}
