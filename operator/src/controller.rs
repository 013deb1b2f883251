//! The reconciler: dereference → validate → build → apply (+ delete orphans) → status.
//!
//! Only this module and `apply` talk to the API server during a reconcile; the decisions are the
//! pure functions of `validate`, `scaling`, `build` and `status`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::apply::{self, Change};
use crate::build::{self, names, Component, FleetObjects, Owner, FIELD_MANAGER, LABEL_MANAGED_BY};
use crate::crd::{DrainingStatus, GameFleet, GameFleetSpec, SecretKeyRef};
use crate::error::{is_not_found, Error};
use crate::events::EventRecorder;
use crate::metrics::Metrics;
use crate::scaling::{self, CurrentReplicas, ScaleDecision};
use crate::status::{self, LoadSample, Observation, Outcome};
use crate::validate;
use crate::{drain, drain_probe};

/// How long to wait before re-checking a fleet whose Secrets are missing (Secrets are not
/// watched: watching every Secret would need list/watch on all of them).
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);
/// Periodic resync of a healthy fleet (catches anything a watch missed).
pub const RESYNC: Duration = Duration::from_secs(300);
/// While pods are starting or rolling, look again soon so status follows closely.
pub const PROGRESS_RECHECK: Duration = Duration::from_secs(5);

/// The autoscaler's seam: the latest decision and load sample for a fleet, if any.
pub trait ScaleAdvisor: Send + Sync {
    fn decision(&self, fleet: &GameFleet) -> Option<ScaleDecision>;
    fn load(&self, fleet: &GameFleet) -> Option<LoadSample>;
    /// Background work while this replica reconciles (sampling load); it asks for a reconcile
    /// of a fleet through `env.trigger`. Never returns by default.
    fn run(self: Arc<Self>, _env: AdvisorEnv) -> BoxFuture<'static, ()> {
        futures::future::pending().boxed()
    }
}

/// What a [`ScaleAdvisor`] gets to run with.
#[derive(Clone)]
pub struct AdvisorEnv {
    pub client: Client,
    /// The controller's cache of GameFleets.
    pub fleets: Store<GameFleet>,
    /// Asks the controller to reconcile a fleet.
    pub trigger: futures::channel::mpsc::Sender<ObjectRef<GameFleet>>,
    pub metrics: Metrics,
}

/// No autoscaler: spec replicas (when autoscaling is off) or current replicas stand.
pub struct NoAdvisor;

impl ScaleAdvisor for NoAdvisor {
    fn decision(&self, _: &GameFleet) -> Option<ScaleDecision> {
        None
    }
    fn load(&self, _: &GameFleet) -> Option<LoadSample> {
        None
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: EventRecorder,
    pub metrics: Metrics,
    pub advisor: Arc<dyn ScaleAdvisor>,
    pub fleets: Option<Store<GameFleet>>,
    /// Consecutive API failures per fleet, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<GameFleet>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: Metrics,
        advisor: Arc<dyn ScaleAdvisor>,
    ) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            metrics,
            advisor,
            fleets: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn record_failure(&self, fleet: &GameFleet) -> u32 {
        let key = ObjectRef::from_obj(fleet);
        match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        }
    }

    fn clear_failures(&self, fleet: &GameFleet) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(&ObjectRef::from_obj(fleet));
        }
    }
}

/// Backoff after `n` consecutive API failures: 2 s, 4 s, 8 s … capped at 5 minutes.
pub fn backoff(n: u32) -> Duration {
    let secs = 1u64 << n.min(16);
    Duration::from_secs(secs.clamp(2, 300))
}

/// Objects of each owned kind that exist now (listed by the fleet's labels).
struct Existing {
    deployments: BTreeMap<String, Deployment>,
    services: BTreeMap<String, Service>,
    pdbs: BTreeMap<String, PodDisruptionBudget>,
}

struct Apis {
    fleets: Api<GameFleet>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    pdbs: Api<PodDisruptionBudget>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
}

impl Apis {
    fn new(client: &Client, ns: &str) -> Self {
        Self {
            fleets: Api::namespaced(client.clone(), ns),
            deployments: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            pdbs: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
        }
    }
}

/// Reconciles one fleet. Spec problems return `Ok` (after reporting them) so they wait for a
/// change instead of hot-looping; API failures return `Err` and back off.
pub async fn reconcile(fleet: Arc<GameFleet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    if let Some(store) = &ctx.fleets {
        ctx.metrics
            .fleets
            .set(i64::try_from(store.state().len()).unwrap_or(i64::MAX));
    }
    if fleet.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove everything; nothing to do.
        return Ok(Action::await_change());
    }
    let owner = Owner::of(&fleet).ok_or(Error::MissingIdentity)?;
    let apis = Apis::new(&ctx.client, &owner.namespace);

    let existing = match list_existing(&apis, &owner).await {
        Ok(e) => e,
        Err(e) => return Err(fail(&fleet, &ctx, &apis, None, e).await),
    };
    let gateway_now = existing.deployments.get(&names::gateway(&owner.name));
    let engine_now = existing.deployments.get(&names::engine(&owner.name));

    // Validate (pure) and dereference (Secrets).
    let checked = match validate::validate(&fleet.spec) {
        Ok(()) => check_secrets(&apis.secrets, &owner.namespace, &fleet.spec).await,
        Err(e) => Err(Error::from(e)),
    };
    if let Err(e) = checked {
        let obs = Observation {
            gateway: gateway_now,
            engine: engine_now,
            load: ctx.advisor.load(&fleet),
            draining: None,
        };
        if !e.is_spec_problem() {
            return Err(fail(&fleet, &ctx, &apis, Some(obs), e).await);
        }
        return report_spec_problem(&fleet, &ctx, &apis, obs, e).await;
    }

    // Build (pure).
    let current = CurrentReplicas {
        gateway: gateway_now.and_then(|d| d.spec.replicas),
        engine: engine_now.and_then(|d| d.spec.replicas),
    };
    let decision = ctx.advisor.decision(&fleet);
    let replicas = scaling::desired_replicas(&fleet.spec, current, decision.as_ref());
    let objects = build::build(&fleet, &owner, replicas.desired);

    // Apply, then delete orphans.
    let applied = match apply_all(
        &fleet,
        &ctx,
        &apis,
        &owner,
        &existing,
        &objects,
        decision.as_ref(),
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            let obs = Observation {
                gateway: gateway_now,
                engine: engine_now,
                load: ctx.advisor.load(&fleet),
                draining: None,
            };
            return Err(fail(&fleet, &ctx, &apis, Some(obs), e).await);
        }
    };

    // Status (pure computation; written only when it changed).
    write_new_status(&fleet, &ctx, &apis, &owner, current, &replicas, &applied).await
}

/// Computes the fleet's status after the objects were applied, writes it when it changed, and
/// says when to reconcile next.
async fn write_new_status(
    fleet: &GameFleet,
    ctx: &Context,
    apis: &Apis,
    owner: &Owner,
    current: CurrentReplicas,
    replicas: &scaling::Replicas,
    applied: &(Deployment, Deployment),
) -> Result<Action, Error> {
    let obs = Observation {
        gateway: Some(&applied.0),
        engine: Some(&applied.1),
        load: ctx.advisor.load(fleet),
        draining: draining_gateways(apis, owner, fleet.spec.gateway.admin_port).await,
    };
    let mut new = status::compute(fleet, Some(replicas), &obs, &Outcome::Applied, &now());
    if autoscaled(&fleet.spec, current, replicas) {
        new.last_scale_time = Some(now());
    }
    if let Some((reason, note)) = status::rollout_event(fleet.status.as_ref(), &new) {
        publish(ctx, fleet, EventType::Normal, reason, "Rollout", note).await;
    }
    if let Err(e) = write_status(&apis.fleets, fleet, &new).await {
        return Err(fail(fleet, ctx, apis, None, e).await);
    }
    ctx.clear_failures(fleet);
    let settled = status::find(&new, status::PROGRESSING).is_some_and(|c| c.status == "False")
        && status::find(&new, status::READY).is_some_and(|c| c.status == "True");
    Ok(Action::requeue(if settled {
        RESYNC
    } else {
        PROGRESS_RECHECK
    }))
}

/// The autoscaler changed a replica count of an existing Deployment in this reconcile.
fn autoscaled(spec: &GameFleetSpec, current: CurrentReplicas, r: &scaling::Replicas) -> bool {
    spec.autoscaling.enabled
        && (current.gateway.is_some_and(|g| g != r.desired.gateway)
            || current.engine.is_some_and(|e| e != r.desired.engine))
}

/// Turns an error into a failed reconcile: counts it, emits a Warning event, marks the fleet
/// Degraded (best effort), and hands the error back for `error_policy`'s backoff.
async fn fail(
    fleet: &GameFleet,
    ctx: &Context,
    apis: &Apis,
    obs: Option<Observation<'_>>,
    e: Error,
) -> Error {
    ctx.metrics.failed(e.reason());
    warn!(fleet = %fleet.name_any(), namespace = ?fleet.namespace(), error = %e, "reconcile failed");
    publish(
        ctx,
        fleet,
        EventType::Warning,
        "ReconcileFailed",
        "Reconcile",
        e.to_string(),
    )
    .await;
    let obs = obs.unwrap_or_default();
    let outcome = Outcome::Failed {
        reason: e.reason().into(),
        message: e.to_string(),
    };
    let new = status::compute(fleet, None, &obs, &outcome, &now());
    if let Err(se) = write_status(&apis.fleets, fleet, &new).await {
        warn!(error = %se, "cannot write Degraded status");
    }
    e
}

/// A spec the user must fix: Degraded + one Warning event per distinct problem, then wait.
async fn report_spec_problem(
    fleet: &GameFleet,
    ctx: &Context,
    apis: &Apis,
    obs: Observation<'_>,
    e: Error,
) -> Result<Action, Error> {
    ctx.metrics.failed(e.reason());
    let outcome = Outcome::Failed {
        reason: e.reason().into(),
        message: e.to_string(),
    };
    let new = status::compute(fleet, None, &obs, &outcome, &now());
    let already_reported = fleet
        .status
        .as_ref()
        .and_then(|s| status::find(s, status::DEGRADED))
        .is_some_and(|c| c.status == "True" && c.message == e.to_string())
        && fleet.status.as_ref().and_then(|s| s.observed_generation) == fleet.metadata.generation;
    if !already_reported {
        warn!(fleet = %fleet.name_any(), error = %e, "fleet spec cannot be applied");
        publish(
            ctx,
            fleet,
            EventType::Warning,
            e.reason(),
            "Validate",
            e.to_string(),
        )
        .await;
    }
    write_status(&apis.fleets, fleet, &new)
        .await
        .inspect_err(|se| ctx.metrics.failed(se.reason()))?;
    Ok(match e {
        Error::InvalidSpec(_) | Error::MissingIdentity => Action::await_change(),
        _ => Action::requeue(SECRET_RECHECK),
    })
}

/// Backoff policy for API failures (spec problems never get here).
pub fn error_policy(fleet: Arc<GameFleet>, err: &Error, ctx: Arc<Context>) -> Action {
    if err.is_spec_problem() {
        return Action::await_change();
    }
    let n = ctx.record_failure(&fleet);
    let wait = backoff(n);
    warn!(fleet = %fleet.name_any(), attempt = n, retry_in = ?wait, "reconcile will be retried");
    Action::requeue(wait)
}

/// Gateway pods shutting down and their remaining connections. Best effort: this only feeds the
/// status, so a failed pod list is logged and reported as "none known".
async fn draining_gateways(apis: &Apis, owner: &Owner, admin_port: i32) -> Option<DrainingStatus> {
    let sel = build::selector_string(&owner.selector(Some(Component::Gateway)));
    let pods = match apis.pods.list(&ListParams::default().labels(&sel)).await {
        Ok(l) => l.items,
        Err(e) => {
            warn!(error = %e, "cannot list gateway pods; draining gateways not reported");
            return None;
        }
    };
    let draining = drain::draining_pods(&pods);
    if draining.is_empty() {
        return None;
    }
    drain::summarize(&drain_probe::connections(&draining, admin_port).await)
}

async fn list_existing(apis: &Apis, owner: &Owner) -> Result<Existing, Error> {
    let sel = owner.owned_selector();
    Ok(Existing {
        deployments: apply::list_owned(&apis.deployments, &sel, "Deployment").await?,
        services: apply::list_owned(&apis.services, &sel, "Service").await?,
        pdbs: apply::list_owned(&apis.pdbs, &sel, "PodDisruptionBudget").await?,
    })
}

async fn check_secrets(api: &Api<Secret>, ns: &str, spec: &GameFleetSpec) -> Result<(), Error> {
    let mut refs: Vec<(&'static str, &SecretKeyRef)> =
        vec![("auth.jwtSecretRef", &spec.auth.jwt_secret_ref)];
    if let Some(r) = &spec.redis.url_secret_ref {
        refs.push(("redis.urlSecretRef", r));
    }
    if let Some(r) = spec
        .redis
        .ledger
        .as_ref()
        .and_then(|l| l.url_secret_ref.as_ref())
    {
        refs.push(("redis.ledger.urlSecretRef", r));
    }
    if let Some(r) = &spec.auth.admin_token_secret_ref {
        refs.push(("auth.adminTokenSecretRef", r));
    }
    for (field, r) in refs {
        let secret = match api.get(&r.name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => {
                return Err(Error::SecretNotFound {
                    field,
                    namespace: ns.into(),
                    name: r.name.clone(),
                })
            }
            Err(e) => return Err(Error::api("get", "Secret", r.name.clone())(e)),
        };
        let has_key = secret.data.as_ref().is_some_and(|d| d.contains_key(&r.key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(&r.key));
        if !has_key {
            return Err(Error::SecretKeyMissing {
                field,
                namespace: ns.into(),
                name: r.name.clone(),
                key: r.key.clone(),
            });
        }
    }
    Ok(())
}

async fn apply_one<K>(
    ctx: &Context,
    fleet: &GameFleet,
    api: &Api<K>,
    existing: &BTreeMap<String, K>,
    obj: &K,
    kind: &'static str,
) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let before = existing.get(&name);
    let after = apply::apply(api, obj, kind).await?;
    match apply::change(before, &after) {
        Change::Created => {
            info!(%kind, %name, "created");
            publish(
                ctx,
                fleet,
                EventType::Normal,
                "Created",
                "Apply",
                format!("Created {kind} {name}"),
            )
            .await;
        }
        Change::Updated => {
            info!(%kind, %name, "updated");
            publish(
                ctx,
                fleet,
                EventType::Normal,
                "Updated",
                "Apply",
                format!("Updated {kind} {name}"),
            )
            .await;
        }
        Change::Unchanged => {}
    }
    Ok(after)
}

/// Applies every object; returns the applied gateway and engine Deployments (with live status).
async fn apply_all(
    fleet: &GameFleet,
    ctx: &Context,
    apis: &Apis,
    owner: &Owner,
    existing: &Existing,
    objects: &FleetObjects,
    decision: Option<&ScaleDecision>,
) -> Result<(Deployment, Deployment), Error> {
    announce_scaling(fleet, ctx, existing, objects, decision).await;
    let gateway = apply_one(
        ctx,
        fleet,
        &apis.deployments,
        &existing.deployments,
        &objects.gateway,
        "Deployment",
    )
    .await?;
    let engine = apply_one(
        ctx,
        fleet,
        &apis.deployments,
        &existing.deployments,
        &objects.engine,
        "Deployment",
    )
    .await?;
    apply_one(
        ctx,
        fleet,
        &apis.services,
        &existing.services,
        &objects.player_service,
        "Service",
    )
    .await?;
    apply_one(
        ctx,
        fleet,
        &apis.services,
        &existing.services,
        &objects.metrics_service,
        "Service",
    )
    .await?;
    if let Some(pdb) = &objects.gateway_pdb {
        apply_one(
            ctx,
            fleet,
            &apis.pdbs,
            &existing.pdbs,
            pdb,
            "PodDisruptionBudget",
        )
        .await?;
    }

    delete_orphans(fleet, ctx, apis, owner, existing, objects).await?;
    Ok((gateway, engine))
}

/// An event for each Deployment whose replica count this reconcile changes, with the reason.
async fn announce_scaling(
    fleet: &GameFleet,
    ctx: &Context,
    existing: &Existing,
    objects: &FleetObjects,
    decision: Option<&ScaleDecision>,
) {
    for (tier, desired) in [("gateway", &objects.gateway), ("engine", &objects.engine)] {
        let name = desired.metadata.name.clone().unwrap_or_default();
        let from = existing
            .deployments
            .get(&name)
            .and_then(|d| d.spec.replicas);
        let to = desired.spec.replicas;
        if let (Some(from), Some(to)) = (from, to) {
            if from != to {
                let why = match decision {
                    Some(d) if fleet.spec.autoscaling.enabled => d.reason(tier).to_string(),
                    _ => "spec".to_string(),
                };
                publish(
                    ctx,
                    fleet,
                    EventType::Normal,
                    "Scaled",
                    "Scale",
                    format!("Scaled {tier} from {from} to {to} ({why})"),
                )
                .await;
            }
        }
    }
}

/// Deletes what the fleet owns but no longer asks for.
async fn delete_orphans(
    fleet: &GameFleet,
    ctx: &Context,
    apis: &Apis,
    owner: &Owner,
    existing: &Existing,
    objects: &FleetObjects,
) -> Result<(), Error> {
    let uid = owner.reference.uid.as_str();
    let desired_deployments = vec![names::gateway(&owner.name), names::engine(&owner.name)];
    let desired_services = vec![
        names::player_service(&owner.name),
        names::metrics_service(&owner.name),
    ];
    let desired_pdbs: Vec<String> = objects
        .gateway_pdb
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for name in apply::orphans(&existing.deployments, &desired_deployments, uid) {
        apply::delete(&apis.deployments, &name, "Deployment").await?;
        deleted(ctx, fleet, "Deployment", &name).await;
    }
    for name in apply::orphans(&existing.services, &desired_services, uid) {
        apply::delete(&apis.services, &name, "Service").await?;
        deleted(ctx, fleet, "Service", &name).await;
    }
    for name in apply::orphans(&existing.pdbs, &desired_pdbs, uid) {
        apply::delete(&apis.pdbs, &name, "PodDisruptionBudget").await?;
        deleted(ctx, fleet, "PodDisruptionBudget", &name).await;
    }
    Ok(())
}

async fn deleted(ctx: &Context, fleet: &GameFleet, kind: &str, name: &str) {
    info!(%kind, %name, "deleted (no longer in the spec)");
    publish(
        ctx,
        fleet,
        EventType::Normal,
        "Deleted",
        "Apply",
        format!("Deleted {kind} {name}: no longer asked for by the spec"),
    )
    .await;
}

/// Writes the status when it differs from the stored one.
async fn write_status(
    api: &Api<GameFleet>,
    fleet: &GameFleet,
    new: &crate::crd::GameFleetStatus,
) -> Result<(), Error> {
    if fleet.status.as_ref() == Some(new) {
        return Ok(());
    }
    let name = fleet.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": new })),
    )
    .await
    .map_err(Error::api("patch status of", "GameFleet", name))?;
    Ok(())
}

/// Events are best effort: a failure to record one must not fail the reconcile.
async fn publish(
    ctx: &Context,
    fleet: &GameFleet,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &fleet.object_ref(&())).await {
        warn!(error = %e, %reason, "cannot publish event");
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Label selector for the owned-object watches: only what this operator manages.
pub fn owned_watch_config() -> watcher::Config {
    watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"))
}

/// Runs the controller until the returned future is dropped (losing leadership drops it).
pub async fn run_controller(
    client: Client,
    namespace: Option<String>,
    ctx_template: ControllerDeps,
) {
    let fleets: Api<GameFleet> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (deployments, services, pdbs): (Api<Deployment>, Api<Service>, Api<PodDisruptionBudget>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let (trigger, triggers) = futures::channel::mpsc::channel(64);
    let controller = Controller::new(fleets, watcher::Config::default())
        .owns(deployments, owned_watch_config())
        .owns(services, owned_watch_config())
        .owns(pdbs, owned_watch_config())
        .reconcile_on(triggers);
    let advisor = ctx_template.advisor.clone().run(AdvisorEnv {
        client: client.clone(),
        fleets: controller.store(),
        trigger,
        metrics: ctx_template.metrics.clone(),
    });
    let mut ctx = Context::new(
        client,
        ctx_template.reporter,
        ctx_template.metrics,
        ctx_template.advisor,
    );
    ctx.fleets = Some(controller.store());
    let reconciling = controller
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(fleet = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        });
    // The advisor runs only while this replica reconciles (it stops with leadership).
    tokio::select! {
        _ = reconciling => {}
        _ = advisor => {}
    }
}

/// What a controller run needs besides the client.
#[derive(Clone)]
pub struct ControllerDeps {
    pub reporter: Reporter,
    pub metrics: Metrics,
    pub advisor: Arc<dyn ScaleAdvisor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
