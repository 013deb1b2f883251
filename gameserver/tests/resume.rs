//! Session resume over Redis with real sockets: a player drops mid-round, reconnects to another
//! gateway, gets its room back and everything it missed (room events and its bet settlement)
//! in order and once; a history that was lost is reported as `recovered:false`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gameserver::admin::Health;
use gameserver::auth::{mint_token, now_secs, Authenticator};
use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::engine::{self, EngineConfig};
use gameserver::gateway::{Gateway, GatewayConfig};
use gameserver::ledger::{Ledger, RedisLedger};

use serde_json::{json, Value};
use support::RedisServer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"resume-test-secret";
const WAIT: Duration = Duration::from_secs(10);

fn bus_cfg(redis: &RedisServer, node: &str) -> RedisBusConfig {
    let mut cfg = RedisBusConfig::new(redis.url(), node);
    cfg.lease_ttl = Duration::from_millis(1_000);
    cfg.claim_idle = Duration::from_millis(500);
    cfg
}

/// A gateway on 127.0.0.1:0 over the Redis bus; stops with the test.
async fn gateway(redis: &RedisServer, node: &str, stop: &CancellationToken) -> SocketAddr {
    gateway_with(redis, node, stop, GatewayConfig::default())
        .await
        .0
}

async fn gateway_with(
    redis: &RedisServer,
    node: &str,
    stop: &CancellationToken,
    cfg: GatewayConfig,
) -> (SocketAddr, Arc<Gateway>) {
    let bus = RedisBus::connect(bus_cfg(redis, node)).unwrap();
    let cfg = GatewayConfig {
        gateway_id: node.into(),
        ..cfg
    };
    let gw = Gateway::new(
        cfg,
        bus,
        Authenticator::new(SECRET).unwrap(),
        &prometheus::Registry::new(),
        Arc::new(Health::default()),
    )
    .unwrap();
    let addr = support::serve_gateway(&gw, stop).await;
    (addr, gw)
}

fn start_engine(redis: &RedisServer, stop: &CancellationToken) {
    let bus = RedisBus::connect(bus_cfg(redis, "engine")).unwrap();
    let ledger: Arc<dyn Ledger> = Arc::new(RedisLedger::connect(&redis.url(), "gf").unwrap());
    let cfg = EngineConfig {
        engine_id: "engine".into(),
        betting_window: Duration::from_millis(300),
        result_pause: Duration::from_millis(50),
        starting_balance: Some(10_000),
        rooms_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    tokio::spawn(engine::run(
        bus,
        ledger,
        cfg,
        prometheus::Registry::new(),
        stop.clone(),
    ));
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        let mut c = Client { ws };
        assert_eq!(c.recv().await["type"], "connected");
        c
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("stream ended")
                .expect("read error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    async fn recv_until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.recv().await;
            let done = pred(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

fn is_event(v: &Value, name: &str) -> bool {
    v["type"] == "game_event" && v["event"] == name
}

fn room_offset(v: &Value, game: &str) -> Option<u64> {
    (v["position"]["gameId"] == game).then(|| v["position"]["offset"].as_u64())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_gateway_replays_missed_events_and_the_settlement_once() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let a = gateway(&redis, "gw-a", &stop).await;
    let b = gateway(&redis, "gw-b", &stop).await;
    start_engine(&redis, &stop);

    // An observer on B records the room's stream as the reference.
    let mut observer = Client::connect(b).await;
    let t = mint_token(SECRET, "observer", now_secs(), 300).unwrap();
    observer
        .send(json!({"type":"authenticate","token":t}))
        .await;
    observer.recv().await;
    observer
        .send(json!({"type":"join_game","gameId":"g"}))
        .await;
    assert_eq!(observer.recv().await["type"], "game_joined");

    let mut alice = Client::connect(a).await;
    let t = mint_token(SECRET, "alice", now_secs(), 300).unwrap();
    alice.send(json!({"type":"authenticate","token":t})).await;
    let authed = alice.recv().await;
    assert_eq!(authed["type"], "authenticated");
    let resume_token = authed["resumeToken"].as_str().unwrap().to_owned();
    let inbox = authed["inbox"].clone();
    assert_eq!(inbox["offset"], 0, "{authed}");
    alice.send(json!({"type":"join_game","gameId":"g"})).await;
    let joined = alice.recv_until(|v| v["type"] == "game_joined").await;
    let mut room_pos = joined.last().unwrap()["position"].clone();

    // Bet in an open round, then vanish right after the acknowledgement (mid-round).
    let seen = alice.recv_until(|v| is_event(v, "round_started")).await;
    for v in &seen {
        if let Some(o) = room_offset(v, "g") {
            room_pos["offset"] = json!(o);
        }
    }
    alice
        .send(json!({"type":"place_bet","gameId":"g","amount":100,
            "selection":{"direction":"over","target":50},"idempotencyKey":"k1"}))
        .await;
    let acked = alice.recv_until(|v| v["type"] == "bet_acknowledged").await;
    for v in &acked {
        if let Some(o) = room_offset(v, "g") {
            room_pos["offset"] = json!(o);
        }
    }
    let last_seen = room_pos["offset"].as_u64().unwrap();
    drop(alice);

    // Two more rounds go by without alice.
    let mut reference: Vec<Value> = Vec::new();
    let mut results = 0;
    while results < 2 {
        let v = observer.recv().await;
        if is_event(&v, "round_result") {
            results += 1;
        }
        if room_offset(&v, "g").is_some() {
            reference.push(v);
        }
    }

    // Back, on the other gateway, with the resume token only.
    let mut back = Client::connect(b).await;
    back.send(json!({"type":"resume","resumeToken":resume_token,
        "rooms":{"g":room_pos},"inbox":inbox}))
        .await;
    let frames = back.recv_until(|v| v["type"] == "resumed").await;
    let resumed = frames.last().unwrap().clone();
    assert_eq!(resumed["userId"], "alice");
    assert!(resumed["resumeToken"].as_str().unwrap().starts_with("v2."));
    let room = &resumed["rooms"]["g"];
    assert_eq!(room["recovered"], true, "{resumed}");
    assert_eq!(room["players"], 2, "{resumed}");
    assert_eq!(resumed["inbox"]["recovered"], true, "{resumed}");

    // The settlement of the bet placed before the drop, exactly once.
    let settled: Vec<&Value> = frames
        .iter()
        .filter(|v| v["type"] == "bet_settled")
        .collect();
    assert_eq!(settled.len(), 1, "{frames:?}");
    assert_eq!(settled[0]["idempotencyKey"], "k1");
    assert_eq!(settled[0]["position"]["userId"], "alice");

    // Room events: exactly the observer's stream after last_seen, in order.
    let replayed: Vec<u64> = frames.iter().filter_map(|v| room_offset(v, "g")).collect();
    let top = room["position"]["offset"].as_u64().unwrap();
    assert_eq!(replayed, (last_seen + 1..=top).collect::<Vec<_>>());
    assert_eq!(room["replayed"], replayed.len());
    let expected: Vec<&Value> = reference
        .iter()
        .filter(|v| room_offset(v, "g").is_some_and(|o| o > last_seen && o <= top))
        .collect();
    let got: Vec<&Value> = frames
        .iter()
        .filter(|v| room_offset(v, "g").is_some())
        .collect();
    // The observer stops reading at its second round_result; compare what it saw.
    assert!(!expected.is_empty());
    assert_eq!(got[..expected.len()], expected[..]);
    assert!(got
        .iter()
        .any(|v| is_event(v, "round_result") && v["data"]["bets"] == 1));

    // Live events continue right after the replay: no duplicate, no gap.
    let mut next = top;
    let mut live = 0;
    while live < 4 {
        let v = back.recv().await;
        if let Some(o) = room_offset(&v, "g") {
            assert_eq!(o, next + 1, "{v}");
            next = o;
            live += 1;
        }
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_history_is_reported_as_not_recovered() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let a = gateway(&redis, "gw-a", &stop).await;
    start_engine(&redis, &stop);

    let mut bob = Client::connect(a).await;
    let t = mint_token(SECRET, "bob", now_secs(), 300).unwrap();
    bob.send(json!({"type":"authenticate","token":t})).await;
    let authed = bob.recv().await;
    let resume_token = authed["resumeToken"].as_str().unwrap().to_owned();
    bob.send(json!({"type":"join_game","gameId":"g"})).await;
    let frames = bob.recv_until(|v| is_event(v, "round_started")).await;
    let pos = frames.last().unwrap()["position"].clone();
    drop(bob);

    // The room's history is lost (as after a Redis failover without persistence).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("gf:hist:g")
        .arg("gf:hist:g:meta")
        .query_async(&mut conn)
        .await
        .unwrap();

    let mut back = Client::connect(a).await;
    back.send(json!({"type":"resume","resumeToken":resume_token,
        "rooms":{"g":{"offset":pos["offset"],"epoch":pos["epoch"]}}}))
        .await;
    let frames = back.recv_until(|v| v["type"] == "resumed").await;
    let resumed = frames.last().unwrap();
    let room = &resumed["rooms"]["g"];
    assert_eq!(room["recovered"], false, "{resumed}");
    assert_eq!(room["replayed"], 0);
    assert_ne!(room["position"]["epoch"], pos["epoch"], "a new epoch");
    assert!(
        frames.iter().all(|v| v["type"] != "game_event"),
        "nothing replayed across the gap: {frames:?}"
    );
    // Still in the room: live events of the new epoch arrive.
    let live = back.recv_until(|v| v["type"] == "game_event").await;
    assert_eq!(
        live.last().unwrap()["position"]["epoch"],
        room["position"]["epoch"]
    );

    // A resume with nothing usable is refused like a bad token.
    let mut intruder = Client::connect(a).await;
    intruder
        .send(json!({"type":"resume","resumeToken":"v2.626f62.99999999999.00000000000000000000000000000000.00"}))
        .await;
    assert_eq!(
        intruder.recv().await,
        json!({"type":"auth_failed","reason":"INVALID_TOKEN"})
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bet_acknowledged_before_a_drain_is_settled_after_the_resume() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let spread = GatewayConfig {
        reconnect_spread: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(5),
        ..GatewayConfig::default()
    };
    let (a, gw_a) = gateway_with(&redis, "gw-a", &stop, spread).await;
    let b = gateway(&redis, "gw-b", &stop).await;
    start_engine(&redis, &stop);

    let mut carol = Client::connect(a).await;
    let t = mint_token(SECRET, "carol", now_secs(), 300).unwrap();
    carol.send(json!({"type":"authenticate","token":t})).await;
    let authed = carol.recv().await;
    let mut inbox = authed["inbox"].clone();
    carol.send(json!({"type":"join_game","gameId":"d"})).await;
    let mut room = Value::Null;
    for v in carol.recv_until(|v| is_event(v, "round_started")).await {
        if v["type"] == "game_joined" || v["position"]["gameId"] == "d" {
            room = v["position"].clone();
        }
    }
    carol
        .send(json!({"type":"place_bet","gameId":"d","amount":100,
            "selection":{"direction":"under","target":50},"idempotencyKey":"drained-bet"}))
        .await;
    let mut frames = carol.recv_until(|v| v["type"] == "bet_acknowledged").await;
    gw_a.begin_drain();
    frames.extend(carol.recv_until(|v| v["type"] == "server_draining").await);
    let notice = frames.last().unwrap().clone();
    // Up to the close, frames still arrive (possibly the settlement itself).
    loop {
        match tokio::time::timeout(WAIT, carol.ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(c)))) => {
                assert_eq!(u16::from(c.code), 1012);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a 1012 close, got {other:?}"),
        }
    }
    for v in &frames {
        if v["position"]["gameId"] == "d" {
            room = v["position"].clone();
        }
        if v["position"]["userId"] == "carol" {
            inbox = v["position"].clone();
        }
    }
    let mut settled = frames.iter().filter(|v| v["type"] == "bet_settled").count();

    let mut back = Client::connect(b).await;
    back.send(json!({"type":"resume","resumeToken":notice["resumeToken"],
        "rooms":{"d":room},"inbox":inbox}))
        .await;
    let resumed = back.recv_until(|v| v["type"] == "resumed").await;
    let reply = resumed.last().unwrap();
    assert_eq!(reply["rooms"]["d"]["recovered"], true, "{reply}");
    assert_eq!(reply["inbox"]["recovered"], true, "{reply}");
    settled += resumed
        .iter()
        .filter(|v| v["type"] == "bet_settled")
        .count();
    if settled == 0 {
        // Settled after the resume: it arrives live on the new gateway.
        back.recv_until(|v| v["type"] == "bet_settled").await;
        settled = 1;
    }
    assert_eq!(settled, 1, "exactly one bet_settled across the drain");
    // And no second one with the next round.
    let later = back.recv_until(|v| is_event(v, "round_result")).await;
    assert!(
        later.iter().all(|v| v["type"] != "bet_settled"),
        "{later:?}"
    );
    stop.cancel();
}

/// A resume token is good for one resume on any gateway: a copy replayed after its owner
/// resumed (or a second resume with it) is refused with 4001, and the token the resume
/// handed out is the one that works next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_resume_token_is_refused_on_every_gateway() {
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let a = gateway(&redis, "gw-a", &stop).await;
    let b = gateway(&redis, "gw-b", &stop).await;

    let mut alice = Client::connect(a).await;
    let t = mint_token(SECRET, "alice", now_secs(), 300).unwrap();
    alice.send(json!({"type":"authenticate","token":t})).await;
    let authed = alice.recv().await;
    let first = authed["resumeToken"].as_str().unwrap().to_owned();
    drop(alice);

    let resume = |token: &str| json!({"type":"resume","resumeToken":token,"rooms":{}});
    let mut back = Client::connect(b).await;
    back.send(resume(&first)).await;
    let resumed = back.recv().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["userId"], "alice");
    let second = resumed["resumeToken"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    // The stolen copy of the first token, on either gateway.
    for addr in [a, b] {
        let mut thief = Client::connect(addr).await;
        thief.send(resume(&first)).await;
        assert_eq!(
            thief.recv().await,
            json!({"type":"auth_failed","reason":"INVALID_TOKEN"})
        );
        let close = loop {
            match tokio::time::timeout(WAIT, thief.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(c))))) => break c,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(u16::from(close.code), 4001);
    }
    // The token the resume gave works, once.
    let mut again = Client::connect(a).await;
    again.send(resume(&second)).await;
    assert_eq!(again.recv().await["type"], "resumed");
    stop.cancel();
}
