//! The gateway's subscriber: one pub/sub connection carrying its rooms' and users' channels plus
//! the broadcast channel; re-established (with every subscription and this gateway's presence)
//! whenever Redis comes back.
//!
//! What the gateway wants to receive is kept apart from the connection: a subscription asked
//! for while the connection is down, or whose command fails, is not an error but part of what
//! the next connection subscribes. Callers that need the channel live (a join) wait for the
//! connection with [`Subscriber::wait_up`], bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::conn::unavailable;
use super::keys::Keys;
use super::presence;
use crate::bus::{BusError, Delivery, Target};
use crate::redisx::Conn;

#[derive(Clone)]
pub(super) struct PubSubMetrics {
    lag: Histogram,
    pub(super) connected: IntGauge,
}

impl PubSubMetrics {
    pub(super) fn new() -> prometheus::Result<Self> {
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "redis_pubsub_lag_ms",
                "Engine emission to arrival at this gateway over Redis pub/sub (ms)",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0]),
        )?;
        let connected = IntGauge::new(
            "redis_pubsub_connected",
            "1 while the pub/sub connection to Redis is up",
        )?;
        Ok(Self { lag, connected })
    }

    pub(super) fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.lag.clone()))?;
        r.register(Box::new(self.connected.clone()))
    }
}

/// Longest wait for Redis to answer a (un)subscribe or to accept the connection; past it the
/// connection is taken for dead and re-established.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Channels per `SUBSCRIBE` when a new connection subscribes everything wanted.
const SUBSCRIBE_CHUNK: usize = 1_000;

/// What the gateway wants to receive, and the connection receiving it (if one is up). A new
/// connection subscribes the whole set under this lock, so no channel falls between the set and
/// the sink. Single (un)subscribe commands are sent after the lock is released: holding it
/// across their round trips queued every join, resume and close of the gateway behind one
/// another. The order of two commands for the same channel is the caller's to keep (the
/// gateway changes a room's or a user's subscription under that room's or user's lock).
struct State {
    wanted: HashSet<String>,
    live: Option<Live>,
}

/// A connection that has subscribed every wanted channel.
struct Live {
    sink: PubSubSink,
    /// Which connection this is (a failed command takes down only its own connection).
    id: u64,
    /// Cancelled when a command on this connection failed: its session ends and a new
    /// connection subscribes `wanted` again.
    broken: CancellationToken,
}

impl State {
    /// The live connection failed a command: drop it and have it re-established.
    fn take_down(&mut self, up: &watch::Sender<bool>) {
        if let Some(live) = self.live.take() {
            live.broken.cancel();
        }
        up.send_replace(false);
    }

    /// As [`take_down`](Self::take_down), if connection `id` is still the live one (a command
    /// sent on a connection that has since been replaced says nothing about the new one).
    fn take_down_if(&mut self, id: u64, up: &watch::Sender<bool>) {
        if self.live.as_ref().is_some_and(|l| l.id == id) {
            self.take_down(up);
        }
    }

    /// The live connection's sink and id, if one is up.
    fn sink(&self) -> Option<(PubSubSink, u64)> {
        self.live.as_ref().map(|l| (l.sink.clone(), l.id))
    }
}

pub(super) struct Subscriber {
    state: Arc<tokio::sync::Mutex<State>>,
    up_tx: Arc<watch::Sender<bool>>,
    up: watch::Receiver<bool>,
    pub(super) metrics: PubSubMetrics,
    _stop: DropGuard,
}

impl Subscriber {
    pub(super) fn start(
        client: redis::Client,
        keys: Keys,
        tx: mpsc::Sender<Delivery>,
        conn: Conn,
        members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
        presence_ttl: Duration,
    ) -> prometheus::Result<Self> {
        let stop = CancellationToken::new();
        let state = Arc::new(tokio::sync::Mutex::new(State {
            wanted: HashSet::from([keys.channel(&Target::All)]),
            live: None,
        }));
        let (up_tx, up) = watch::channel(false);
        let up_tx = Arc::new(up_tx);
        let metrics = PubSubMetrics::new()?;
        let task = Task {
            client,
            keys,
            tx,
            conn,
            members,
            presence_ttl,
            state: Arc::clone(&state),
            up: Arc::clone(&up_tx),
            metrics: metrics.clone(),
            stop: stop.clone(),
            went_up: false,
            sessions: 0,
        };
        tokio::spawn(task.run());
        Ok(Self {
            state,
            up_tx,
            up,
            metrics,
            _stop: stop.drop_guard(),
        })
    }

    /// Adds `channel` to what this gateway receives. Never fails: while the connection is down
    /// (or when this command fails, which takes it down) the channel is subscribed by the next
    /// connection; [`wait_up`](Self::wait_up) tells when that has happened.
    pub(super) async fn subscribe(&self, channel: String) {
        let live = {
            let mut state = self.state.lock().await;
            state.wanted.insert(channel.clone());
            state.sink()
        };
        let Some((mut sink, id)) = live else { return };
        match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, channel, "pub/sub subscribe failed; reconnecting");
                self.state.lock().await.take_down_if(id, &self.up_tx);
            }
            Err(_) => {
                tracing::warn!(channel, "pub/sub subscribe timed out; reconnecting");
                self.state.lock().await.take_down_if(id, &self.up_tx);
            }
        }
    }

    /// Stops receiving `channel`. Never fails: a connection made later does not subscribe it.
    pub(super) async fn unsubscribe(&self, channel: String) {
        let live = {
            let mut state = self.state.lock().await;
            state.wanted.remove(&channel);
            state.sink()
        };
        let Some((mut sink, id)) = live else { return };
        if !matches!(
            tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&channel)).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(channel, "pub/sub unsubscribe failed; reconnecting");
            self.state.lock().await.take_down_if(id, &self.up_tx);
        }
    }

    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Resolves once a connection is up that receives every channel subscribed so far, or
    /// fails after `timeout`.
    pub(super) async fn wait_up(&self, timeout: Duration) -> Result<(), BusError> {
        wait_for_up(self.up.clone(), timeout).await
    }
}

/// Resolves once `up` is true, or fails after `timeout`.
pub(super) async fn wait_for_up(
    mut up: watch::Receiver<bool>,
    timeout: Duration,
) -> Result<(), BusError> {
    let waited = tokio::time::timeout(timeout, up.wait_for(|up| *up))
        .await
        .map(|r| r.map(|_| ()));
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(BusError::Unavailable("pub/sub subscriber stopped".into())),
        Err(_) => Err(BusError::Unavailable(format!(
            "pub/sub connection not up within {} ms",
            timeout.as_millis()
        ))),
    }
}

struct Task {
    client: redis::Client,
    keys: Keys,
    tx: mpsc::Sender<Delivery>,
    conn: Conn,
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    presence_ttl: Duration,
    state: Arc<tokio::sync::Mutex<State>>,
    up: Arc<watch::Sender<bool>>,
    metrics: PubSubMetrics,
    stop: CancellationToken,
    /// The current session got as far as subscribing (its end starts the backoff over).
    went_up: bool,
    /// Connections made so far (names each [`Live`]).
    sessions: u64,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                done = self.session() => match done {
                    Ok(()) => return, // the gateway stopped reading deliveries
                    Err(e) => tracing::warn!(error = %e, "redis pub/sub unavailable; retrying"),
                },
            }
            self.state.lock().await.take_down(&self.up);
            self.metrics.connected.set(0);
            if std::mem::take(&mut self.went_up) {
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One connection's life: subscribe everything wanted, restore presence, forward messages.
    async fn session(&mut self) -> Result<(), BusError> {
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| BusError::Unavailable("pub/sub connect timed out".into()))?
            .map_err(unavailable)?;
        let (mut sink, mut stream) = pubsub.split();
        let broken = self.stop.child_token();
        let channels = {
            // Joins wait on this lock meanwhile, so none falls between the set and the sink.
            let mut state = self.state.lock().await;
            let wanted: Vec<&String> = state.wanted.iter().collect();
            for chunk in wanted.chunks(SUBSCRIBE_CHUNK) {
                tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(chunk))
                    .await
                    .map_err(|_| BusError::Unavailable("pub/sub subscribe timed out".into()))?
                    .map_err(unavailable)?;
            }
            let channels = wanted.len();
            self.sessions += 1;
            state.live = Some(Live {
                sink,
                id: self.sessions,
                broken: broken.clone(),
            });
            channels
        };
        self.up.send_replace(true);
        self.went_up = true;
        self.metrics.connected.set(1);
        tracing::info!(channels, "redis pub/sub connected");
        // Redis may have lost this gateway's presence (a restart); written again beside the
        // session, so a slow or failed write never takes a working subscription down.
        tokio::spawn(restore_presence_until_done(
            self.conn.clone(),
            self.keys.clone(),
            self.presence_ttl,
            Arc::clone(&self.members),
            broken.clone(),
        ));
        loop {
            let msg = tokio::select! {
                _ = broken.cancelled() => {
                    return Err(BusError::Unavailable("pub/sub command failed".into()));
                }
                msg = stream.next() => msg,
            };
            let Some(msg) = msg else {
                return Err(BusError::Unavailable("pub/sub connection closed".into()));
            };
            let payload: String = match msg.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable pub/sub message");
                    continue;
                }
            };
            let Some(delivery) = decode_delivery(&payload, &self.metrics) else {
                continue;
            };
            if self.tx.send(delivery).await.is_err() {
                return Ok(()); // the gateway stopped
            }
        }
    }
}

/// A published payload as a delivery, its lag observed; `None` (logged) if malformed.
pub(super) fn decode_delivery(payload: &str, metrics: &PubSubMetrics) -> Option<Delivery> {
    match super::history::decode(payload) {
        Ok(d) => {
            let lag = crate::redisx::now_ms().saturating_sub(d.emitted_at_ms);
            metrics.lag.observe(lag as f64);
            Some(d)
        }
        Err(e) => {
            tracing::warn!(error = %e, "malformed delivery");
            None
        }
    }
}

/// Writes this gateway's memberships again, retrying until it worked or the session ended.
async fn restore_presence_until_done(
    mut conn: Conn,
    keys: Keys,
    ttl: Duration,
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    session: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = presence::refresh(&mut conn, &keys, ttl, &members);
        let failed = tokio::select! {
            _ = session.cancelled() => return,
            r = attempt => match r {
                Ok(()) => return,
                Err(e) => e,
            },
        };
        tracing::warn!(error = %failed, "restoring presence failed; retrying");
        tokio::select! {
            _ = session.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
