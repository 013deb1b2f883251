//! The gateway's subscriber on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`), so a room's
//! frames are published on and read from the one node holding the room's slot, instead of
//! being broadcast to every node as plain `PUBLISH` is in a cluster.
//!
//! One RESP3 cluster connection carries every shard channel; the client subscribes them again
//! on a node it reconnects to. What it cannot do is tell a failed command from a slow one, so
//! as on a single Redis, what the gateway wants is kept apart from what was confirmed: a
//! channel whose `SSUBSCRIBE` failed is retried until it works, and the subscriber counts as
//! up only while every wanted channel is confirmed and every node answers. A node that stopped
//! answering, or answers with a new run id (it restarted, or a replica took over), may have
//! lost this gateway's subscriptions and presence entries: every channel is subscribed again
//! and the presence written again then. (The client's own resubscription after reconnecting
//! was not enough: a node restarted between two commands went on without this gateway's
//! channels.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::conn::unavailable;
use super::keys::Keys;
use super::presence;
use super::pubsub::PubSubMetrics;
use crate::bus::{BusError, Delivery, Target};
use crate::redisx::Conn;
use crate::sync::lock;

/// Longest wait for an (un)subscribe or a health check.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How often failed subscriptions are retried and every node is checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);

struct State {
    wanted: HashSet<String>,
    /// Wanted but not confirmed (the command failed or timed out): retried by the checker.
    unconfirmed: HashSet<String>,
}

pub(super) struct Subscriber {
    conn: ClusterConnection,
    state: Arc<Mutex<State>>,
    up_tx: Arc<watch::Sender<bool>>,
    up: watch::Receiver<bool>,
    pub(super) metrics: PubSubMetrics,
    _stop: DropGuard,
}

impl Subscriber {
    /// Connect (lazily) and start the reader and the checker. `conn` writes presence back.
    pub(super) fn start(
        url: &str,
        keys: Keys,
        tx: mpsc::Sender<Delivery>,
        conn: Conn,
        members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
        presence_ttl: Duration,
    ) -> Result<Self, BusError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let sub = crate::redisx::cluster_pubsub(url, push_tx).map_err(unavailable)?;
        let metrics = PubSubMetrics::new().map_err(|e| BusError::Protocol(e.to_string()))?;
        let stop = CancellationToken::new();
        let all = keys.channel(&Target::All);
        let state = Arc::new(Mutex::new(State {
            wanted: HashSet::from([all.clone()]),
            unconfirmed: HashSet::from([all]),
        }));
        let (up_tx, up) = watch::channel(false);
        let up_tx = Arc::new(up_tx);
        tokio::spawn(read(push_rx, tx, metrics.clone(), stop.clone()));
        let checker = Checker {
            sub: sub.clone(),
            state: Arc::clone(&state),
            up: Arc::clone(&up_tx),
            metrics: metrics.clone(),
            conn,
            keys,
            members,
            presence_ttl,
        };
        tokio::spawn(checker.run(stop.clone()));
        Ok(Self {
            conn: sub,
            state,
            up_tx,
            up,
            metrics,
            _stop: stop.drop_guard(),
        })
    }

    /// Adds `channel` to what this gateway receives. Never fails: a failed command leaves it
    /// to the checker, and [`wait_up`](Self::wait_up) tells when it is confirmed.
    pub(super) async fn subscribe(&self, channel: String) {
        lock(&self.state).wanted.insert(channel.clone());
        let mut conn = self.conn.clone();
        let done = tokio::time::timeout(COMMAND_TIMEOUT, conn.ssubscribe(&channel)).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!(channel, "sharded subscribe failed; retrying");
            let mut state = lock(&self.state);
            // Unless an unsubscribe came meanwhile.
            if state.wanted.contains(&channel) {
                state.unconfirmed.insert(channel);
                // Not up until the checker has it confirmed: a join waiting on it waits.
                self.up_tx.send_replace(false);
            }
        }
    }

    /// Stops receiving `channel`.
    pub(super) async fn unsubscribe(&self, channel: String) {
        {
            let mut state = lock(&self.state);
            state.wanted.remove(&channel);
            state.unconfirmed.remove(&channel);
        }
        let mut conn = self.conn.clone();
        if !matches!(
            tokio::time::timeout(COMMAND_TIMEOUT, conn.sunsubscribe(&channel)).await,
            Ok(Ok(()))
        ) {
            // A channel left subscribed only brings frames the gateway drops (no members).
            tracing::debug!(channel, "sharded unsubscribe failed");
        }
    }

    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub(super) async fn wait_up(&self, timeout: Duration) -> Result<(), BusError> {
        super::pubsub::wait_for_up(self.up.clone(), timeout).await
    }
}

/// Forwards shard-channel messages to the gateway until it stops reading or the bus is dropped.
async fn read(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    tx: mpsc::Sender<Delivery>,
    metrics: PubSubMetrics,
    stop: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            _ = stop.cancelled() => return,
            p = pushes.recv() => p,
        };
        let Some(push) = push else { return };
        if push.kind != PushKind::SMessage {
            continue; // (un)subscribe confirmations and disconnect notices
        }
        let payload = match push.data.get(1).map(redis::from_redis_value_ref::<String>) {
            Some(Ok(p)) => p,
            _ => {
                tracing::warn!("unreadable shard-channel message");
                continue;
            }
        };
        let Some(delivery) = super::pubsub::decode_delivery(&payload, &metrics) else {
            continue;
        };
        if tx.send(delivery).await.is_err() {
            return; // the gateway stopped
        }
    }
}

/// Retries unconfirmed subscriptions, checks every node, and restores presence on a node
/// that comes back.
struct Checker {
    sub: ClusterConnection,
    state: Arc<Mutex<State>>,
    up: Arc<watch::Sender<bool>>,
    metrics: PubSubMetrics,
    conn: Conn,
    keys: Keys,
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    presence_ttl: Duration,
}

impl Checker {
    async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The run id of each primary when last seen: a new one is a node that restarted (or a
        // failover), which knows none of this gateway's subscriptions and may have lost its
        // presence entries, even if the client reconnected without a command failing.
        let mut known: Option<BTreeMap<String, String>> = None;
        let mut restore = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let nodes = self.node_run_ids().await;
            match (&nodes, &known) {
                (None, _) => restore = true,
                (Some(now), Some(before)) if now != before => restore = true,
                _ => {}
            }
            let nodes_up = nodes.is_some();
            if nodes.is_some() {
                known = nodes;
            }
            if nodes_up && restore {
                tracing::info!(
                    "a Redis node restarted or came back; subscribing and restoring presence"
                );
                {
                    let mut state = lock(&self.state);
                    let wanted = state.wanted.clone();
                    state.unconfirmed.extend(wanted);
                }
                match presence::refresh(
                    &mut self.conn,
                    &self.keys,
                    self.presence_ttl,
                    &self.members,
                )
                .await
                {
                    Ok(()) => restore = false,
                    Err(e) => tracing::warn!(error = %e, "restoring presence failed; retrying"),
                }
            }
            if nodes_up {
                self.retry_unconfirmed().await;
            }
            // Decided under the lock a failed subscribe takes to mark itself, so a failure
            // seen after the retry is never overwritten by a stale "up".
            let confirmed = {
                let state = lock(&self.state);
                let c = nodes_up && state.unconfirmed.is_empty();
                self.up.send_replace(c);
                c
            };
            self.metrics.connected.set(i64::from(confirmed));
        }
    }

    /// Each primary's address and run id, on the subscribing connection; `None` unless every
    /// primary answered.
    async fn node_run_ids(&mut self) -> Option<BTreeMap<String, String>> {
        let info = self.sub.route_command(
            redis::cmd("INFO").arg("server").to_owned(),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        );
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, info)
            .await
            .ok()?
            .ok()?;
        let by_node: HashMap<String, redis::Value> = redis::from_redis_value(reply).ok()?;
        let mut ids = BTreeMap::new();
        for (node, text) in by_node {
            let text: String = redis::from_redis_value(text).ok()?;
            ids.insert(node, run_id(&text)?.to_owned());
        }
        Some(ids)
    }

    /// Subscribes the unconfirmed channels (stops at the first failure).
    async fn retry_unconfirmed(&mut self) {
        let pending: Vec<String> = lock(&self.state).unconfirmed.iter().cloned().collect();
        for channel in pending {
            let done = tokio::time::timeout(COMMAND_TIMEOUT, self.sub.ssubscribe(&channel)).await;
            if matches!(done, Ok(Ok(()))) {
                lock(&self.state).unconfirmed.remove(&channel);
            } else {
                return;
            }
        }
    }
}

/// The `run_id` of an `INFO server` reply.
fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_is_known_by_its_run_id() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f1c0e\r\ntcp_port:7000\r\n";
        assert_eq!(super::run_id(info), Some("4f1c0e"));
        assert_eq!(super::run_id("# Server\r\n"), None);
    }
}
