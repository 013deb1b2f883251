use std::time::Duration;

use gameserver::bus::Target;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn room_capacity_gives_room_full() {
    let mut cfg = config();
    cfg.room_capacity = 2;
    let gw = start(cfg).await;
    let _a = Client::in_room(gw.addr, "a", "g").await;
    let _b = Client::in_room(gw.addr, "b", "g").await;
    let mut c = Client::user(gw.addr, "c").await;
    c.send(json!({"type":"join_game","gameId":"g"})).await;
    assert_eq!(c.recv().await["code"], "ROOM_FULL");
    // The refused join left no trace: a bet there is refused as not in the room.
    c.send(json!({"type":"place_bet","gameId":"g","amount":1,"selection":{},"idempotencyKey":"k"}))
        .await;
    assert_eq!(c.recv().await["reason"], "NOT_IN_ROOM");
    drop(_b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.join("g").await["players"], 2);
}

#[tokio::test]
async fn rate_limit_answers_once_then_drops_until_the_next_second() {
    let mut cfg = config();
    cfg.messages_per_second = 5;
    let gw = start(cfg).await;
    let mut c = Client::connect(gw.addr).await;
    for _ in 0..12 {
        c.send(json!({"type":"ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(300), c.recv()).await {
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if v["code"] == "RATE_LIMITED" => limited += 1,
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!((pongs, limited), (5, 1));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.recv().await["type"], "pong");
}

#[tokio::test]
async fn connections_per_user_limit() {
    let mut cfg = config();
    cfg.connections_per_user = 1;
    let gw = start(cfg).await;
    let _first = Client::user(gw.addr, "alice").await;
    let mut second = Client::connect(gw.addr).await;
    second
        .send(json!({"type":"authenticate","token":token("alice")}))
        .await;
    assert_eq!(
        plain(second.recv().await),
        json!({"type":"auth_failed","reason":"TOO_MANY_CONNECTIONS"})
    );
    assert_eq!(u16::from(second.closed().await.unwrap().code), 4029);
    let _bob = Client::user(gw.addr, "bob").await;
}

fn fast_heartbeat() -> gameserver::gateway::GatewayConfig {
    let mut cfg = config();
    cfg.heartbeat_interval = Duration::from_millis(100);
    cfg.heartbeat_timeout = Duration::from_millis(300);
    cfg
}

#[tokio::test]
async fn heartbeat_closes_silent_connections_and_keeps_responsive_ones() {
    let gw = start(fast_heartbeat()).await;
    let mut watcher = Client::in_room(gw.addr, "watcher", "g").await;
    let mut silent = silent_client(gw.addr).await;
    // The silent client cannot authenticate without reading, so track it by count.
    wait_metric(&gw, "ws_active_connections", 2.0).await;
    // The watcher reads (and so answers pings) for well past the timeout.
    watcher.expect_silence(Duration::from_millis(900)).await;
    wait_metric(
        &gw,
        "ws_disconnects_total{reason=\"heartbeat_timeout\"}",
        1.0,
    )
    .await;
    wait_metric(&gw, "ws_active_connections", 1.0).await;
    watcher.send(json!({"type":"ping"})).await;
    assert_eq!(watcher.recv().await["type"], "pong");
    // The dropped socket was closed by the server: reading it ends.
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(WAIT, silent.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "server must close the silent socket");
}

#[tokio::test]
async fn heartbeat_timeout_removes_the_member_from_its_rooms() {
    let gw = start(fast_heartbeat()).await;
    let mut watcher = Client::in_room(gw.addr, "watcher", "g").await;
    let mut ghost = Client::in_room(gw.addr, "ghost", "g").await;
    assert_eq!(
        plain(watcher.recv().await),
        presence("g", 2, &["ghost"], &[])
    );
    // The ghost stops reading: it no longer answers pings.
    let left = watcher.recv_type("presence").await;
    assert_eq!(plain(left), presence("g", 1, &[], &["ghost"]));
    let _ = ghost.closed().await;
}

#[tokio::test]
async fn unauthenticated_connections_time_out_with_4001() {
    // The heartbeat sweeper runs every 30 s here: the deadline is the connection's own.
    let mut cfg = config();
    cfg.auth_timeout = Duration::from_millis(200);
    let gw = start(cfg).await;
    let started = std::time::Instant::now();
    let mut c = Client::connect(gw.addr).await;
    let close = c.closed().await.expect("close frame");
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "authentication timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "closed after {took:?}"
    );
    // An authenticated connection outlives the deadline.
    let mut alice = Client::user(gw.addr, "alice").await;
    alice.expect_silence(Duration::from_millis(400)).await;
    alice.send(json!({"type":"ping"})).await;
    assert_eq!(alice.recv().await["type"], "pong");
}

#[tokio::test]
async fn slow_consumer_is_disconnected_instead_of_buffering() {
    let mut cfg = config();
    cfg.send_queue = 8;
    cfg.write_timeout = Duration::from_secs(30);
    let gw = start(cfg).await;
    let mut watcher = Client::in_room(gw.addr, "watcher", "w").await;
    let mut slow = Client::in_room(gw.addr, "slow", "g").await;
    // `slow` stops reading; the room keeps getting 8 KiB events until the gateway gives up.
    let big = "x".repeat(8 * 1024);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sent = 0u64;
    loop {
        for _ in 0..200 {
            engine_publish(
                &gw.bus,
                Target::Room("g".into()),
                json!({"type":"game_event","event":"noise","data":{"pad":big},"timestamp":0}),
            )
            .await;
            sent += 1;
        }
        let text = metrics(&gw).await;
        if metric(&text, "ws_disconnects_total{reason=\"slow_consumer\"}") == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slow-consumer disconnect after {sent} frames"
        );
    }
    // The stalled connection ends (close frame or reset) once it is read again, after at most
    // what the kernel buffers held: memory did not grow with the backlog.
    let mut frames = 0u64;
    loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(WAIT, slow.ws.next())
            .await
            .expect("stream must end")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => frames += 1,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                if let Some(f) = f {
                    assert_eq!(u16::from(f.code), 1008);
                }
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(frames < sent, "received {frames} of {sent}");
    // Other rooms were unaffected.
    watcher.send(json!({"type":"ping"})).await;
    assert_eq!(watcher.recv().await["type"], "pong");
    wait_metric(&gw, "ws_active_connections", 1.0).await;
}
