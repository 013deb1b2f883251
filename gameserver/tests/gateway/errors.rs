use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gameserver::bus::memory::MemoryBus;
use gameserver::bus::{BetRequest, BusError, Delivery, GatewayBus, Position, Recovery, Target};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

async fn expect_error(c: &mut Client, frame: &str, code: &str) {
    c.send_text(frame).await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "error", "{frame} -> {reply}");
    assert_eq!(reply["code"], code, "{frame} -> {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn expect_bet_rejected(c: &mut Client, frame: Value, reason: &str) {
    c.send(frame.clone()).await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "bet_rejected", "{frame} -> {reply}");
    assert_eq!(reply["reason"], reason, "{frame} -> {reply}");
    assert_eq!(reply["idempotencyKey"], frame["idempotencyKey"]);
}

#[tokio::test]
async fn every_error_code_over_a_socket() {
    let mut cfg = config();
    cfg.rooms_per_connection = 1;
    cfg.messages_per_second = 0;
    let gw = start(cfg).await;
    let mut c = Client::connect(gw.addr).await;
    expect_error(&mut c, "{nope", "INVALID_PAYLOAD").await;
    expect_error(&mut c, "[1,2]", "INVALID_PAYLOAD").await;
    expect_error(&mut c, r#"{"gameId":"g"}"#, "INVALID_PAYLOAD").await;
    expect_error(&mut c, r#"{"type":"dance"}"#, "UNKNOWN_MESSAGE_TYPE").await;
    expect_error(
        &mut c,
        r#"{"type":"join_game","gameId":"g"}"#,
        "NOT_AUTHENTICATED",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"place_bet","gameId":"g"}"#,
        "NOT_AUTHENTICATED",
    )
    .await;
    c.ws.send_binary().await;
    let reply = c.recv().await;
    assert_eq!(reply["code"], "INVALID_PAYLOAD");

    c.send(json!({"type":"authenticate","token":token("alice")}))
        .await;
    assert_eq!(c.recv().await["type"], "authenticated");
    expect_error(
        &mut c,
        &json!({"type":"authenticate","token":token("alice")}).to_string(),
        "ALREADY_AUTHENTICATED",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"leave_game","gameId":"g"}"#,
        "NOT_IN_ROOM",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"join_game","gameId":""}"#,
        "INVALID_GAME_ID",
    )
    .await;
    expect_error(&mut c, r#"{"type":"join_game"}"#, "INVALID_GAME_ID").await;
    c.join("g").await;
    expect_error(
        &mut c,
        r#"{"type":"join_game","gameId":"h"}"#,
        "TOO_MANY_ROOMS",
    )
    .await;

    expect_error(
        &mut c,
        r#"{"type":"place_bet","gameId":"g","amount":1,"selection":{}}"#,
        "INVALID_IDEMPOTENCY_KEY",
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"place_bet","gameId":"g","amount":1,"selection":{},"idempotencyKey":""}"#,
        "INVALID_IDEMPOTENCY_KEY",
    )
    .await;
    let sel = json!({"direction":"under","target":20});
    for amount in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("10"),
        json!(1e30),
        json!(null),
    ] {
        expect_bet_rejected(&mut c, json!({"type":"place_bet","gameId":"g","amount":amount,"selection":sel,"idempotencyKey":"k"}), "INVALID_AMOUNT").await;
    }
    expect_bet_rejected(
        &mut c,
        json!({"type":"place_bet","gameId":"g","amount":5,"selection":"over","idempotencyKey":"k"}),
        "INVALID_SELECTION",
    )
    .await;
    expect_bet_rejected(&mut c, json!({"type":"place_bet","gameId":"g","amount":5,"selection":sel,"idempotencyKey":"k","clientSeed":12}), "INVALID_CLIENT_SEED").await;
    expect_bet_rejected(
        &mut c,
        json!({"type":"place_bet","amount":5,"selection":sel,"idempotencyKey":"k"}),
        "INVALID_GAME_ID",
    )
    .await;
    expect_bet_rejected(&mut c, json!({"type":"place_bet","gameId":"other","amount":5,"selection":sel,"idempotencyKey":"k"}), "NOT_IN_ROOM").await;
    // None of those reached the engines.
    use gameserver::bus::EngineBus;
    assert!(gw
        .bus
        .next_bets(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    // And the connection is still perfectly usable.
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.recv().await["type"], "pong");
}

trait SendBinary {
    async fn send_binary(&mut self);
}

impl SendBinary
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn send_binary(&mut self) {
        use futures_util::SinkExt;
        self.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    }
}

async fn expect_auth_failure(gw: &TestGateway, token: String) {
    let mut c = Client::connect(gw.addr).await;
    c.send(json!({"type":"authenticate","token":token})).await;
    assert_eq!(
        plain(c.recv().await),
        json!({"type":"auth_failed","reason":"INVALID_TOKEN"})
    );
    let close = c.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4001);
}

#[tokio::test]
async fn bad_tokens_fail_with_invalid_token_and_close_4001() {
    use base64::Engine;
    let gw = start(config()).await;
    let now = gameserver::auth::now_secs();
    let sign = |alg, claims: Value, secret: &[u8]| {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"userId":"alice","iat":now}).to_string())
    );
    let cases = [
        alg_none,
        sign(
            Algorithm::HS512,
            json!({"userId":"alice","iat":now}),
            SECRET,
        ),
        sign(
            Algorithm::HS256,
            json!({"userId":"alice","iat":now}),
            b"wrong-secret",
        ),
        sign(
            Algorithm::HS256,
            json!({"userId":"alice","iat":now - 20,"exp":now - 1}),
            SECRET,
        ),
        sign(
            Algorithm::HS256,
            json!({"userId":"alice","iat":now - 301}),
            SECRET,
        ),
        sign(Algorithm::HS256, json!({"sub":"alice","iat":now}), SECRET),
        String::new(),
        "not.a.jwt".into(),
    ];
    for token in cases {
        expect_auth_failure(&gw, token).await;
    }
    // A missing token field fails the same way.
    let mut c = Client::connect(gw.addr).await;
    c.send(json!({"type":"authenticate"})).await;
    assert_eq!(c.recv().await["reason"], "INVALID_TOKEN");
    assert_eq!(u16::from(c.closed().await.unwrap().code), 4001);
    wait_metric(&gw, "ws_active_connections", 0.0).await;
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let gw = start(config()).await;
    let mut c = Client::user(gw.addr, "alice").await;
    // Exactly at the limit is fine (an unknown type, so it is answered).
    let pad = 16 * 1024 - r#"{"type":"x","p":""}"#.len();
    let at_limit = format!(r#"{{"type":"x","p":"{}"}}"#, "a".repeat(pad));
    assert_eq!(at_limit.len(), 16 * 1024);
    c.send_text(&at_limit).await;
    assert_eq!(c.recv().await["code"], "UNKNOWN_MESSAGE_TYPE");
    let too_big = format!(r#"{{"type":"ping","p":"{}"}}"#, "a".repeat(16 * 1024));
    c.send_text(&too_big).await;
    let close = c.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    wait_metric(&gw, "ws_disconnects_total{reason=\"message_too_big\"}", 1.0).await;
}

/// A bus whose engines can be switched off, to exercise the gateway's outage answers.
struct OutageBus {
    inner: Arc<MemoryBus>,
    down: AtomicBool,
}

impl OutageBus {
    fn check(&self) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            Err(BusError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl GatewayBus for OutageBus {
    async fn submit_bet(&self, bet: &BetRequest) -> Result<(), BusError> {
        self.check()?;
        self.inner.submit_bet(bet).await
    }
    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        GatewayBus::publish(&*self.inner, delivery).await
    }
    async fn subscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        self.inner.subscribe_room(game_id).await
    }
    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        self.inner.unsubscribe_room(game_id).await
    }
    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        self.check()?;
        self.inner.join_room(game_id, connection_id).await
    }
    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        self.inner.leave_room(game_id, connection_id).await
    }
    async fn subscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.inner.subscribe_user(user_id).await
    }
    async fn unsubscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.inner.unsubscribe_user(user_id).await
    }
    async fn position(&self, stream: &Target) -> Result<Position, BusError> {
        self.check()?;
        self.inner.position(stream).await
    }
    async fn history(
        &self,
        stream: &Target,
        since: Option<&Position>,
    ) -> Result<Recovery, BusError> {
        self.check()?;
        self.inner.history(stream, since).await
    }
    async fn use_once(&self, id: &str, expires_at_ms: u64) -> Result<bool, BusError> {
        self.check()?;
        self.inner.use_once(id, expires_at_ms).await
    }
    fn take_deliveries(&self) -> Option<tokio::sync::mpsc::Receiver<Delivery>> {
        self.inner.take_deliveries()
    }
}

#[tokio::test]
async fn bus_outage_rejects_bets_with_engine_unavailable_and_keeps_the_connection() {
    let bus = Arc::new(MemoryBus::new());
    let outage = Arc::new(OutageBus {
        inner: bus.clone(),
        down: AtomicBool::new(false),
    });
    let gw = start_with_bus(config(), outage.clone(), bus).await;
    let mut c = Client::in_room(gw.addr, "alice", "g").await;
    outage.down.store(true, Ordering::SeqCst);
    let bet = json!({"type":"place_bet","gameId":"g","amount":5,"selection":{"direction":"over","target":50},"idempotencyKey":"k"});
    c.send(bet.clone()).await;
    let reply = c.recv().await;
    assert_eq!(reply["reason"], "ENGINE_UNAVAILABLE", "{reply}");
    // A queue write that failed may still have landed: the player is told to retry the key.
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("may not have been placed")
            && message.contains("retry with the same idempotencyKey"),
        "{reply}"
    );
    expect_error(
        &mut c,
        r#"{"type":"join_game","gameId":"h"}"#,
        "ENGINE_UNAVAILABLE",
    )
    .await;
    outage.down.store(false, Ordering::SeqCst);
    c.send(bet).await;
    assert_eq!(c.recv().await["type"], "bet_acknowledged");
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "ws_bet_rejections_total{reason=\"ENGINE_UNAVAILABLE\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "ws_bets_total{result=\"acknowledged\"}"),
        Some(1.0)
    );
}
