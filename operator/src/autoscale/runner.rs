//! The autoscaler at run time: every sync interval, per fleet with autoscaling on, read the
//! Deployments and pods, read the ready pods' metrics (their `/metrics` concurrently, or one
//! Prometheus query when the fleet sets `prometheusUrl`), decide (pure), mark the emptiest
//! gateways for removal before a scale-down, and ask the reconciler to apply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::behavior::{Behavior, History};
use super::decide::{self, Observed, Targets, TierDecision, TierInput};
use super::pods::{self, Previous, TierPods, DELETION_COST};
use super::prom::PromClient;
use super::scrape::{PodMetrics, Scraper};
use crate::build::{names, selector_string, Component, Owner};
use crate::controller::{AdvisorEnv, ScaleAdvisor};
use crate::crd::{GameFleet, TierAutoscaling};
use crate::error::Error;
use crate::scaling::{ScaleDecision, ScalingLimit};
use crate::status::LoadSample;

/// Pods scraped at once per tier.
const SCRAPE_CONCURRENCY: usize = 32;
/// How often the loop looks for fleets that are due.
const TICK: Duration = Duration::from_millis(250);

/// Settings of the autoscaler.
#[derive(Clone, Copy, Debug)]
pub struct AutoscalerConfig {
    /// Timeout of one pod scrape (connect + answer).
    pub scrape_timeout: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            scrape_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Default)]
struct FleetState {
    gateway: History,
    engine: History,
    gateway_prev: HashMap<String, Previous>,
    engine_prev: HashMap<String, Previous>,
    decision: Option<(Instant, ScaleDecision)>,
    load: Option<LoadSample>,
    next_due: Option<Instant>,
}

/// Samples load and keeps the latest decision per fleet ([`ScaleAdvisor`]).
pub struct Autoscaler {
    scraper: Scraper,
    prometheus: PromClient,
    fleets: Mutex<HashMap<ObjectRef<GameFleet>, FleetState>>,
}

impl Autoscaler {
    pub fn new(cfg: AutoscalerConfig) -> Self {
        Self {
            scraper: Scraper::new(cfg.scrape_timeout),
            prometheus: PromClient::new(cfg.scrape_timeout),
            fleets: Mutex::new(HashMap::new()),
        }
    }

    fn with_state<T>(&self, key: &ObjectRef<GameFleet>, f: impl FnOnce(&mut FleetState) -> T) -> T {
        let mut map = match self.fleets.lock() {
            Ok(m) => m,
            // A panic elsewhere must not stop autoscaling: the map itself is still consistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(map.entry(key.clone()).or_default())
    }

    async fn run_loop(self: Arc<Self>, env: AdvisorEnv) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let fleets: Vec<Arc<GameFleet>> = env
                .fleets
                .state()
                .into_iter()
                .filter(|f| f.spec.autoscaling.enabled && f.metadata.deletion_timestamp.is_none())
                .collect();
            if let Ok(mut map) = self.fleets.lock() {
                map.retain(|k, _| fleets.iter().any(|f| ObjectRef::from_obj(&**f) == *k));
            }
            let due: Vec<Arc<GameFleet>> = fleets
                .into_iter()
                .filter(|f| {
                    let interval = sync_interval(f);
                    self.with_state(&ObjectRef::from_obj(&**f), |s| {
                        if s.next_due.is_some_and(|d| d > now) {
                            return false;
                        }
                        s.next_due = Some(now + interval);
                        true
                    })
                })
                .collect();
            let syncs = due.iter().map(|f| {
                let env = &env;
                let this = &self;
                async move {
                    match this.sync(env, f).await {
                        Ok(true) => {
                            // Full channel: a reconcile is already queued for it.
                            let _ = env.trigger.clone().try_send(ObjectRef::from_obj(&**f));
                        }
                        Ok(false) => {}
                        Err(e) => warn!(fleet = %f.name_any(), error = %e, "autoscaler cannot sample the fleet"),
                    }
                }
            });
            futures::future::join_all(syncs).await;
        }
    }

    /// One sampling round for a fleet; `Ok(true)` when the reconciler should run.
    async fn sync(&self, env: &AdvisorEnv, fleet: &GameFleet) -> Result<bool, Error> {
        let Some(owner) = Owner::of(fleet) else {
            return Ok(false);
        };
        let key = ObjectRef::from_obj(fleet);
        let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &owner.namespace);
        let Some((gw_current, en_current)) = current_replicas(env, &owner).await? else {
            // The reconciler creates them first.
            return Ok(false);
        };
        let gw_pods = list_pods(
            &pods_api,
            &owner,
            Component::Gateway,
            fleet.spec.gateway.admin_port,
        )
        .await?;
        let en_pods = list_pods(
            &pods_api,
            &owner,
            Component::Engine,
            fleet.spec.engine.admin_port,
        )
        .await?;
        let (gw_scrapes, en_scrapes) = match &fleet.spec.autoscaling.prometheus_url {
            Some(url) => {
                self.query_prometheus(url, &owner, &gw_pods, &en_pods, env)
                    .await
            }
            None => {
                futures::join!(
                    self.scrape_all(&gw_pods, "gateway", env),
                    self.scrape_all(&en_pods, "engine", env)
                )
            }
        };
        let now = Instant::now();
        let a = &fleet.spec.autoscaling;
        let targets = targets(fleet);
        let (gd, go, ed, eo) = self.with_state(&key, |s| {
            let gl = pods::gateway_load(&gw_scrapes, gw_pods.unready, &mut s.gateway_prev);
            let el = pods::engine_load(&en_scrapes, en_pods.unready, now, &mut s.engine_prev);
            let (gd, go) = decide::gateway(
                now,
                &mut s.gateway,
                &tier_input(gw_current, &a.gateway),
                &gl,
                &targets,
            );
            let (ed, eo) = decide::engine(
                now,
                &mut s.engine,
                &tier_input(en_current, &a.engine),
                &el,
                &targets,
            );
            (gd, go, ed, eo)
        });
        record_metrics(env, &owner, &gd, &ed, &go, &eo);

        if gd.desired < gd.current {
            // Once per scale-down step: the emptiest gateways get the lowest cost.
            set_deletion_costs(&pods_api, &pods::deletion_costs(&gw_scrapes)).await;
        }
        log_decision(&owner, &gd, &ed);
        let decision = scale_decision(&gd, &ed);
        let load = load_sample(&go);
        let changed = self.with_state(&key, |s| {
            let changed = s.decision.as_ref().map(|(_, d)| d) != Some(&decision) || s.load != load;
            s.decision = Some((now, decision.clone()));
            if load.is_some() {
                s.load = load;
            }
            changed
        });
        Ok(changed || gd.desired != gd.current || ed.desired != ed.current)
    }

    async fn scrape_all(
        &self,
        pods: &TierPods,
        tier: &str,
        env: &AdvisorEnv,
    ) -> Vec<(String, Option<PodMetrics>)> {
        futures::stream::iter(pods.ready.iter().cloned())
            .map(|(name, addr)| async move {
                match self.scraper.scrape(addr).await {
                    Ok(m) => (name, Some(m)),
                    Err(e) => {
                        env.metrics
                            .autoscale
                            .scrape_failures
                            .with_label_values(&[tier])
                            .inc();
                        debug!(pod = %name, error = %e, "scrape failed");
                        (name, None)
                    }
                }
            })
            .buffer_unordered(SCRAPE_CONCURRENCY)
            .collect()
            .await
    }
}

type Scrapes = Vec<(String, Option<PodMetrics>)>;

impl Autoscaler {
    /// The ready pods' values from one Prometheus query. A pod Prometheus has no series for
    /// counts as a failed scrape; a failed query, as every scrape failing.
    async fn query_prometheus(
        &self,
        url: &str,
        owner: &Owner,
        gateways: &TierPods,
        engines: &TierPods,
        env: &AdvisorEnv,
    ) -> (Scrapes, Scrapes) {
        let found = self
            .prometheus
            .fleet(url, &owner.namespace, &owner.name)
            .await
            .inspect_err(|e| {
                env.metrics
                    .autoscale
                    .scrape_failures
                    .with_label_values(&["prometheus"])
                    .inc();
                warn!(fleet = %owner.name, namespace = %owner.namespace, error = %e, "Prometheus query failed");
            })
            .unwrap_or_default();
        let pick = |pods: &TierPods, tier: &str| -> Scrapes {
            pods.ready
                .iter()
                .map(|(name, _)| {
                    let m = found.get(name).cloned();
                    if m.is_none() {
                        env.metrics
                            .autoscale
                            .scrape_failures
                            .with_label_values(&[tier])
                            .inc();
                        debug!(pod = %name, "no series in Prometheus");
                    }
                    (name.clone(), m)
                })
                .collect()
        };
        (pick(gateways, "gateway"), pick(engines, "engine"))
    }
}

fn sync_interval(f: &GameFleet) -> Duration {
    Duration::from_secs(u64::try_from(f.spec.autoscaling.sync_interval_seconds.max(1)).unwrap_or(5))
}

/// The replicas of the fleet's gateway and engine Deployments, once both exist.
async fn current_replicas(env: &AdvisorEnv, owner: &Owner) -> Result<Option<(i32, i32)>, Error> {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &owner.namespace);
    let gw_name = names::gateway(&owner.name);
    let en_name = names::engine(&owner.name);
    let gw =
        deployments
            .get_opt(&gw_name)
            .await
            .map_err(Error::api("get", "Deployment", gw_name))?;
    let en =
        deployments
            .get_opt(&en_name)
            .await
            .map_err(Error::api("get", "Deployment", en_name))?;
    Ok(gw
        .and_then(|d| d.spec.replicas)
        .zip(en.and_then(|d| d.spec.replicas)))
}

/// The per-pod targets the fleet's spec sets.
fn targets(fleet: &GameFleet) -> Targets {
    let spec = &fleet.spec;
    let a = &spec.autoscaling;
    Targets {
        connections_per_pod: f64::from(spec.gateway.connections_per_pod)
            * f64::from(a.target_utilization_percent)
            / 100.0,
        p99_ms: f64::from(spec.latency.p99_target_ms),
        backlog_per_pod: f64::from(a.engine_backlog_per_pod),
        bets_per_second_per_pod: f64::from(a.engine_bets_per_second_per_pod),
    }
}

fn log_decision(owner: &Owner, gd: &TierDecision, ed: &TierDecision) {
    if gd.desired != gd.current || ed.desired != ed.current {
        info!(
            fleet = %owner.name, namespace = %owner.namespace,
            gateway_from = gd.current, gateway_to = gd.desired, gateway_reason = %gd.reason,
            engine_from = ed.current, engine_to = ed.desired, engine_reason = %ed.reason,
            "autoscaler decided"
        );
    } else {
        debug!(fleet = %owner.name, gateway = %gd.reason, engine = %ed.reason, "autoscaler: no change");
    }
}

/// What the reconciler is told: both tiers' replicas, reasons and limits hit.
fn scale_decision(gd: &TierDecision, ed: &TierDecision) -> ScaleDecision {
    ScaleDecision {
        gateway: gd.desired,
        engine: ed.desired,
        gateway_reason: gd.reason.clone(),
        engine_reason: ed.reason.clone(),
        limits: [("gateway", gd), ("engine", ed)]
            .into_iter()
            .filter_map(|(tier, d)| limit(tier, d))
            .collect(),
    }
}

/// The gateway load shown in the fleet's status, when it was observed.
fn load_sample(go: &Observed) -> Option<LoadSample> {
    go.total_connections.map(|c| LoadSample {
        total_connections: c.round() as i64,
        p99_ms: go.p99_ms.map(|p| p.round() as i64),
    })
}

fn tier_input(current: i32, t: &TierAutoscaling) -> TierInput {
    TierInput {
        current,
        min: t.min_replicas,
        max: t.max_replicas,
        behavior: Behavior::from_spec(&t.behavior),
    }
}

fn limit(tier: &'static str, d: &TierDecision) -> Option<ScalingLimit> {
    let (l, wanted) = d.limit?;
    Some(ScalingLimit {
        tier,
        wanted,
        bound: l.bound(),
        limit: d.desired,
    })
}

async fn list_pods(
    api: &Api<Pod>,
    owner: &Owner,
    c: Component,
    port: i32,
) -> Result<TierPods, Error> {
    let sel = selector_string(&owner.selector(Some(c)));
    let list = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(Error::api("list", "Pod", sel))?;
    Ok(pods::classify(&list.items, port))
}

/// Best effort: a pod that cannot be annotated is removed in the ReplicaSet's default order.
async fn set_deletion_costs(api: &Api<Pod>, costs: &[(String, i32)]) {
    let patches = costs.iter().map(|(name, cost)| async move {
        let patch = json!({ "metadata": { "annotations": { DELETION_COST: cost.to_string() } } });
        if let Err(e) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(pod = %name, error = %e, "cannot set the pod deletion cost");
        }
    });
    futures::future::join_all(patches).await;
}

fn record_metrics(
    env: &AdvisorEnv,
    owner: &Owner,
    gd: &TierDecision,
    ed: &TierDecision,
    go: &Observed,
    eo: &Observed,
) {
    let m = &env.metrics.autoscale;
    let (ns, name) = (owner.namespace.as_str(), owner.name.as_str());
    for (tier, d) in [("gateway", gd), ("engine", ed)] {
        m.desired_replicas
            .with_label_values(&[ns, name, tier])
            .set(i64::from(d.desired));
        m.current_replicas
            .with_label_values(&[ns, name, tier])
            .set(i64::from(d.current));
    }
    for (input, v) in [
        ("connections", go.total_connections),
        ("p99_ms", go.p99_ms),
        ("backlog", eo.backlog),
        ("bet_rate", eo.bet_rate),
    ] {
        if let Some(v) = v {
            m.input.with_label_values(&[ns, name, input]).set(v);
        }
    }
}

/// A decision is used only while the sampler keeps it fresh (stopped sampling must not pin an
/// old count).
fn fresh(at: Instant, fleet: &GameFleet) -> bool {
    at.elapsed() <= sync_interval(fleet) * 3 + Duration::from_secs(10)
}

impl ScaleAdvisor for Autoscaler {
    fn decision(&self, fleet: &GameFleet) -> Option<ScaleDecision> {
        if !fleet.spec.autoscaling.enabled {
            return None;
        }
        self.with_state(&ObjectRef::from_obj(fleet), |s| {
            s.decision
                .as_ref()
                .filter(|(at, _)| fresh(*at, fleet))
                .map(|(_, d)| d.clone())
        })
    }

    fn load(&self, fleet: &GameFleet) -> Option<LoadSample> {
        if !fleet.spec.autoscaling.enabled {
            return None;
        }
        self.with_state(&ObjectRef::from_obj(fleet), |s| s.load)
    }

    fn run(self: Arc<Self>, env: AdvisorEnv) -> BoxFuture<'static, ()> {
        self.run_loop(env).boxed()
    }
}
