//! A gateway over a real redis-server whose pub/sub connection is lost (or not up yet) while a
//! burst of players joins: every join is served, no player is dropped, and once the connection
//! is back the gateway receives every room it holds members in. A join that cannot be served
//! is refused with a code, and the player stays connected.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gameserver::admin::Health;
use gameserver::auth::{mint_token, now_secs, Authenticator};
use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::bus::{Delivery, GatewayBus, Target};
use gameserver::gateway::{Gateway, GatewayConfig};

use serde_json::{json, Value};
use support::RedisServer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"gateway-redis-test-secret";
const WAIT: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A gateway on 127.0.0.1:0 over the Redis bus, started without waiting for Redis.
async fn gateway(redis: &RedisServer, stop: &CancellationToken) -> SocketAddr {
    gateway_with(&redis.url(), GatewayConfig::default(), stop).await
}

async fn gateway_with(url: &str, cfg: GatewayConfig, stop: &CancellationToken) -> SocketAddr {
    let bus = RedisBus::connect(RedisBusConfig::new(url, "gw")).unwrap();
    let gw = Gateway::new(
        GatewayConfig {
            gateway_id: "gw".into(),
            ..cfg
        },
        bus,
        Authenticator::new(SECRET).unwrap(),
        &prometheus::Registry::new(),
        Arc::new(Health::default()),
    )
    .unwrap();
    let addr = support::serve_gateway(&gw, stop).await;
    addr
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("the gateway closed the connection")
            .expect("read error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Connect, authenticate and join `room`; returns the socket and the join's answer.
async fn join(addr: SocketAddr, user: String, room: String) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["type"], "connected");
    let token = mint_token(SECRET, &user, now_secs(), 300).unwrap();
    send(&mut ws, json!({"type": "authenticate", "token": token})).await;
    assert_eq!(recv(&mut ws).await["type"], "authenticated");
    let answer = join_again(&mut ws, &room).await;
    (ws, answer)
}

/// Sends `join_game` on an open connection; returns `game_joined` or the error.
async fn join_again(ws: &mut Ws, room: &str) -> Value {
    send(ws, json!({"type": "join_game", "gameId": room})).await;
    loop {
        let v = recv(ws).await;
        if v["type"] == "game_joined" || v["type"] == "error" {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

fn probe(room: &str, n: usize) -> Delivery {
    let frame = json!({"type": "game_event", "event": "probe", "data": {"n": n}});
    Delivery {
        target: Target::Room(room.into()),
        emitted_at_ms: 0,
        except_connection: None,
        frame: Arc::from(frame.to_string()),
    }
}

/// Reads until the probe numbered `n`.
async fn recv_probe(ws: &mut Ws, n: usize) {
    loop {
        let v = recv(ws).await;
        if v["event"] == "probe" {
            assert_eq!(v["data"]["n"], n, "{v}");
            return;
        }
    }
}

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_during_pubsub_reconnects_are_served_and_rooms_stay_live() {
    const PLAYERS: usize = 300;
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    // No wait for the gateway's pub/sub connection: the burst starts with the process.
    let addr = gateway(&redis, &stop).await;

    // Kill the gateway's pub/sub connection over and over while the players join.
    let killing = Arc::new(AtomicBool::new(true));
    let mut conn = redis_conn(&redis).await;
    let killer = {
        let killing = Arc::clone(&killing);
        let mut conn = conn.clone();
        tokio::spawn(async move {
            let mut kills = 0u32;
            while killing.load(Ordering::Acquire) {
                let killed: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                kills += killed as u32;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            kills
        })
    };
    // Every player is its room's first member here, so every join subscribes a channel.
    let mut joins = Vec::new();
    for i in 0..PLAYERS {
        joins.push(tokio::spawn(join(addr, format!("u{i}"), format!("r{i}"))));
        // Spread over about a second and a half: several reconnects fall inside the burst.
        if i % 25 == 24 {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    }
    let mut players = Vec::new();
    let mut refused = Vec::new();
    for (i, j) in joins.into_iter().enumerate() {
        let (ws, answer) = j.await.unwrap();
        if answer["type"] != "game_joined" {
            refused.push((i, answer));
        }
        players.push(ws);
    }
    killing.store(false, Ordering::Release);
    let kills = killer.await.unwrap();
    assert!(
        kills >= 3,
        "the pub/sub connection was killed only {kills} times"
    );
    assert!(
        refused.is_empty(),
        "{} of {PLAYERS} joins refused during pub/sub reconnects, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );

    // Once the connection is back, the gateway is subscribed to every room it holds.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("gf:room:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        if channels.len() == PLAYERS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribed to {} of {PLAYERS} rooms",
            channels.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a frame published to each room reaches its player.
    let engine = RedisBus::connect(RedisBusConfig::new(redis.url(), "engine")).unwrap();
    for i in 0..PLAYERS {
        engine.publish(probe(&format!("r{i}"), i)).await.unwrap();
    }
    for (i, ws) in players.iter_mut().enumerate() {
        recv_probe(ws, i).await;
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_cannot_be_received_is_refused_with_a_code_and_the_player_stays() {
    let redis = RedisServer::start();
    let mut admin = redis_conn(&redis).await;
    // The gateway's Redis user may do everything but subscribe: presence works, pub/sub not.
    let acl = |rule: &'static str| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("gw").arg(rule);
        cmd
    };
    for rule in ["on", ">pw", "~*", "&*", "+@all", "-subscribe"] {
        acl(rule).query_async::<()>(&mut admin).await.unwrap();
    }
    let url = format!("redis://gw:pw@127.0.0.1:{}/", redis.port);
    let stop = CancellationToken::new();
    let cfg = GatewayConfig {
        subscribe_wait: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let addr = gateway_with(&url, cfg, &stop).await;

    let (mut ws, answer) = join(addr, "ann".into(), "r".into()).await;
    assert_eq!(answer["code"], "ENGINE_UNAVAILABLE", "{answer}");
    // The join was undone, and the connection stays open and usable.
    let members: u64 = redis::cmd("ZCARD")
        .arg("gf:presence:r")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(members, 0, "a refused join left its presence behind");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");

    // Once subscribing works again, the same connection joins and receives the room.
    acl("+subscribe")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = join_again(&mut ws, "r").await;
        if answer["type"] == "game_joined" {
            break;
        }
        assert_eq!(answer["code"], "ENGINE_UNAVAILABLE", "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "never joined");
    }
    let engine = RedisBus::connect(RedisBusConfig::new(redis.url(), "engine")).unwrap();
    engine.publish(probe("r", 7)).await.unwrap();
    recv_probe(&mut ws, 7).await;
    stop.cancel();
}

/// Reads until a `presence` frame.
async fn recv_presence(ws: &mut Ws) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == "presence" {
            return v;
        }
    }
}

fn names(v: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = v[key]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_coalesced_on_every_gateway_of_the_room() {
    presence_is_coalesced_on_every_gateway_of_the_room_on(&RedisServer::start().url()).await;
}

/// The same with the bus on a three-node Redis Cluster: real WebSocket players on two
/// gateways, the room's frames over its shard channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_coalesced_on_every_gateway_of_the_room_on_a_redis_cluster() {
    presence_is_coalesced_on_every_gateway_of_the_room_on(&support::RedisCluster::start(3).url())
        .await;
}

async fn presence_is_coalesced_on_every_gateway_of_the_room_on(url: &str) {
    let stop = CancellationToken::new();
    let interval = Duration::from_millis(1500);
    let cfg = || GatewayConfig {
        presence_interval: interval,
        ..GatewayConfig::default()
    };
    let a = gateway_with(url, cfg(), &stop).await;
    let b = gateway_with(url, cfg(), &stop).await;
    let (mut alice, _) = join(a, "alice".into(), "lobby".into()).await;
    let (mut bob, _) = join(b, "bob".into(), "lobby".into()).await;
    // Once the room has been quiet for an interval, a lone join is told at once, on both
    // gateways, and opens the next interval. (Bob's join may still be told on A an interval
    // after alice's, hence the longer wait.)
    tokio::time::sleep(interval * 5 / 2).await;
    let (_opener, _) = join(b, "opener".into(), "lobby".into()).await;
    for ws in [&mut alice, &mut bob] {
        loop {
            let v = recv_presence(ws).await;
            if names(&v, "joined") == ["opener"] {
                assert_eq!(v["playerCount"], 3, "{v}");
                break;
            }
        }
    }

    // A burst on gateway B within that interval.
    let started = std::time::Instant::now();
    let joins: Vec<_> = (0..12)
        .map(|i| tokio::spawn(join(b, format!("p{i:02}"), "lobby".into())))
        .collect();
    let mut players = Vec::new();
    for j in joins {
        let (ws, answer) = j.await.unwrap();
        assert_eq!(answer["type"], "game_joined", "{answer}");
        players.push(ws);
    }
    assert!(started.elapsed() < interval / 2, "{:?}", started.elapsed());

    // Each gateway tells its own members once, with every name: alice on A, bob on B.
    let burst: Vec<String> = (0..12).map(|i| format!("p{i:02}")).collect();
    for ws in [&mut alice, &mut bob] {
        let v = recv_presence(ws).await;
        assert_eq!(v["playerCount"], 15, "{v}");
        assert_eq!(names(&v, "joined"), burst, "{v}");
        assert_eq!(v["joinedMore"], 0, "{v}");
        assert_eq!(v["position"]["gameId"], "lobby", "{v}");
        let quiet = tokio::time::timeout(Duration::from_millis(300), recv_presence(ws)).await;
        assert!(quiet.is_err(), "a second presence frame: {quiet:?}");
    }

    // Leaves on B reach A.
    players.truncate(10);
    let v = recv_presence(&mut alice).await;
    assert_eq!(v["playerCount"], 13, "{v}");
    assert_eq!(names(&v, "left"), ["p10", "p11"], "{v}");
    stop.cancel();
}
