//! The gateway's subscriber: one pub/sub connection carrying its rooms' and users' channels plus
//! the broadcast channel; re-established (with every subscription and this gateway's presence)
//! whenever Redis comes back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};
use redis::aio::{ConnectionManager, PubSubSink};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{lock, restore_presence, unavailable, RedisBus};
use crate::bus::{BusError, Delivery, Target};

#[derive(Clone)]
pub(super) struct PubSubMetrics {
    lag: Histogram,
    connected: IntGauge,
}

impl PubSubMetrics {
    fn new() -> prometheus::Result<Self> {
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

pub(super) struct Subscriber {
    channels: Arc<Mutex<HashSet<String>>>,
    sink: Arc<Mutex<Option<PubSubSink>>>,
    pub(super) metrics: PubSubMetrics,
    _stop: DropGuard,
}

impl Subscriber {
    pub(super) fn start(
        client: redis::Client,
        prefix: String,
        tx: mpsc::Sender<Delivery>,
        conn: ConnectionManager,
        members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
        presence_ttl: Duration,
    ) -> prometheus::Result<Self> {
        let stop = CancellationToken::new();
        let channels = Arc::new(Mutex::new(HashSet::from([RedisBus::channel(
            &prefix,
            &Target::All,
        )])));
        let sink = Arc::new(Mutex::new(None));
        let metrics = PubSubMetrics::new()?;
        let task = Task {
            client,
            prefix,
            tx,
            conn,
            members,
            presence_ttl,
            channels: Arc::clone(&channels),
            sink: Arc::clone(&sink),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(task.run());
        Ok(Self {
            channels,
            sink,
            metrics,
            _stop: stop.drop_guard(),
        })
    }

    fn current_sink(&self) -> Option<PubSubSink> {
        lock(&self.sink).clone()
    }

    pub(super) async fn subscribe(&self, channel: String) -> Result<(), BusError> {
        lock(&self.channels).insert(channel.clone());
        match self.current_sink() {
            Some(mut sink) => sink.subscribe(&channel).await.map_err(unavailable),
            // Subscribed as soon as the connection is back.
            None => Err(BusError::Unavailable("pub/sub connection down".into())),
        }
    }

    pub(super) async fn unsubscribe(&self, channel: String) -> Result<(), BusError> {
        lock(&self.channels).remove(&channel);
        match self.current_sink() {
            Some(mut sink) => sink.unsubscribe(&channel).await.map_err(unavailable),
            None => Ok(()),
        }
    }
}

struct Task {
    client: redis::Client,
    prefix: String,
    tx: mpsc::Sender<Delivery>,
    conn: ConnectionManager,
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    presence_ttl: Duration,
    channels: Arc<Mutex<HashSet<String>>>,
    sink: Arc<Mutex<Option<PubSubSink>>>,
    metrics: PubSubMetrics,
    stop: CancellationToken,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                done = self.session() => match done {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => tracing::warn!(error = %e, "redis pub/sub unavailable; retrying"),
                },
            }
            *lock(&self.sink) = None;
            self.metrics.connected.set(0);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One connection's life: subscribe everything, restore presence, forward messages.
    async fn session(&mut self) -> Result<(), BusError> {
        let pubsub = self.client.get_async_pubsub().await.map_err(unavailable)?;
        let (mut sink, mut stream) = pubsub.split();
        let wanted: Vec<String> = lock(&self.channels).iter().cloned().collect();
        sink.subscribe(&wanted).await.map_err(unavailable)?;
        *lock(&self.sink) = Some(sink.clone());
        // Channels added while we were subscribing (subscribing twice is harmless).
        let late: Vec<String> = lock(&self.channels)
            .iter()
            .filter(|c| !wanted.contains(c))
            .cloned()
            .collect();
        if !late.is_empty() {
            sink.subscribe(&late).await.map_err(unavailable)?;
        }
        restore_presence(
            &mut self.conn,
            &self.prefix,
            self.presence_ttl,
            &self.members,
        )
        .await?;
        self.metrics.connected.set(1);
        tracing::info!("redis pub/sub connected");
        while let Some(msg) = stream.next().await {
            let payload: String = match msg.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable pub/sub message");
                    continue;
                }
            };
            let delivery: Delivery = match super::history::decode(&payload) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, channel = msg.get_channel_name(), "malformed delivery");
                    continue;
                }
            };
            let lag = crate::redisx::now_ms().saturating_sub(delivery.emitted_at_ms);
            self.metrics.lag.observe(lag as f64);
            if self.tx.send(delivery).await.is_err() {
                return Ok(()); // the gateway stopped
            }
        }
        Err(BusError::Unavailable("pub/sub connection closed".into()))
    }
}
