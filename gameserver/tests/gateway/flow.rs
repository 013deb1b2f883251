use std::time::Duration;

use gameserver::bus::{EngineBus, Target};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn full_flow_connect_auth_join_bet_settle_leave() {
    let gw = start(config()).await;
    let mut alice = Client::connect(gw.addr).await;
    assert!(uuid::Uuid::parse_str(&alice.connection_id).is_ok());
    alice
        .send(json!({"type":"authenticate","token":token("alice")}))
        .await;
    let authed = alice.recv().await;
    assert_eq!(authed["type"], "authenticated");
    assert_eq!(authed["userId"], "alice");
    assert!(authed["resumeToken"].is_string(), "{authed}");
    let joined = alice.join("g1").await;
    let joined_epoch = joined["position"]["epoch"].clone();
    assert_eq!(joined["position"]["offset"], 0, "{joined}");
    assert_eq!(
        plain(joined),
        json!({"type":"game_joined","gameId":"g1","players":1})
    );

    let mut bob = Client::user(gw.addr, "bob").await;
    assert_eq!(bob.join("g1").await["players"], 2);
    assert_eq!(plain(alice.recv().await), presence("g1", 2, &["bob"], &[]));

    alice
        .send(json!({"type":"place_bet","gameId":"g1","amount":250,
            "selection":{"direction":"over","target":50.5},"idempotencyKey":"bet-1","clientSeed":"lucky"}))
        .await;
    assert_eq!(
        plain(alice.recv().await),
        json!({"type":"bet_acknowledged","idempotencyKey":"bet-1","status":"processing"})
    );
    // Acknowledged only after the bet was handed to the bus: it is there already.
    let bets = gw.bus.next_bets(10, Duration::ZERO).await.unwrap();
    assert_eq!(bets.len(), 1);
    let bet = &bets[0].bet;
    assert_eq!(bet.user_id, "alice");
    assert_eq!(bet.game_id, "g1");
    assert_eq!(bet.amount, 250);
    assert_eq!(bet.idempotency_key, "bet-1");
    assert_eq!(bet.client_seed.as_deref(), Some("lucky"));
    assert_eq!(bet.selection, json!({"direction":"over","target":50.5}));
    assert_eq!(bet.gateway_id, "test-gw");

    // Engine frames are forwarded unchanged but for their resume position: to the user, and to
    // the room.
    let settled = json!({"type":"bet_settled","idempotencyKey":"bet-1","won":true,"payout":490,"balance":1240,"roundId":"r1"});
    engine_publish(&gw.bus, Target::User("alice".into()), settled.clone()).await;
    assert_eq!(plain(alice.recv().await), settled);
    let event =
        json!({"type":"game_event","event":"round_result","data":{"roll":73.21},"timestamp":1});
    engine_publish(&gw.bus, Target::Room("g1".into()), event.clone()).await;
    let to_alice = alice.recv().await;
    let to_bob = bob.recv().await;
    assert_eq!(to_alice, to_bob, "one serialisation for the whole room");
    assert_eq!(plain(to_alice.clone()), event);
    // Presence changes (alice's and bob's joins) came first in the room's stream.
    assert_eq!(to_alice["position"]["gameId"], "g1");
    assert_eq!(to_alice["position"]["offset"], 3);
    assert_eq!(to_alice["position"]["epoch"], joined_epoch);

    bob.send(json!({"type":"leave_game","gameId":"g1"})).await;
    assert_eq!(
        plain(bob.recv().await),
        json!({"type":"game_left","gameId":"g1","players":1})
    );
    assert_eq!(plain(alice.recv().await), presence("g1", 1, &[], &["bob"]));
    engine_publish(&gw.bus, Target::Room("g1".into()), event.clone()).await;
    assert_eq!(plain(alice.recv().await), event);
    bob.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn disconnect_broadcasts_player_left_and_cleans_up() {
    let gw = start(config()).await;
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    let bob = Client::in_room(gw.addr, "bob", "g").await;
    alice.recv_type("presence").await;
    drop(bob);
    assert_eq!(plain(alice.recv().await), presence("g", 1, &[], &["bob"]));
    wait_metric(&gw, "ws_active_connections", 1.0).await;
    assert_eq!(gw.gateway.connection_count(), 1);
    // Bob's user index entry is gone: a frame for him reaches nobody, alice gets nothing.
    engine_publish(
        &gw.bus,
        Target::User("bob".into()),
        json!({"type":"bet_settled"}),
    )
    .await;
    alice.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn root_path_upgrades_too_and_ping_pongs() {
    let gw = start(config()).await;
    let mut c = Client::connect_path(gw.addr, "/").await;
    let before = gameserver::clock::now_ms();
    c.send(json!({"type":"ping"})).await;
    let pong = c.recv().await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["serverTime"].as_u64().unwrap() >= before);
    let (status, _) = http_get(gw.addr, "/ws").await;
    assert_eq!(status, 400, "a plain GET on the WebSocket path is refused");
}

#[tokio::test]
async fn user_and_all_targets() {
    let gw = start(config()).await;
    let mut a1 = Client::user(gw.addr, "alice").await;
    let mut a2 = Client::user(gw.addr, "alice").await;
    let mut anon = Client::connect(gw.addr).await;
    let direct = json!({"type":"bet_settled","idempotencyKey":"k"});
    engine_publish(&gw.bus, Target::User("alice".into()), direct.clone()).await;
    assert_eq!(plain(a1.recv().await), direct);
    assert_eq!(plain(a2.recv().await), direct);
    let announcement = json!({"type":"system_announcement","message":"maintenance at 10:00"});
    engine_publish(&gw.bus, Target::All, announcement.clone()).await;
    for c in [&mut a1, &mut a2, &mut anon] {
        assert_eq!(plain(c.recv().await), announcement);
    }
    anon.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn rejoining_a_room_is_idempotent() {
    let gw = start(config()).await;
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    let mut bob = Client::in_room(gw.addr, "bob", "g").await;
    alice.recv_type("presence").await;
    assert_eq!(bob.join("g").await["players"], 2);
    alice.expect_silence(Duration::from_millis(150)).await;
}
