use serde_json::json;

use gameserver::bus::Target;

use crate::common::*;

#[tokio::test]
async fn metrics_health_and_readiness() {
    let gw = start(config()).await;
    assert_eq!(http_get(gw.admin_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(gw.admin_addr, "/readyz").await.0, 200);

    let mut a = Client::in_room(gw.addr, "alice", "g").await;
    a.send(json!({"type":"ping"})).await;
    a.recv().await;
    a.send(
        json!({"type":"place_bet","gameId":"g","amount":10,"selection":{},"idempotencyKey":"k"}),
    )
    .await;
    a.recv().await;
    a.send_text("garbage").await;
    a.recv().await;
    engine_publish(
        &gw.bus,
        Target::Room("g".into()),
        json!({"type":"game_event","event":"round_started","data":{},"timestamp":0}),
    )
    .await;
    a.recv().await;

    let text = metrics(&gw).await;
    let expect = [
        ("ws_active_connections", 1.0),
        ("ws_authenticated_connections", 1.0),
        ("ws_rooms", 1.0),
        ("ws_messages_total{type=\"connected\"}", 1.0),
        ("ws_messages_total{type=\"pong\"}", 1.0),
        ("ws_messages_total{type=\"game_event\"}", 1.0),
        ("ws_messages_total{type=\"bet_acknowledged\"}", 1.0),
        ("ws_messages_received_total{type=\"place_bet\"}", 1.0),
        ("ws_messages_received_total{type=\"invalid\"}", 1.0),
        ("ws_bets_total{result=\"acknowledged\"}", 1.0),
        ("ws_errors_total{code=\"INVALID_PAYLOAD\"}", 1.0),
        ("ws_message_latency_ms_count", 1.0),
        ("ws_message_latency_ms_bucket{le=\"500\"}", 1.0),
        ("ws_bet_submit_latency_ms_count", 1.0),
        ("ws_bet_submit_latency_ms_bucket{le=\"+Inf\"}", 1.0),
    ];
    for (sample, want) in expect {
        assert_eq!(metric(&text, sample), Some(want), "{sample} in\n{text}");
    }
    for le in ["10", "25", "50", "100", "250", "+Inf"] {
        assert!(
            text.contains(&format!("ws_message_latency_ms_bucket{{le=\"{le}\"}}")),
            "{le}"
        );
    }
    // Bet submits resolve the 10 ms acknowledgement target: buckets below it.
    for le in ["0.5", "1", "2", "5", "10", "500"] {
        assert!(
            text.contains(&format!("ws_bet_submit_latency_ms_bucket{{le=\"{le}\"}}")),
            "{le}"
        );
    }

    // Draining (the hook for graceful drain): not ready, no new players.
    gw.health.draining.cancel();
    assert_eq!(http_get(gw.admin_addr, "/readyz").await.0, 503);
    assert_eq!(http_get(gw.admin_addr, "/healthz").await.0, 200);
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("upgrade should be refused, got {:?}", other.map(|_| ())),
    }
}
