//! Deployment and ReplicaSet controllers.

use super::decide::{deletion_order, int_or_percent, rolling_step, PodRank, RsState};
use super::owners::{owned_by, owner_ref};
use crate::apiserver::{DeleteOpts, WriteOpts};
use crate::ctx::{event, Ctx, EventType, Reason};
use crate::meta::{condition, meta_str};
use crate::selector::LabelSelector;
use serde_json::{json, Value};

const MANAGER: &str = "kubesim-controller-manager";

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// A stable short hash of the pod template (the `pod-template-hash` label).
fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    let s = t.to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

pub fn reconcile_deployments(ctx: &Ctx) {
    let (deploys, _) = ctx.api.list(&ctx.deployments, None);
    let (all_rs, _) = ctx.api.list(&ctx.replicasets, None);
    for d in deploys {
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        if let Err(e) = reconcile_deployment(ctx, &d, &all_rs) {
            tracing::debug!(error = %e, deployment = meta_str(&d, "name"), "deployment reconcile");
        }
    }
}

fn reconcile_deployment(
    ctx: &Ctx,
    d: &Value,
    all_rs: &[Value],
) -> Result<(), crate::error::ApiError> {
    let view = DeploymentView::of(d, all_rs);
    let new_rs = match &view.new_rs {
        Some(rs) => rs.clone(),
        None if view.paused => return Ok(()),
        None => create_new_replicaset(ctx, d, &view)?,
    };
    // The new ReplicaSet's template must follow label/annotation-only edits too.
    if !view.paused {
        let new_state = RsState {
            replicas: int(&new_rs, "/spec/replicas"),
            available: int(&new_rs, "/status/availableReplicas"),
        };
        let (new_target, old_targets) = view.scale_targets(d, new_state);
        scale_rs(ctx, d, &new_rs, new_target)?;
        for (rs, target) in view.olds.iter().zip(old_targets) {
            scale_rs(ctx, d, rs, target)?;
        }
    }
    // Status from the ReplicaSets' status.
    let (rs_now, _) = ctx.api.list(&ctx.replicasets, Some(&view.ns));
    let owned_now: Vec<&Value> = rs_now.iter().filter(|rs| owned_by(rs, &view.uid)).collect();
    let status = view.status(d, &new_rs, &owned_now);
    write_status(ctx, &ctx.deployments.clone(), d, status)
}

/// A Deployment and the ReplicaSets it owns, as one reconcile sees them.
struct DeploymentView {
    ns: String,
    name: String,
    uid: String,
    desired: i64,
    template: Value,
    /// The `pod-template-hash` of the current template.
    hash: String,
    /// The ReplicaSet of the current template, if it exists.
    new_rs: Option<Value>,
    /// Every other owned ReplicaSet, oldest first.
    olds: Vec<Value>,
    olds_state: Vec<RsState>,
    old_pods_total: i64,
    max_revision: i64,
    paused: bool,
    recreate: bool,
}

impl DeploymentView {
    fn of(d: &Value, all_rs: &[Value]) -> Self {
        let name = meta_str(d, "name").to_string();
        let uid = meta_str(d, "uid").to_string();
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mut owned: Vec<Value> = all_rs
            .iter()
            .filter(|rs| owned_by(rs, &uid))
            .cloned()
            .collect();
        owned
            .sort_by(|a, b| meta_str(a, "creationTimestamp").cmp(meta_str(b, "creationTimestamp")));
        let new_rs = owned
            .iter()
            .find(|rs| {
                rs.pointer("/metadata/labels/pod-template-hash")
                    .and_then(Value::as_str)
                    == Some(&hash)
            })
            .cloned();
        let olds: Vec<Value> = owned
            .iter()
            .filter(|rs| meta_str(rs, "name") != format!("{name}-{hash}"))
            .cloned()
            .collect();
        let max_revision = owned
            .iter()
            .filter_map(|rs| {
                rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                    .and_then(Value::as_str)?
                    .parse::<i64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let olds_state: Vec<RsState> = olds
            .iter()
            .map(|rs| RsState {
                replicas: int(rs, "/spec/replicas"),
                available: int(rs, "/status/availableReplicas"),
            })
            .collect();
        let old_pods_total: i64 = olds.iter().map(|rs| int(rs, "/status/replicas")).sum();
        Self {
            ns: meta_str(d, "namespace").to_string(),
            name,
            uid,
            desired: int(d, "/spec/replicas"),
            template,
            hash,
            new_rs,
            olds,
            olds_state,
            old_pods_total,
            max_revision,
            paused: d.pointer("/spec/paused") == Some(&Value::Bool(true)),
            recreate: d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate"),
        }
    }

    /// The replicas a new ReplicaSet starts with.
    fn initial_replicas(&self, d: &Value) -> i64 {
        let desired = self.desired;
        if self.recreate {
            if self.old_pods_total == 0 && self.olds_state.iter().all(|o| o.replicas == 0) {
                desired
            } else {
                0
            }
        } else if self.olds.is_empty() {
            desired
        } else {
            let surge = int_or_percent(
                d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                desired,
                true,
                1,
            );
            let total: i64 = self.olds_state.iter().map(|o| o.replicas).sum();
            (desired + surge - total).clamp(0, desired)
        }
    }

    /// The ReplicaSet of the current template, to create with `initial` replicas.
    fn new_replicaset(&self, d: &Value, initial: i64) -> Value {
        let (name, hash, desired) = (&self.name, &self.hash, self.desired);
        let mut tpl = self.template.clone();
        tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        selector["matchLabels"]["pod-template-hash"] = json!(hash);
        let mut labels = self
            .template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        labels["pod-template-hash"] = json!(hash);
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-{hash}"), "namespace": self.ns, "labels": labels,
                "annotations": {"deployment.kubernetes.io/revision": (self.max_revision + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                "ownerReferences": [owner_ref(d)]},
            "spec": {"replicas": initial, "minReadySeconds": int(d, "/spec/minReadySeconds"),
                "selector": selector, "template": tpl},
        })
    }

    /// The replicas the new ReplicaSet and each old one should have now.
    fn scale_targets(&self, d: &Value, new_state: RsState) -> (i64, Vec<i64>) {
        let desired = self.desired;
        if self.recreate {
            let olds_gone = self.old_pods_total == 0;
            (
                if olds_gone { desired } else { 0 },
                vec![0; self.olds.len()],
            )
        } else if self.olds_state.iter().all(|o| o.replicas == 0) {
            (desired, vec![0; self.olds.len()])
        } else {
            let surge = int_or_percent(
                d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                desired,
                true,
                1,
            );
            let unavailable = int_or_percent(
                d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                desired,
                false,
                0,
            );
            rolling_step(desired, surge, unavailable, new_state, &self.olds_state)
        }
    }

    /// The Deployment's status from its ReplicaSets' (`owned_now`).
    fn status(&self, d: &Value, new_rs: &Value, owned_now: &[&Value]) -> Value {
        let desired = self.desired;
        let sum = |p: &str| owned_now.iter().map(|rs| int(rs, p)).sum::<i64>();
        let replicas = sum("/status/replicas");
        let ready = sum("/status/readyReplicas");
        let available = sum("/status/availableReplicas");
        let updated = owned_now
            .iter()
            .find(|rs| meta_str(rs, "name") == meta_str(new_rs, "name"))
            .map_or(0, |rs| int(rs, "/status/replicas"));
        let max_unavailable = if self.recreate {
            0
        } else {
            int_or_percent(
                d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                desired,
                false,
                0,
            )
        };
        let complete = updated == desired && replicas == desired && available >= desired;
        let avail_ok = available >= desired - max_unavailable;
        let conditions = deployment_conditions(d, avail_ok, complete, meta_str(new_rs, "name"));
        let mut status = json!({
            "observedGeneration": int(d, "/metadata/generation"),
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "conditions": conditions,
        });
        let unavailable = (desired.max(replicas) - available).max(0);
        if unavailable > 0 {
            status["unavailableReplicas"] = json!(unavailable);
        }
        status
    }
}

/// Creates the ReplicaSet of the Deployment's current template and records its revision.
fn create_new_replicaset(
    ctx: &Ctx,
    d: &Value,
    view: &DeploymentView,
) -> Result<Value, crate::error::ApiError> {
    let (ns, name, hash) = (&view.ns, &view.name, &view.hash);
    let initial = view.initial_replicas(d);
    let rs = view.new_replicaset(d, initial);
    let created = ctx
        .api
        .create(&ctx.replicasets, ns, rs, &WriteOpts::manager(MANAGER))?;
    event(
        ctx,
        d,
        EventType::Normal,
        Reason::ScalingReplicaSet,
        &format!("Scaled up replica set {name}-{hash} from 0 to {initial}"),
    );
    let revision = (view.max_revision + 1).to_string();
    ctx.api.write_existing(
        &ctx.deployments,
        ns,
        name,
        "",
        &WriteOpts::manager(MANAGER),
        |cur| {
            let mut n = cur.clone();
            n["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(revision);
            strip_rv(&mut n);
            Ok(n)
        },
    )?;
    Ok(created)
}

/// A Deployment's `Available` and `Progressing` conditions.
fn deployment_conditions(d: &Value, avail_ok: bool, complete: bool, new_name: &str) -> Vec<Value> {
    vec![
        condition(
            d,
            "Available",
            avail_ok,
            if avail_ok {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if avail_ok {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            },
        ),
        condition(
            d,
            "Progressing",
            true,
            if complete {
                "NewReplicaSetAvailable"
            } else {
                "ReplicaSetUpdated"
            },
            &if complete {
                format!("ReplicaSet \"{new_name}\" has successfully progressed.")
            } else {
                format!("ReplicaSet \"{new_name}\" is progressing.")
            },
        ),
    ]
}

fn strip_rv(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// Writes status only when it changed (ignoring timestamps carried over).
pub fn write_status(
    ctx: &Ctx,
    def: &crate::registry::ResourceDef,
    obj: &Value,
    status: Value,
) -> Result<(), crate::error::ApiError> {
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let ns = meta_str(obj, "namespace").to_string();
    let name = meta_str(obj, "name").to_string();
    ctx.api.write_existing(
        def,
        &ns,
        &name,
        "status",
        &WriteOpts::manager(MANAGER),
        move |cur| {
            let mut n = cur.clone();
            n["status"] = status;
            strip_rv(&mut n);
            Ok(n)
        },
    )?;
    Ok(())
}

fn scale_rs(ctx: &Ctx, d: &Value, rs: &Value, target: i64) -> Result<(), crate::error::ApiError> {
    let current = int(rs, "/spec/replicas");
    if current == target {
        return Ok(());
    }
    let ns = meta_str(rs, "namespace").to_string();
    let name = meta_str(rs, "name").to_string();
    ctx.api.write_existing(
        &ctx.replicasets,
        &ns,
        &name,
        "",
        &WriteOpts::manager(MANAGER),
        |cur| {
            let mut n = cur.clone();
            n["spec"]["replicas"] = json!(target);
            n["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                json!(int(d, "/spec/replicas").to_string());
            strip_rv(&mut n);
            Ok(n)
        },
    )?;
    let verb = if target > current { "up" } else { "down" };
    event(
        ctx,
        d,
        EventType::Normal,
        Reason::ScalingReplicaSet,
        &format!("Scaled {verb} replica set {name} from {current} to {target}"),
    );
    Ok(())
}

fn pod_ready_since(pod: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let c = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    chrono::DateTime::parse_from_rfc3339(c["lastTransitionTime"].as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub fn reconcile_replicasets(ctx: &Ctx) {
    let (sets, _) = ctx.api.list(&ctx.replicasets, None);
    let (pods, _) = ctx.api.list(&ctx.pods, None);
    for rs in sets {
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        if let Err(e) = reconcile_replicaset(ctx, &rs, &pods) {
            tracing::debug!(error = %e, replicaset = meta_str(&rs, "name"), "replicaset reconcile");
        }
    }
}

fn reconcile_replicaset(
    ctx: &Ctx,
    rs: &Value,
    pods: &[Value],
) -> Result<(), crate::error::ApiError> {
    let ns = meta_str(rs, "namespace").to_string();
    let uid = meta_str(rs, "uid").to_string();
    let desired = int(rs, "/spec/replicas");
    let active = active_pods(pods, &uid);
    let n = active.len() as i64;
    if n < desired {
        create_pods(ctx, rs, &ns, desired - n)?;
    } else if n > desired {
        delete_pods(ctx, rs, &ns, &active, (n - desired) as usize)?;
    }
    // Status.
    let (pods_now, _) = ctx.api.list(&ctx.pods, Some(&ns));
    let mine = active_pods(&pods_now, &uid);
    let status = replicaset_status(rs, &mine);
    let rs_now = ctx.api.get(&ctx.replicasets, &ns, meta_str(rs, "name"))?;
    write_status(ctx, &ctx.replicasets.clone(), &rs_now, status)
}

/// The pods of the owner `uid` that count toward its replicas: not deleting, not finished.
fn active_pods<'a>(pods: &'a [Value], uid: &str) -> Vec<&'a Value> {
    pods.iter()
        .filter(|p| owned_by(p, uid) && p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded") | Some("Failed")
            )
        })
        .collect()
}

/// A new pod from the ReplicaSet's template.
fn pod_from_template(rs: &Value, ns: &str) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{}-", meta_str(rs, "name")), "namespace": ns,
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref(rs)]},
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Creates `count` pods for the ReplicaSet.
fn create_pods(ctx: &Ctx, rs: &Value, ns: &str, count: i64) -> Result<(), crate::error::ApiError> {
    for _ in 0..count {
        let pod = pod_from_template(rs, ns);
        let created = ctx
            .api
            .create(&ctx.pods, ns, pod, &WriteOpts::manager(MANAGER))?;
        event(
            ctx,
            rs,
            EventType::Normal,
            Reason::SuccessfulCreate,
            &format!("Created pod: {}", meta_str(&created, "name")),
        );
    }
    Ok(())
}

/// Deletes `count` of the ReplicaSet's pods, the first in deletion order.
fn delete_pods(
    ctx: &Ctx,
    rs: &Value,
    ns: &str,
    active: &[&Value],
    count: usize,
) -> Result<(), crate::error::ApiError> {
    let now = chrono::Utc::now();
    let mut ranks: Vec<PodRank> = active.iter().map(|p| pod_rank(p, now)).collect();
    deletion_order(&mut ranks);
    for victim in ranks.iter().take(count) {
        ctx.api
            .delete(&ctx.pods, ns, &victim.name, &DeleteOpts::default())?;
        event(
            ctx,
            rs,
            EventType::Normal,
            Reason::SuccessfulDelete,
            &format!("Deleted pod: {}", victim.name),
        );
    }
    Ok(())
}

/// What the deletion order weighs of a pod.
fn pod_rank(p: &Value, now: chrono::DateTime<chrono::Utc>) -> PodRank {
    PodRank {
        name: meta_str(p, "name").to_string(),
        scheduled: p.pointer("/spec/nodeName").is_some(),
        phase: match p.pointer("/status/phase").and_then(Value::as_str) {
            Some("Running") => 2,
            Some("Pending") | None => 0,
            _ => 1,
        },
        ready: pod_ready_since(p).is_some(),
        deletion_cost: p
            .pointer("/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        ready_for: pod_ready_since(p).map_or(0, |t| (now - t).num_seconds()),
        restarts: p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map_or(0, |cs| {
                cs.iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum()
            }),
        created: meta_str(p, "creationTimestamp").to_string(),
    }
}

/// The ReplicaSet's status from its active pods (`mine`).
fn replicaset_status(rs: &Value, mine: &[&Value]) -> Value {
    let min_ready = int(rs, "/spec/minReadySeconds");
    let now = chrono::Utc::now();
    let ready = mine.iter().filter(|p| pod_ready_since(p).is_some()).count();
    let available = mine
        .iter()
        .filter(|p| {
            pod_ready_since(p).is_some_and(|t| (now - t).num_milliseconds() >= min_ready * 1000)
        })
        .count();
    let selector = rs
        .pointer("/spec/selector")
        .map(LabelSelector::from_object)
        .unwrap_or_default();
    let labeled = mine.iter().filter(|p| selector.matches(p)).count();
    json!({
        "replicas": mine.len(), "fullyLabeledReplicas": labeled, "readyReplicas": ready,
        "availableReplicas": available, "observedGeneration": int(rs, "/metadata/generation"),
    })
}
