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
    /// Rooms joined in this order (at least one); bets go to them in turn.
    pub rooms: Vec<String>,
    /// To mint a fresh token when a session cannot be resumed.
    pub secret: Arc<[u8]>,
}

/// Phases the worker moves its players through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Holding,
    Measuring,
    /// No new bets; wait for the settlements of acknowledged ones.
    Settling,
    Done,
}

/// Measurements shared by every player of a worker.
#[derive(Default)]
pub struct Tally {
    pub report: Mutex<WorkerReport>,
    pub delivery: Mutex<Option<Histogram<u64>>>,
    pub ack: Mutex<Option<Histogram<u64>>>,
    pub settle: Mutex<Option<Histogram<u64>>>,
    /// Close → `resumed` (µs).
    pub resume: Mutex<Option<Histogram<u64>>>,
    /// `join_game` sent → `game_joined` received, per room joined (µs).
    pub join: Mutex<Option<Histogram<u64>>>,
    /// Bets sent and not yet settled or rejected, across the worker's players.
    pub outstanding: std::sync::atomic::AtomicI64,
    /// Players that have stopped and counted their end state.
    pub finished: std::sync::atomic::AtomicU64,
}

impl Tally {
    pub(super) fn count(&self, f: impl FnOnce(&mut WorkerReport)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(super) fn latency(slot: &Mutex<Option<Histogram<u64>>>, micros: u64) {
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
    /// `error`: its code (reported with the rejection).
    #[serde(default)]
    code: Option<String>,
    /// Where a room or inbox frame sits (see docs/protocol.md, "Positions").
    #[serde(default)]
    position: Option<FramePosition>,
    #[serde(default)]
    resume_token: Option<String>,
    /// `authenticated`: the inbox position.
    #[serde(default)]
    inbox: Option<serde_json::Value>,
    /// `resumed`: per-room outcome.
    #[serde(default)]
    rooms: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FramePosition {
    #[serde(default)]
    game_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    offset: u64,
    epoch: String,
}

/// A stream position as the client keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pos {
    offset: u64,
    epoch: String,
}

impl Pos {
    fn from_json(v: &serde_json::Value) -> Option<Pos> {
        Some(Pos {
            offset: v.get("offset")?.as_u64()?,
            epoch: v.get("epoch")?.as_str()?.to_owned(),
        })
    }

    fn to_json(p: &Option<Pos>) -> serde_json::Value {
        match p {
            Some(p) => serde_json::json!({"offset": p.offset, "epoch": p.epoch}),
            None => serde_json::Value::Null,
        }
    }
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

/// A player's session state, kept across reconnects.
#[derive(Default)]
pub struct Session {
    resume_token: Option<String>,
    /// Every room joined, with the highest position seen in it.
    rooms: HashMap<String, Option<Pos>>,
    inbox: Option<Pos>,
    /// The last join or resume got the player back into every one of its rooms.
    in_rooms: bool,
    /// Sent, not yet acknowledged: key → (first sent, frame text). Re-sent after a reconnect.
    unacked: HashMap<String, (Instant, String)>,
    /// Acknowledged, not yet settled: key → first sent.
    unsettled: HashMap<String, Instant>,
    /// Keys settled (to spot a settlement delivered twice).
    settled: std::collections::HashSet<String>,
    /// Set after the first resume: from then on a frame at or before the known position is
    /// a duplicate delivery.
    resumed_once: bool,
    /// How long each `join_game` of the first join took to be answered (µs).
    pub join_us: Vec<u64>,
}

/// Open the socket and get the player authenticated and into its room.
pub async fn join(p: &Player) -> Result<(Ws, Session), ConnectError> {
    let mut session = Session::default();
    let ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, join_inner(p, &p.token, &mut session))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok((ws, session))
}

async fn open(p: &Player) -> Result<Ws, ConnectError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(p.source, 0)))?;
    let stream = socket.connect(p.server).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(p.url.as_str(), stream, Some(ws_config()))
            .await?;
    expect(&mut ws, "connected").await?;
    Ok(ws)
}

async fn join_inner(p: &Player, token: &str, s: &mut Session) -> Result<Ws, ConnectError> {
    let mut ws = open(p).await?;
    let auth = serde_json::json!({"type": "authenticate", "token": token});
    ws.send(Message::text(auth.to_string())).await?;
    let authed = expect(&mut ws, "authenticated").await?;
    s.resume_token = authed.resume_token;
    s.inbox = authed.inbox.as_ref().and_then(Pos::from_json);
    s.rooms.clear();
    for room in &p.rooms {
        let asked = Instant::now();
        let joined = join_room(&mut ws, room).await?;
        s.join_us.push(asked.elapsed().as_micros() as u64);
        let pos = joined.position.map(|p| Pos {
            offset: p.offset,
            epoch: p.epoch,
        });
        s.rooms.insert(room.clone(), pos);
    }
    s.in_rooms = true;
    Ok(ws)
}

/// Joins one room; a refusal that only says the gateway could not reach Redis in time is asked
/// again after a pause, as a real client would.
async fn join_room(ws: &mut Ws, room: &str) -> Result<Incoming, ConnectError> {
    let join = serde_json::json!({"type": "join_game", "gameId": room}).to_string();
    let mut attempt = 0u32;
    loop {
        ws.send(Message::text(join.as_str())).await?;
        match expect(ws, "game_joined").await {
            Err(ConnectError::Rejected(why)) if retry_join(&why, attempt) => {
                attempt += 1;
                tokio::time::sleep(reconnect_delay(attempt, random_unit())).await;
            }
            other => return other,
        }
    }
}

/// Joins tried per room before a refusal counts as a failed connection.
const JOIN_ATTEMPTS: u32 = 4;

/// Whether a join refused with `why` (after `attempt` retries) is tried again: only the
/// transient `ENGINE_UNAVAILABLE`; a full room or a bad room id stays refused.
fn retry_join(why: &str, attempt: u32) -> bool {
    why == "error:ENGINE_UNAVAILABLE" && attempt + 1 < JOIN_ATTEMPTS
}

/// Small buffers, like the gateway's: tungstenite zero-fills its whole read buffer (128 KiB by
/// default) before every socket read, which at tens of thousands of small frames a second made
/// memset most of the load generator's CPU and its own scheduling delay most of the measured tail.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// Read frames until one of type `want`; another player's join or a game event may come first.
async fn expect(ws: &mut Ws, want: &str) -> Result<Incoming, ConnectError> {
    const ERRORS: [&str; 3] = ["error", "auth_failed", "bet_rejected"];
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        if frame.kind == want {
            return Ok(frame);
        }
        if ERRORS.contains(&frame.kind.as_str()) {
            let why = frame.code.or(frame.reason);
            return Err(ConnectError::Rejected(match why {
                Some(code) => format!("{}:{code}", frame.kind),
                None => frame.kind,
            }));
        }
    }
    Err(ConnectError::Closed)
}

/// Reconnect delays: the first attempt after a drain close waits a random 0–100 ms (the server
/// already spread the closes); later attempts back off exponentially with full jitter.
fn reconnect_delay(attempt: u32, random: f64) -> Duration {
    let cap_ms = if attempt == 0 {
        100.0
    } else {
        (100.0 * 2f64.powi(attempt as i32)).min(2_000.0)
    };
    Duration::from_millis((random.clamp(0.0, 1.0) * cap_ms) as u64)
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// How long a player keeps trying to get back in after a close.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Reconnects (same URL) and resumes; replayed frames are observed like live ones. Falls back
/// to a fresh login when the session cannot be resumed.
async fn reconnect(p: &Player, s: &mut Session, tally: &Tally) -> Result<Ws, ConnectError> {
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(reconnect_delay(attempt, random_unit())).await;
        attempt += 1;
        let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, resume_once(p, s, tally))
            .await
            .unwrap_or(Err(ConnectError::Timeout));
        match result {
            Ok(ws) => return Ok(ws),
            Err(e) => {
                tally.count(|r| *r.resilience.resume_failures.entry(e.label()).or_default() += 1);
                if Instant::now() >= deadline {
                    return Err(e);
                }
            }
        }
    }
}

async fn resume_once(p: &Player, s: &mut Session, tally: &Tally) -> Result<Ws, ConnectError> {
    let Some(token) = s.resume_token.clone() else {
        return fresh_login(p, s).await;
    };
    let mut ws = open(p).await?;
    let frame = serde_json::json!({
        "type": "resume",
        "resumeToken": token,
        "rooms": p
            .rooms
            .iter()
            .map(|r| (r.clone(), Pos::to_json(s.rooms.get(r).unwrap_or(&None))))
            .collect::<serde_json::Map<_, _>>(),
        "inbox": Pos::to_json(&s.inbox),
    });
    ws.send(Message::text(frame.to_string())).await?;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let Ok(f) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        match f.kind.as_str() {
            "resumed" => {
                s.resumed_once = true;
                s.resume_token = f.resume_token.clone();
                let outcome = resume_outcome(&p.rooms, f.rooms.as_ref());
                let inbox_ok = f
                    .inbox
                    .as_ref()
                    .and_then(|i| i.get("recovered"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                for (room, position) in &outcome.restart {
                    s.rooms.insert(room.clone(), position.clone());
                }
                s.in_rooms = outcome.missing == 0;
                if !inbox_ok {
                    s.inbox = f
                        .inbox
                        .as_ref()
                        .and_then(|i| i.get("position"))
                        .and_then(Pos::from_json);
                }
                tally.count(|r| {
                    r.resilience.resumes += 1;
                    r.resilience.rooms_recovered += outcome.recovered;
                    r.resilience.rooms_not_recovered += outcome.restart.len() as u64;
                    r.resilience.rooms_not_rejoined += outcome.missing;
                    if !inbox_ok {
                        r.resilience.inboxes_not_recovered += 1;
                    }
                });
                resend(&mut ws, s, !inbox_ok).await?;
                return Ok(ws);
            }
            "auth_failed" => {
                // The resume token is no good: log in afresh (on a new connection).
                s.resume_token = None;
                return Err(ConnectError::Rejected("resume_refused".into()));
            }
            // Replayed frames are late by design: kept out of the delivery latency.
            _ => observe(&f, false, s, tally),
        }
    }
    Err(ConnectError::Closed)
}

/// What a `resumed` frame says about the player's rooms.
#[derive(Debug, Default, PartialEq)]
struct ResumeOutcome {
    /// Rooms rejoined with every missed frame replayed.
    recovered: u64,
    /// Rooms whose history could not be filled in (or that were not rejoined), with the
    /// position to continue from.
    restart: Vec<(String, Option<Pos>)>,
    /// Rooms not rejoined at all (absent from `rooms`, or with an `error`).
    missing: u64,
}

fn resume_outcome(asked: &[String], rooms: Option<&serde_json::Value>) -> ResumeOutcome {
    let mut out = ResumeOutcome::default();
    for room in asked {
        let entry = rooms.and_then(|r| r.get(room.as_str()));
        let rejoined = entry.is_some_and(|e| e.get("error").is_none());
        if !rejoined {
            out.missing += 1;
            out.restart.push((room.clone(), None));
            continue;
        }
        let recovered = entry
            .and_then(|e| e.get("recovered"))
            .and_then(|v| v.as_bool());
        if recovered == Some(true) {
            out.recovered += 1;
        } else {
            let position = entry
                .and_then(|e| e.get("position"))
                .and_then(Pos::from_json);
            out.restart.push((room.clone(), position));
        }
    }
    out
}

async fn fresh_login(p: &Player, s: &mut Session) -> Result<Ws, ConnectError> {
    let token = crate::auth::mint_token(&p.secret, &p.user_id, crate::auth::now_secs(), 300)
        .map_err(|_| ConnectError::Rejected("token".into()))?;
    let mut ws = join_inner(p, &token, s).await?;
    resend(&mut ws, s, true).await?;
    Ok(ws)
}

/// Re-sends unacknowledged bets (and, when settlements may have been lost, acknowledged but
/// unsettled ones) with their original idempotency keys.
async fn resend(ws: &mut Ws, s: &mut Session, unsettled_too: bool) -> Result<(), ConnectError> {
    if unsettled_too {
        // Their settlement may have been lost: the same key returns the original outcome.
        for (key, sent) in s.unsettled.drain() {
            s.unacked.entry(key).or_insert((sent, String::new()));
        }
    }
    for (_, text) in s.unacked.values() {
        if !text.is_empty() {
            ws.send(Message::text(text.clone())).await?;
        }
    }
    Ok(())
}

/// Receive and bet until the worker says it is done. With `resume`, a close (a drain's 1012 or
/// any other) is followed by a reconnect to the same URL and a resume.
pub async fn play(
    mut ws: Ws,
    p: Player,
    mut s: Session,
    tally: Arc<Tally>,
    phase: watch::Receiver<Phase>,
    bet: Option<(Duration, Duration, i64)>,
    resume: bool,
) {
    let mut seq: u64 = 0;
    // False once the player has given up (a close it could not come back from).
    let mut connected = true;
    let (period, offset, amount) = bet.unwrap_or((Duration::from_secs(3600), Duration::ZERO, 0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    // Ticks missed while connecting (or while this task was starved) are dropped, not sent in
    // a burst: the rate asked for is a ceiling, and the report gives the rate achieved.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // One long-lived future watches for the end. A `phase.changed()` made afresh in every turn of
    // the loop would register and unregister a waiter on the watch shared by every player, for
    // every frame received: a contended lock that cost more than handling the frame.
    let done = wait_while(phase.clone(), |p| *p != Phase::Done);
    tokio::pin!(done);
    // Another wakes the loop when measuring starts: `measuring` is only read when the loop
    // turns, and a player whose rooms are quiet (a long round) would otherwise start betting
    // only at its next frame.
    let started = wait_while(phase.clone(), |p| *p == Phase::Holding);
    tokio::pin!(started);
    let mut waiting_for_start = true;
    loop {
        let measuring = *phase.borrow() == Phase::Measuring;
        tokio::select! {
            () = &mut done => break,
            () = &mut started, if waiting_for_start => {
                waiting_for_start = false;
                // Restart the bet timer at this player's phase. Left alone, the tick missed
                // while holding would fire at once for every player: a burst of one bet per
                // player when measuring starts, which dominated the acknowledgement tail.
                ticker.reset_at(tokio::time::Instant::now() + offset);
            }
            _ = ticker.tick(), if bet.is_some() && measuring => {
                seq += 1;
                let (key, frame) = bet_frame(&p, seq, amount);
                s.unacked.insert(key, (Instant::now(), frame.clone()));
                tally.outstanding.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                tally.count(|r| r.bets_sent += 1);
                // A failed send is noticed (and the bet re-sent) when the read side closes.
                let _ = ws.send(Message::text(frame)).await;
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        tally.count(|r| r.disconnects += 1);
                        if !resume || *phase.borrow() == Phase::Done {
                            connected = false;
                            break;
                        }
                        let closed = Instant::now();
                        match reconnect(&p, &mut s, &tally).await {
                            Ok(back) => {
                                ws = back;
                                Tally::latency(&tally.resume, closed.elapsed().as_micros() as u64);
                                continue;
                            }
                            Err(e) => {
                                tally.count(|r| *r.connect_failures.entry(format!("reconnect:{}", e.label())).or_default() += 1);
                                connected = false;
                                break;
                            }
                        }
                    }
                    Some(Ok(_)) => continue,
                };
                if let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) {
                    observe(&frame, measuring, &mut s, &tally);
                }
            }
        }
    }
    count_end(&s, &tally, connected);
    let _ = ws.close(None).await;
}

/// Resolves once the phase no longer satisfies `waiting` (or the watch is gone).
async fn wait_while(mut phase: watch::Receiver<Phase>, waiting: impl Fn(&Phase) -> bool) {
    while waiting(&phase.borrow_and_update()) {
        if phase.changed().await.is_err() {
            break;
        }
    }
}

/// The player's `seq`-th bet: its idempotency key and frame (rooms taken in turn).
fn bet_frame(p: &Player, seq: u64, amount: i64) -> (String, String) {
    let key = format!("{}-{seq}", p.user_id);
    let room = &p.rooms[seq as usize % p.rooms.len()];
    let frame = serde_json::json!({
        "type": "place_bet",
        "gameId": room,
        "amount": amount,
        "selection": {"direction": "over", "target": 50},
        "idempotencyKey": key,
    })
    .to_string();
    (key, frame)
}

/// Counts how a player ended: still in its rooms, bets left unsettled or unacknowledged.
fn count_end(s: &Session, tally: &Tally, connected: bool) {
    if connected && s.in_rooms {
        tally.count(|r| r.resilience.players_in_rooms_at_end += 1);
    }
    if !s.unsettled.is_empty() || !s.unacked.is_empty() {
        let (unsettled, unacked) = (s.unsettled.len() as u64, s.unacked.len() as u64);
        tally.count(|r| {
            r.resilience.bets_unsettled += unsettled;
            r.resilience.bets_unacknowledged += unacked;
        });
    }
    tally
        .finished
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

fn observe(frame: &Incoming, measuring: bool, s: &mut Session, tally: &Tally) {
    if let Some(p) = &frame.position {
        if !track_position(frame, p, s, tally) {
            return;
        }
    }
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
        "server_draining" => {
            if let Some(t) = &frame.resume_token {
                s.resume_token = Some(t.clone());
            }
            tally.count(|r| r.resilience.drain_notices += 1);
        }
        "bet_acknowledged" => {
            if let Some((key, (t, _))) = frame
                .idempotency_key
                .as_ref()
                .and_then(|k| s.unacked.remove_entry(k))
            {
                Tally::latency(&tally.ack, t.elapsed().as_micros() as u64);
                tally.count(|r| r.bets_acknowledged += 1);
                s.unsettled.insert(key, t);
            }
        }
        "bet_settled" => on_bet_settled(frame, s, tally),
        "bet_rejected" => on_bet_rejected(frame, s, tally),
        _ => {}
    }
}

/// Records a frame's stream position, counting duplicates and gaps after a resume; false when
/// the frame is to be ignored (a duplicate, or not of this player's streams).
fn track_position(frame: &Incoming, p: &FramePosition, s: &mut Session, tally: &Tally) -> bool {
    let known = if let Some(game_id) = &p.game_id {
        match s.rooms.get_mut(game_id) {
            Some(known) => known,
            // Not one of this player's rooms.
            None => return false,
        }
    } else if p.user_id.is_some() {
        &mut s.inbox
    } else {
        return false;
    };
    match known {
        Some(k) if k.epoch == p.epoch && p.offset <= k.offset => {
            if s.resumed_once {
                tally.count(|r| r.resilience.duplicate_frames += 1);
            }
            return false;
        }
        // A `presence` frame stands for every join and leave up to its position: it may
        // advance the offset by more than one.
        Some(k)
            if k.epoch == p.epoch
                && p.offset > k.offset + 1
                && s.resumed_once
                && frame.kind != "presence" =>
        {
            tally.count(|r| r.resilience.gaps += 1);
        }
        _ => {}
    }
    *known = Some(Pos {
        offset: p.offset,
        epoch: p.epoch.clone(),
    });
    true
}

fn on_bet_settled(frame: &Incoming, s: &mut Session, tally: &Tally) {
    let Some(key) = frame.idempotency_key.as_ref() else {
        return;
    };
    if !s.settled.insert(key.clone()) {
        tally.count(|r| r.resilience.settlement_repeats += 1);
        return;
    }
    let sent = s
        .unsettled
        .remove(key)
        .or_else(|| s.unacked.remove(key).map(|(t, _)| t));
    if let Some(t) = sent {
        tally
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        Tally::latency(&tally.settle, t.elapsed().as_micros() as u64);
        tally.count(|r| r.bets_settled += 1);
    }
}

fn on_bet_rejected(frame: &Incoming, s: &mut Session, tally: &Tally) {
    let Some(key) = frame.idempotency_key.as_ref() else {
        return;
    };
    let known = s.unacked.remove(key).is_some() || s.unsettled.remove(key).is_some();
    if known {
        tally
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let reason = frame.reason.clone().unwrap_or_else(|| "unknown".into());
        tally.count(|r| *r.bets_rejected.entry(reason).or_default() += 1);
    }
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_engine_unavailable_joins_are_retried_and_only_a_few_times() {
        assert!(retry_join("error:ENGINE_UNAVAILABLE", 0));
        assert!(retry_join("error:ENGINE_UNAVAILABLE", JOIN_ATTEMPTS - 2));
        assert!(!retry_join("error:ENGINE_UNAVAILABLE", JOIN_ATTEMPTS - 1));
        assert!(!retry_join("error:ROOM_FULL", 0));
        assert!(!retry_join("auth_failed:TOKEN_EXPIRED", 0));
    }

    #[test]
    fn resume_outcome_counts_recovered_restarted_and_missing_rooms() {
        let asked: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let rooms = serde_json::json!({
            "a": {"recovered": true, "replayed": 3, "position": {"offset": 9, "epoch": "e"}},
            "b": {"recovered": false, "replayed": 0, "position": {"offset": 4, "epoch": "f"}},
            "c": {"recovered": false, "replayed": 0, "error": "ROOM_FULL"},
        });
        let out = resume_outcome(&asked, Some(&rooms));
        assert_eq!(out.recovered, 1);
        assert_eq!(out.missing, 2, "c has an error, d is absent");
        assert_eq!(
            out.restart,
            vec![
                (
                    "b".to_string(),
                    Some(Pos {
                        offset: 4,
                        epoch: "f".into()
                    })
                ),
                ("c".to_string(), None),
                ("d".to_string(), None),
            ]
        );
        let none = resume_outcome(&asked[..1], None);
        assert_eq!((none.recovered, none.missing), (0, 1));
    }

    #[test]
    fn reconnect_delays_jitter_under_a_growing_cap() {
        let cases = [
            (0, 0.0, 0),
            (0, 0.999, 99),
            (1, 1.0, 200),
            (2, 0.5, 200),
            (5, 1.0, 2_000),
            (30, 1.0, 2_000),
        ];
        for (attempt, r, want_ms) in cases {
            assert_eq!(
                reconnect_delay(attempt, r),
                Duration::from_millis(want_ms),
                "attempt {attempt}"
            );
        }
    }
}
