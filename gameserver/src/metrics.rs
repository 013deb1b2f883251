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
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let active_connections = IntGauge::new(
            "ws_active_connections",
            "Open WebSocket connections on this gateway",
        )?;
        let authenticated_connections = IntGauge::new(
            "ws_authenticated_connections",
            "Open WebSocket connections that have authenticated",
        )?;
        let rooms = IntGauge::new("ws_rooms", "Rooms with at least one member on this gateway")?;
        let message_latency_ms = Histogram::with_opts(
            HistogramOpts::new(
                "ws_message_latency_ms",
                "Delay from engine emission to the frame being written to the player socket",
            )
            .buckets(LATENCY_BUCKETS_MS.to_vec()),
        )?;
        let bet_submit_ms = Histogram::with_opts(
            HistogramOpts::new(
                "ws_bet_submit_latency_ms",
                "Time to queue a bet durably on the bus: what a player waits for bet_acknowledged, besides the network",
            )
            .buckets(SUBMIT_BUCKETS_MS.to_vec()),
        )?;
        let sent_vec = IntCounterVec::new(
            Opts::new("ws_messages_total", "Frames sent to players, by frame type"),
            &["type"],
        )?;
        let received = IntCounterVec::new(
            Opts::new(
                "ws_messages_received_total",
                "Frames received from players, by message type (\"invalid\" when undecodable)",
            ),
            &["type"],
        )?;
        let bets = IntCounterVec::new(
            Opts::new(
                "ws_bets_total",
                "place_bet requests by gateway outcome (acknowledged or rejected)",
            ),
            &["result"],
        )?;
        let bet_rejections = IntCounterVec::new(
            Opts::new(
                "ws_bet_rejections_total",
                "Bets the gateway rejected, by reason",
            ),
            &["reason"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("ws_errors_total", "error frames sent, by code"),
            &["code"],
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new("ws_disconnects_total", "Closed connections, by cause"),
            &["reason"],
        )?;
        registry.register(Box::new(active_connections.clone()))?;
        registry.register(Box::new(authenticated_connections.clone()))?;
        registry.register(Box::new(rooms.clone()))?;
        registry.register(Box::new(message_latency_ms.clone()))?;
        registry.register(Box::new(bet_submit_ms.clone()))?;
        registry.register(Box::new(sent_vec.clone()))?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(bets.clone()))?;
        registry.register(Box::new(bet_rejections.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        let draining = IntGauge::new("gateway_draining", "1 while this gateway is draining")?;
        let drain_duration_seconds = prometheus::Gauge::new(
            "gateway_drain_duration_seconds",
            "Duration of the last completed drain (0 until a drain finished)",
        )?;
        let refused_upgrades = IntCounter::new(
            "gateway_refused_upgrades_total",
            "WebSocket upgrades refused (503) because the gateway was draining",
        )?;
        registry.register(Box::new(draining.clone()))?;
        registry.register(Box::new(drain_duration_seconds.clone()))?;
        registry.register(Box::new(refused_upgrades.clone()))?;
        let resumed_streams = IntCounterVec::new(
            Opts::new(
                "ws_resumed_streams_total",
                "Rooms and inboxes named by resume requests, by result (recovered or not_recovered)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(resumed_streams.clone()))?;
        let refused_connections = IntCounterVec::new(
            Opts::new(
                "ws_refused_connections_total",
                "Connections refused at the player port's caps, by reason (connection_cap: the gateway is full; ip_cap: too many from one address)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused_connections.clone()))?;
        // Resolve the per-type counters once: sending is the hot path.
        let sent = FrameKind::ALL
            .iter()
            .map(|k| sent_vec.with_label_values(&[k.as_str()]))
            .collect();
        Ok(Self {
            active_connections,
            authenticated_connections,
            rooms,
            message_latency_ms,
            bet_submit_ms,
            sent,
            received,
            bets,
            bet_rejections,
            errors,
            disconnects,
            draining,
            drain_duration_seconds,
            refused_upgrades,
            resumed_streams,
            refused_connections,
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
