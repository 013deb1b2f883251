//! Gateway metrics, registered in a shared `prometheus::Registry` served on the admin port.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::protocol::FrameKind;

/// Buckets of `ws_message_latency_ms`, as in the reference design.
pub const LATENCY_BUCKETS_MS: [f64; 7] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// Buckets of `ws_bet_submit_latency_ms`: finer below 10 ms, where the acknowledgement target
/// (p99 ≤ 10 ms) sits.
pub const SUBMIT_BUCKETS_MS: [f64; 10] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

#[derive(Clone)]
pub struct GatewayMetrics {
    pub active_connections: IntGauge,
    pub authenticated_connections: IntGauge,
    pub rooms: IntGauge,
    /// Engine emission (`Delivery.emitted_at_ms`) to the frame being written to the socket.
    pub message_latency_ms: Histogram,
    pub bet_submit_ms: Histogram,
    sent: Vec<IntCounter>,
    received: IntCounterVec,
    pub bets: IntCounterVec,
    pub bet_rejections: IntCounterVec,
    pub errors: IntCounterVec,
    pub disconnects: IntCounterVec,
    /// 1 while the gateway drains.
    pub draining: IntGauge,
    /// How long the last drain took (0 until one finished).
    pub drain_duration_seconds: prometheus::Gauge,
    /// WebSocket upgrades refused because the gateway was draining.
    pub refused_upgrades: IntCounter,
    /// Streams (rooms, inboxes) a `resume` asked for, by whether the gap was filled.
    pub resumed_streams: IntCounterVec,
    /// TCP connections refused at a cap, by which (`connection_cap`, `ip_cap`).
    pub refused_connections: IntCounterVec,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let r = registry;
        Ok(Self {
            active_connections: gauge(
                r,
                "ws_active_connections",
                "Open WebSocket connections on this gateway",
            )?,
            authenticated_connections: gauge(
                r,
                "ws_authenticated_connections",
                "Open WebSocket connections that have authenticated",
            )?,
            rooms: gauge(r, "ws_rooms", "Rooms with at least one member on this gateway")?,
            message_latency_ms: histogram(
                r,
                "ws_message_latency_ms",
                "Delay from engine emission to the frame being written to the player socket",
                &LATENCY_BUCKETS_MS,
            )?,
            bet_submit_ms: histogram(
                r,
                "ws_bet_submit_latency_ms",
                "Time to queue a bet durably on the bus: what a player waits for bet_acknowledged, besides the network",
                &SUBMIT_BUCKETS_MS,
            )?,
            sent: per_frame_kind(&counter_vec(
                r,
                "ws_messages_total",
                "Frames sent to players, by frame type",
                "type",
            )?),
            received: counter_vec(
                r,
                "ws_messages_received_total",
                "Frames received from players, by message type (\"invalid\" when undecodable)",
                "type",
            )?,
            bets: counter_vec(
                r,
                "ws_bets_total",
                "place_bet requests by gateway outcome (acknowledged or rejected)",
                "result",
            )?,
            bet_rejections: counter_vec(
                r,
                "ws_bet_rejections_total",
                "Bets the gateway rejected, by reason",
                "reason",
            )?,
            errors: counter_vec(r, "ws_errors_total", "error frames sent, by code", "code")?,
            disconnects: counter_vec(
                r,
                "ws_disconnects_total",
                "Closed connections, by cause",
                "reason",
            )?,
            draining: gauge(r, "gateway_draining", "1 while this gateway is draining")?,
            drain_duration_seconds: register(
                r,
                prometheus::Gauge::new(
                    "gateway_drain_duration_seconds",
                    "Duration of the last completed drain (0 until a drain finished)",
                )?,
            )?,
            refused_upgrades: register(
                r,
                IntCounter::new(
                    "gateway_refused_upgrades_total",
                    "WebSocket upgrades refused (503) because the gateway was draining",
                )?,
            )?,
            resumed_streams: counter_vec(
                r,
                "ws_resumed_streams_total",
                "Rooms and inboxes named by resume requests, by result (recovered or not_recovered)",
                "result",
            )?,
            refused_connections: counter_vec(
                r,
                "ws_refused_connections_total",
                "Connections refused at the player port's caps, by reason (connection_cap: the gateway is full; ip_cap: too many from one address)",
                "reason",
            )?,
        })
    }

    pub fn sent(&self, kind: FrameKind, n: u64) {
        if let Some(c) = self.sent.get(kind.index()) {
            c.inc_by(n);
        }
    }

    pub fn received(&self, kind: &str) {
        self.received.with_label_values(&[kind]).inc();
    }
}

/// `metric`, registered in `registry`.
fn register<M>(registry: &Registry, metric: M) -> Result<M, prometheus::Error>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    register(registry, IntGauge::new(name, help)?)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
    )
}

/// A counter with one label.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntCounterVec, prometheus::Error> {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label])?,
    )
}

/// The counter of each frame kind, resolved once: sending is the hot path.
fn per_frame_kind(sent: &IntCounterVec) -> Vec<IntCounter> {
    FrameKind::ALL
        .iter()
        .map(|k| sent.with_label_values(&[k.as_str()]))
        .collect()
}

/// The registry as Prometheus text exposition.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}
