//! Graceful drain in-process: every client is told, closes are spread over the window in
//! batches, readiness and upgrades are refused at once, and the drain ends with no connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gameserver::gateway::GatewayConfig;

use crate::common::*;

#[tokio::test]
async fn drain_spreads_closes_over_the_window_and_refuses_new_players() {
    const N: usize = 20;
    let spread = Duration::from_millis(1_500);
    let gw = start(GatewayConfig {
        reconnect_spread: spread,
        drain_timeout: Duration::from_secs(5),
        ..config()
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(Client::in_room(gw.addr, &format!("p{i}"), "g").await);
    }

    // The admin route needs the configured bearer token.
    assert_eq!(http_post(gw.admin_addr, "/drain", None).await.0, 401);
    assert_eq!(
        http_post(gw.admin_addr, "/drain", Some("wrong")).await.0,
        401
    );
    assert_eq!(http_get(gw.admin_addr, "/readyz").await.0, 200);
    let started = Instant::now();
    let (status, body) = http_post(gw.admin_addr, "/drain", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 202, "{body}");

    assert_eq!(http_get(gw.admin_addr, "/readyz").await.0, 503);
    match tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => panic!("upgrade should be refused, got {:?}", other.map(|_| ())),
    }

    // Every client: server_draining with its own resume token, then 1012 near the announced time.
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let notice = c.recv_type("server_draining").await;
            let token = notice["resumeToken"].as_str().unwrap().to_owned();
            assert!(token.starts_with("v2."), "{notice}");
            let after = notice["reconnectAfterMs"].as_u64().unwrap();
            let close = c.closed().await.expect("a close frame");
            assert_eq!(u16::from(close.code), 1012, "client {i}");
            (after, started.elapsed())
        }));
    }
    let mut batches: BTreeMap<u64, usize> = BTreeMap::new();
    let mut closed_at = Vec::new();
    for t in tasks {
        let (after, at) = t.await.unwrap();
        assert!(after < spread.as_millis() as u64, "{after}");
        let skew = at.as_millis() as i64 - after as i64;
        assert!(
            (-50..400).contains(&skew),
            "closed at {at:?}, announced {after} ms"
        );
        *batches.entry(after).or_default() += 1;
        closed_at.push(at);
    }
    // 20 connections over 1.5 s: 10 batches of 2 (neither one by one nor all at once).
    assert_eq!(batches.len(), 10, "{batches:?}");
    assert!(batches.values().all(|&n| n == 2), "{batches:?}");
    let first = closed_at.iter().min().unwrap();
    let last = closed_at.iter().max().unwrap();
    assert!(
        *last - *first >= spread / 2,
        "closes spread over {:?}",
        *last - *first
    );

    tokio::time::timeout(Duration::from_secs(3), gw.gateway.drained())
        .await
        .expect("drain finishes once the last connection is gone");
    assert!(started.elapsed() < spread + Duration::from_secs(1));
    let text = metrics(&gw).await;
    assert_eq!(metric(&text, "gateway_draining"), Some(1.0));
    assert_eq!(metric(&text, "ws_active_connections"), Some(0.0));
    assert_eq!(
        metric(&text, "ws_messages_total{type=\"server_draining\"}"),
        Some(N as f64)
    );
    assert!(metric(&text, "gateway_drain_duration_seconds").unwrap() > 0.5);
    assert_eq!(metric(&text, "gateway_refused_upgrades_total"), Some(1.0));
}

#[tokio::test]
async fn drain_route_is_refused_without_a_configured_token() {
    use gameserver::admin::{drain_routes, Health};
    use std::sync::Arc;
    let health = Arc::new(Health::default());
    let l = gameserver::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(gameserver::server::serve(
        l,
        drain_routes(health.clone(), ""),
        stop.clone(),
        gameserver::server::ServeOptions::default(),
    ));
    let (status, body) = http_post(addr, "/drain", Some("")).await;
    assert_eq!(status, 403);
    assert!(body.contains("DRAIN_DISABLED"), "{body}");
    assert!(!health.is_draining());
    stop.cancel();
}
