//! Presence without the join storm: joins and leaves reach a room's members as at most one
//! `presence` frame per interval, while each joiner's own `game_joined` stays immediate.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Long enough that a burst of joins in a test falls within one interval.
const INTERVAL: Duration = Duration::from_millis(1500);

fn coalescing() -> gameserver::gateway::GatewayConfig {
    let mut cfg = config();
    cfg.presence_interval = INTERVAL;
    cfg
}

/// Joins `n` players to `game` at once; every `game_joined` comes straight back.
async fn burst(gw: &TestGateway, game: &str, prefix: &str, n: usize) -> Vec<Client> {
    let started = Instant::now();
    let joins = (0..n).map(|i| {
        let addr = gw.addr;
        let user = format!("{prefix}{i:02}");
        let game = game.to_owned();
        tokio::spawn(async move { Client::in_room(addr, &user, &game).await })
    });
    let mut clients = Vec::new();
    for j in joins {
        clients.push(j.await.unwrap());
    }
    assert!(
        started.elapsed() < INTERVAL / 2,
        "the burst took {:?}; the test needs it within one interval",
        started.elapsed()
    );
    clients
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_burst_of_joins_is_one_bounded_presence_frame_per_member() {
    let gw = start(coalescing()).await;
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    let mut players = burst(&gw, "g", "p", 30).await;

    // One frame for the whole burst, to the first member and to the last joiner alike.
    for member in [&mut alice, &mut players[29]] {
        let v = member.recv_type("presence").await;
        assert_eq!(v["gameId"], "g", "{v}");
        assert_eq!(v["playerCount"], 31, "{v}");
        let joined = names(&v, "joined");
        assert_eq!(
            joined.len(),
            gameserver::gateway::presence::MAX_NAMES,
            "{v}"
        );
        assert_eq!(v["joinedMore"], 30 - joined.len(), "{v}");
        assert!(joined.iter().all(|n| n.starts_with('p')), "{v}");
        assert_eq!(
            (names(&v, "left").len(), v["leftMore"].as_u64()),
            (0, Some(0))
        );
        member.expect_silence(Duration::from_millis(300)).await;
    }
    // One per member for the burst (alice's own join told nobody): 31 frames where one
    // frame per join would have cost 30 × 31 / 2 = 465.
    wait_metric(&gw, "ws_messages_total{type=\"presence\"}", 31.0).await;
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "ws_messages_total{type=\"presence\"}"),
        Some(31.0)
    );
    assert_eq!(
        metric(&text, "ws_messages_total{type=\"player_joined\"}"),
        Some(0.0)
    );

    // Leaves are told the same way.
    players.truncate(25);
    let v = alice.recv_type("presence").await;
    assert_eq!(v["playerCount"], 26, "{v}");
    let mut left = names(&v, "left");
    left.sort();
    assert_eq!(left, ["p25", "p26", "p27", "p28", "p29"], "{v}");
    assert!(names(&v, "joined").is_empty(), "{v}");
}

#[tokio::test]
async fn a_lone_join_is_told_at_once_and_not_to_the_joiner() {
    let gw = start(coalescing()).await;
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    // Alice's own join was the room's last presence change: let an interval pass.
    tokio::time::sleep(INTERVAL).await;
    let started = Instant::now();
    let mut bob = Client::in_room(gw.addr, "bob", "g").await;
    assert_eq!(plain(alice.recv().await), presence("g", 2, &["bob"], &[]));
    assert!(started.elapsed() < INTERVAL / 2, "not held back");
    bob.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn with_coalescing_off_every_change_is_its_own_frame() {
    let mut cfg = config();
    cfg.presence_interval = Duration::ZERO;
    let gw = start(cfg).await;
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    let _bob = Client::in_room(gw.addr, "bob", "g").await;
    let carol = Client::in_room(gw.addr, "carol", "g").await;
    assert_eq!(
        plain(alice.recv().await),
        serde_json::json!({"type":"player_joined","gameId":"g","userId":"bob","playerCount":2})
    );
    assert_eq!(alice.recv().await["userId"], "carol");
    drop(carol);
    assert_eq!(
        plain(alice.recv().await),
        serde_json::json!({"type":"player_left","gameId":"g","userId":"carol","playerCount":2})
    );
}
