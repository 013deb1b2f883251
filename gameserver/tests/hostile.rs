//! One hostile player with a valid token against a fleet on a real Redis: ten thousand junk
//! bets and ten thousand joins (made-up names, and the fleet's own rooms cycled past the
//! live-room cap) grow Redis by a bounded amount, and the honest players' bets still settle,
//! each once, with the money conserved.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use gameserver::admin::Health;
use gameserver::auth::{mint_token, now_secs, Authenticator};
use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::engine::{self, EngineConfig};
use gameserver::gateway::{Gateway, GatewayConfig};
use gameserver::ledger::{user_account, EntryKind, Ledger, RedisLedger, Transfer};

use serde_json::{json, Value};
use support::RedisServer;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"hostile-test-secret-of-at-least-32-bytes";
const JUNK_BETS: usize = 10_000;
const ROOM_NAMES: usize = 10_000;
const LIVE_ROOMS: u64 = 20;
const BET_RATE: u32 = 10;
/// What the attack may add to Redis's `used_memory`, all of it: about the footprint of the
/// fleet's hundred rooms running rounds, whatever the volume of the attack (it offers some
/// 60 MB of selections alone).
const MEMORY_BOUND: i64 = 8 * 1024 * 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn bus_cfg(redis: &RedisServer, node: &str) -> RedisBusConfig {
    let mut cfg = RedisBusConfig::new(redis.url(), node);
    cfg.lease_ttl = Duration::from_millis(1_000);
    cfg.claim_idle = Duration::from_millis(500);
    cfg.max_live_rooms = LIVE_ROOMS;
    cfg.bets_per_user_per_second = BET_RATE;
    cfg
}

async fn connect(addr: SocketAddr, user: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let token = mint_token(SECRET, user, now_secs(), 300).unwrap();
    ws.send(Message::text(
        json!({"type":"authenticate","token":token}).to_string(),
    ))
    .await
    .unwrap();
    for _ in 0..2 {
        let v = recv(&mut ws).await;
        if v["type"] == "authenticated" {
            return ws;
        }
    }
    panic!("{user} not authenticated");
}

async fn recv(ws: &mut (impl StreamExt<Item = tungstenite::Result<Message>> + Unpin)) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("read error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn send(tx: &mut SplitSink<Ws, Message>, v: Value) {
    tx.send(Message::text(v.to_string())).await.unwrap();
}

/// Counts every frame a connection receives by `type` and reason/code, until `bets` bet
/// answers came (if given) or it has been silent for 3 s.
fn tally(mut rx: SplitStream<Ws>, bets: Option<u64>) -> JoinHandle<HashMap<String, u64>> {
    tokio::spawn(async move {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut answers = 0;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(3), rx.next()).await
        {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            let kind = v["type"].as_str().unwrap_or("?");
            let detail = v["reason"].as_str().or(v["code"].as_str()).unwrap_or("");
            // The gateway's answer to a bet: acknowledged, or refused before any engine saw it
            // (an engine's later refusal of an acknowledged bet is not a second answer).
            let gateway_refusal = ["INVALID_SELECTION", "RATE_LIMITED", "ENGINE_UNAVAILABLE"];
            if kind == "bet_acknowledged"
                || (kind == "bet_rejected" && gateway_refusal.contains(&detail))
            {
                answers += 1;
            }
            *seen.entry(format!("{kind}:{detail}")).or_default() += 1;
            if Some(answers) == bets {
                break;
            }
        }
        seen
    })
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

async fn dbsize(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(conn).await.unwrap()
}

/// An honest player betting once per round in `room` until `stop`; returns the keys of the
/// acknowledged bets and of the settled ones.
fn honest(
    addr: SocketAddr,
    user: &'static str,
    stop: CancellationToken,
) -> JoinHandle<(Vec<String>, Vec<String>)> {
    tokio::spawn(async move {
        let mut ws = connect(addr, user).await;
        ws.send(Message::text(
            json!({"type":"join_game","gameId":"dice-1"}).to_string(),
        ))
        .await
        .unwrap();
        let (mut acked, mut settled) = (Vec::new(), Vec::new());
        let mut n = 0;
        let mut stopping_since = None;
        loop {
            if stop.is_cancelled() && stopping_since.is_none() {
                stopping_since = Some(tokio::time::Instant::now());
            }
            if stopping_since.is_some() && settled.len() == acked.len() {
                break;
            }
            let v = recv(&mut ws).await;
            let kind = match v["type"].as_str() {
                Some("game_event") => v["event"].as_str(),
                other => other,
            };
            match kind {
                Some("round_started") if stopping_since.is_none() => {
                    n += 1;
                    let key = format!("{user}-{n}");
                    let bet = json!({"type":"place_bet","gameId":"dice-1","amount":100,
                        "selection":{"direction":"over","target":50},"idempotencyKey":key});
                    ws.send(Message::text(bet.to_string())).await.unwrap();
                }
                Some("bet_acknowledged") => {
                    acked.push(v["idempotencyKey"].as_str().unwrap().to_owned())
                }
                Some("bet_settled") => {
                    settled.push(v["idempotencyKey"].as_str().unwrap().to_owned())
                }
                Some("bet_rejected") => panic!("{user}'s bet was rejected: {v}"),
                _ => {}
            }
        }
        (acked, settled)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_player_cannot_fill_redis_or_stop_honest_bets() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let ledger = Arc::new(RedisLedger::connect(&redis.url(), "gf").unwrap());
    for user in ["alice", "bob"] {
        ledger
            .transfer(&Transfer {
                key: format!("deposit-{user}"),
                kind: EntryKind::Deposit,
                from: "treasury".into(),
                to: user_account(user),
                amount: 1_000_000,
                memo: String::new(),
            })
            .await
            .unwrap();
    }
    let engine_ledger: Arc<dyn Ledger> = ledger.clone();
    tokio::spawn(engine::run(
        RedisBus::connect(bus_cfg(&redis, "engine")).unwrap(),
        engine_ledger,
        EngineConfig {
            engine_id: "engine".into(),
            betting_window: Duration::from_millis(300),
            result_pause: Duration::from_millis(50),
            rooms_poll: Duration::from_millis(100),
            ..EngineConfig::default()
        },
        prometheus::Registry::new(),
        stop.clone(),
    ));
    let gw = Gateway::new(
        GatewayConfig {
            gateway_id: "gw".into(),
            // The per-connection message limit is off: the fleet-wide bounds must hold alone.
            messages_per_second: 0,
            // The fleet's room names: a hundred of them.
            room_pattern: gameserver::gateway::room_pattern("dice-[0-9]{1,2}").unwrap(),
            ..GatewayConfig::default()
        },
        RedisBus::connect(bus_cfg(&redis, "gw")).unwrap(),
        Authenticator::new(SECRET).unwrap(),
        &prometheus::Registry::new(),
        Arc::new(Health::default()),
    )
    .unwrap();
    let addr = support::serve_gateway(&gw, &stop).await;

    let honest_stop = CancellationToken::new();
    let players = [
        honest(addr, "alice", honest_stop.clone()),
        honest(addr, "bob", honest_stop.clone()),
    ];
    // Warm up: rounds are running and honest bets settling before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (mem_before, keys_before) = (used_memory(&mut conn).await, dbsize(&mut conn).await);

    // Junk bets: half with a selection near the frame limit, half small with fresh keys and
    // no money behind them, all as fast as the socket takes them.
    let (mut bets_tx, bets_rx) = connect(addr, "mallory").await.split();
    let bets_seen = tally(bets_rx, Some(JUNK_BETS as u64));
    send(&mut bets_tx, json!({"type":"join_game","gameId":"dice-1"})).await;
    let fat = "x".repeat(12 * 1024);
    for i in 0..JUNK_BETS {
        let selection = if i % 2 == 0 {
            json!({"junk": fat})
        } else {
            json!({"direction":"over","target":50})
        };
        send(
            &mut bets_tx,
            json!({"type":"place_bet","gameId":"dice-1","amount":100,
                "selection":selection,"idempotencyKey":format!("junk-{i}")}),
        )
        .await;
    }
    // Made-up rooms: four connections, each holding ten at a time, then the next ten.
    let mut joiners = Vec::new();
    for c in 0..4 {
        let (mut tx, rx) = connect(addr, "mallory").await.split();
        let seen = tally(rx, None);
        let sender = tokio::spawn(async move {
            for batch in 0..ROOM_NAMES / 40 {
                // Every other batch names the fleet's rooms (cycling through all hundred), the
                // rest made-up ones.
                let names: Vec<String> = (0..10)
                    .map(|i| match batch % 2 {
                        0 => format!("dice-{}", (batch * 10 + c * 25 + i) % 100),
                        _ => format!("m{c}-{batch}-{i}"),
                    })
                    .collect();
                for n in &names {
                    send(&mut tx, json!({"type":"join_game","gameId":n})).await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                for n in &names {
                    send(&mut tx, json!({"type":"leave_game","gameId":n})).await;
                }
            }
            tx
        });
        joiners.push((sender, seen));
    }
    let mut room_replies: HashMap<String, u64> = HashMap::new();
    let mut senders = Vec::new();
    for (sender, seen) in joiners {
        senders.push(sender.await.unwrap());
        for (k, v) in seen.await.unwrap() {
            *room_replies.entry(k).or_default() += v;
        }
    }
    let bet_replies = bets_seen.await.unwrap();
    // Let the engine see the last rooms go, then the honest players finish their bets.
    tokio::time::sleep(Duration::from_secs(2)).await;
    honest_stop.cancel();
    let mut acked = 0;
    for p in players {
        let (a, s) = p.await.unwrap();
        let mut s_sorted = s.clone();
        s_sorted.sort();
        s_sorted.dedup();
        assert_eq!(s_sorted.len(), s.len(), "a bet settled twice: {s:?}");
        let mut a_sorted = a.clone();
        a_sorted.sort();
        assert_eq!(a_sorted, s_sorted, "acknowledged bets not settled");
        acked += a.len();
    }
    let (mem_after, keys_after) = (used_memory(&mut conn).await, dbsize(&mut conn).await);
    let grew = mem_after - mem_before;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    for k in keys {
        let kind: String = k.split(':').take(2).collect::<Vec<_>>().join(":");
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("keys by kind: {kinds:?}");
    eprintln!(
        "hostile player: {JUNK_BETS} junk bets {bet_replies:?}; {ROOM_NAMES} room names \
         {room_replies:?}; Redis used_memory {mem_before} -> {mem_after} (+{grew} bytes), keys \
         {keys_before} -> {keys_after}; honest bets acknowledged and settled once: {acked}"
    );
    drop(bets_tx);
    drop(senders);
    assert!(acked >= 4, "the honest players hardly bet: {acked}");
    assert!(
        grew < MEMORY_BOUND,
        "Redis grew by {grew} bytes (bound {MEMORY_BOUND})"
    );
    // Every junk bet had its answer: refused at the gateway or at the rate, or acknowledged
    // (and then refused by the ledger: no money).
    let answer = |k: &str| bet_replies.get(k).copied().unwrap_or(0);
    let answered = answer("bet_acknowledged:")
        + answer("bet_rejected:INVALID_SELECTION")
        + answer("bet_rejected:RATE_LIMITED");
    assert_eq!(answered, JUNK_BETS as u64, "{bet_replies:?}");
    assert_eq!(
        bet_replies.get("bet_rejected:INVALID_SELECTION"),
        Some(&(JUNK_BETS as u64 / 2))
    );
    assert!(
        bet_replies
            .get("bet_rejected:RATE_LIMITED")
            .copied()
            .unwrap_or(0)
            > 4_000
    );
    assert!(
        room_replies.get("error:ROOM_LIMIT").copied().unwrap_or(0) > 0,
        "{room_replies:?}"
    );
    // The money: every account sums to zero.
    let sum: i64 = ledger
        .accounts()
        .await
        .unwrap()
        .iter()
        .map(|(_, b)| b)
        .sum();
    assert_eq!(sum, 0);
    stop.cancel();
}
