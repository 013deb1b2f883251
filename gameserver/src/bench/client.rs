//! One simulated player: connect from a chosen source address, authenticate, join a room, then
//! receive events and place bets while the worker measures.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::report::{record, WorkerReport};

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// How long the handshake (connect → authenticated → game_joined) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a simulated player connects and who it is.
pub struct Player {
    pub server: SocketAddr,
    pub url: String,
    pub source: Ipv4Addr,
    pub user_id: String,
    pub token: String,
    pub room: String,
}

/// Phases the worker moves its players through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Holding,
    Measuring,
    Done,
}

/// Measurements shared by every player of a worker.
#[derive(Default)]
pub struct Tally {
    pub report: Mutex<WorkerReport>,
    pub delivery: Mutex<Option<Histogram<u64>>>,
    pub ack: Mutex<Option<Histogram<u64>>>,
    pub settle: Mutex<Option<Histogram<u64>>>,
}

impl Tally {
    fn count(&self, f: impl FnOnce(&mut WorkerReport)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn latency(slot: &Mutex<Option<Histogram<u64>>>, micros: u64) {
        let mut h = slot.lock().unwrap_or_else(|e| e.into_inner());
        let h = h.get_or_insert_with(super::report::new_histogram);
        record(h, micros);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Why a player could not get into its room.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tcp")]
    Tcp(#[from] std::io::Error),
    #[error("websocket")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("timeout")]
    Timeout,
    #[error("rejected")]
    Rejected(String),
    #[error("closed")]
    Closed,
}

impl ConnectError {
    /// A short label for the failure table.
    pub fn label(&self) -> String {
        match self {
            ConnectError::Tcp(e) => format!("tcp:{:?}", e.kind()),
            ConnectError::Ws(_) => "websocket".into(),
            ConnectError::Timeout => "timeout".into(),
            ConnectError::Rejected(kind) => format!("rejected:{kind}"),
            ConnectError::Closed => "closed".into(),
        }
    }
}

/// Open the socket and get the player authenticated and into its room.
pub async fn join(p: &Player) -> Result<Ws, ConnectError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, join_inner(p))
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn join_inner(p: &Player) -> Result<Ws, ConnectError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(p.source, 0)))?;
    let stream = socket.connect(p.server).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(p.url.as_str(), stream).await?;
    expect(&mut ws, "connected").await?;
    let auth = serde_json::json!({"type": "authenticate", "token": p.token});
    ws.send(Message::text(auth.to_string())).await?;
    expect(&mut ws, "authenticated").await?;
    let join = serde_json::json!({"type": "join_game", "gameId": p.room});
    ws.send(Message::text(join.to_string())).await?;
    expect(&mut ws, "game_joined").await?;
    Ok(ws)
}

/// Read frames until one of type `want`; another player's join or a game event may come first.
async fn expect(ws: &mut Ws, want: &str) -> Result<(), ConnectError> {
    const ERRORS: [&str; 3] = ["error", "auth_failed", "bet_rejected"];
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        if frame.kind == want {
            return Ok(());
        }
        if ERRORS.contains(&frame.kind.as_str()) {
            return Err(ConnectError::Rejected(frame.kind));
        }
    }
    Err(ConnectError::Closed)
}

/// Receive and bet until the worker says it is done.
pub async fn play(
    mut ws: Ws,
    p: Player,
    tally: Arc<Tally>,
    mut phase: watch::Receiver<Phase>,
    bet: Option<(Duration, Duration, i64)>,
) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut seq: u64 = 0;
    let (period, offset, amount) = bet.unwrap_or((Duration::from_secs(3600), Duration::ZERO, 0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    loop {
        let measuring = *phase.borrow() == Phase::Measuring;
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Done {
                    break;
                }
            }
            _ = ticker.tick(), if bet.is_some() && measuring => {
                seq += 1;
                let key = format!("{}-{seq}", p.user_id);
                let frame = serde_json::json!({
                    "type": "place_bet",
                    "gameId": p.room,
                    "amount": amount,
                    "selection": {"direction": "over", "target": 50},
                    "idempotencyKey": key,
                });
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    tally.count(|r| r.disconnects += 1);
                    break;
                }
                pending.insert(key, Instant::now());
                tally.count(|r| r.bets_sent += 1);
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        tally.count(|r| r.disconnects += 1);
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                if let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) {
                    observe(&frame, measuring, &mut pending, &tally);
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

fn observe(
    frame: &Incoming,
    measuring: bool,
    pending: &mut HashMap<String, Instant>,
    tally: &Tally,
) {
    let sent_at = |key: &Option<String>| key.as_ref().and_then(|k| pending.get(k).copied());
    match frame.kind.as_str() {
        "game_event" if measuring => {
            if let Some(ts) = frame.timestamp {
                // Wall clock µs now minus the engine's ms timestamp: same host, same clock.
                Tally::latency(
                    &tally.delivery,
                    now_us().saturating_sub(ts.saturating_mul(1000)),
                );
                tally.count(|r| r.events += 1);
            }
        }
        "bet_acknowledged" => {
            if let Some(t) = sent_at(&frame.idempotency_key) {
                Tally::latency(&tally.ack, t.elapsed().as_micros() as u64);
                tally.count(|r| r.bets_acknowledged += 1);
            }
        }
        "bet_settled" => {
            if let Some(t) = frame
                .idempotency_key
                .as_ref()
                .and_then(|k| pending.remove(k))
            {
                Tally::latency(&tally.settle, t.elapsed().as_micros() as u64);
                tally.count(|r| r.bets_settled += 1);
            }
        }
        "bet_rejected"
            if frame
                .idempotency_key
                .as_ref()
                .and_then(|k| pending.remove(k))
                .is_some() =>
        {
            let reason = frame.reason.clone().unwrap_or_else(|| "unknown".into());
            tally.count(|r| *r.bets_rejected.entry(reason).or_default() += 1);
        }
        _ => {}
    }
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
