//! `gameserver local` in-process: page, dev tokens, and a bet settled by the real engine with
//! the round's revealed seed checked against its commitment.

use std::net::SocketAddr;
use std::time::Duration;

mod support;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gameserver::game::verify::{verify, VerifyArgs};
use gameserver::ledger::{user_account, BetState, Ledger, RedisLedger};
use gameserver::local::{self, LocalArgs};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: LocalArgs,
}

async fn start(extra: &[&str]) -> (local::LocalServer, CancellationToken) {
    let mut argv = vec![
        "gameserver",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--betting-window-ms",
        "400",
        "--result-pause-ms",
        "100",
        "--starting-balance",
        "10000",
    ];
    argv.extend_from_slice(extra);
    let args = Wrapper::parse_from(argv).args;
    let shutdown = CancellationToken::new();
    let server = local::start(&args, shutdown.clone()).await.unwrap();
    (server, shutdown)
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

#[tokio::test]
async fn page_token_and_a_bet_settled_by_the_engine() {
    let (server, shutdown) = start(&[]).await;
    page_token_and_bet(&server).await;
    shutdown.cancel();
}

/// The same flow with `--redis-url`: bus and ledger in a real redis-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_over_redis() {
    let redis = support::RedisServer::start();
    let url = redis.url();
    let (server, shutdown) = start(&["--redis-url", &url, "--redis-prefix", "loc"]).await;
    let settled = page_token_and_bet(&server).await;
    // The bet and the balance live in Redis, under the chosen prefix.
    let ledger = RedisLedger::connect(&url, "loc").unwrap();
    let record = ledger
        .bet("alice", "b1")
        .await
        .unwrap()
        .expect("bet in Redis");
    assert!(
        matches!(record.state, BetState::Settled { .. }),
        "{record:?}"
    );
    assert_eq!(
        ledger.balance(&user_account("alice")).await.unwrap(),
        settled["balance"].as_i64().unwrap()
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server.engine)
        .await
        .expect("engine drained")
        .unwrap();
}

/// Page, dev token, authenticate, join, bet; checks the settlement and returns `bet_settled`.
async fn page_token_and_bet(server: &local::LocalServer) -> Value {
    let (status, page) = http_get(server.player_addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("GameFleet dice"));
    let (status, body) = http_get(server.player_addr, "/dev/token?user=alice").await;
    assert_eq!(status, 200);
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["userId"], "alice");

    // The root path upgrades, as reference clients expect.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", server.player_addr))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["type"], "connected");
    send(
        &mut ws,
        json!({"type":"authenticate","token":token["token"]}),
    )
    .await;
    let authed = recv(&mut ws).await;
    assert_eq!(authed["type"], "authenticated");
    assert_eq!(authed["userId"], "alice");
    assert!(authed["resumeToken"].is_string(), "{authed}");
    send(&mut ws, json!({"type":"join_game","gameId":"dice-1"})).await;
    assert_eq!(recv(&mut ws).await["type"], "game_joined");

    let bet = json!({"type":"place_bet","gameId":"dice-1","amount":100,
        "selection":{"direction":"over","target":49.5},"idempotencyKey":"b1","clientSeed":"alice-seed"});
    send(&mut ws, bet.clone()).await;
    let mut commitments = std::collections::HashMap::new();
    let mut settled = None;
    let mut rolled = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while settled.is_none() || rolled.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "bet not settled");
        let f = recv(&mut ws).await;
        match (f["type"].as_str(), f["event"].as_str()) {
            (Some("bet_acknowledged"), _) => {
                assert_eq!(
                    f,
                    json!({"type":"bet_acknowledged","idempotencyKey":"b1","status":"processing"})
                );
            }
            (Some("bet_settled"), _) => settled = Some(f),
            (Some("game_event"), Some("round_started")) => {
                commitments.insert(
                    f["data"]["roundId"].clone(),
                    f["data"]["commitment"].clone(),
                );
            }
            (Some("game_event"), Some("dice_rolled"))
                if f["data"]["clientSeeds"]
                    .as_array()
                    .is_some_and(|s| s.contains(&json!("alice-seed"))) =>
            {
                rolled = Some(f);
            }
            _ => {}
        }
    }
    let (settled, rolled) = (settled.unwrap(), rolled.unwrap());
    assert_eq!(settled["idempotencyKey"], "b1");
    assert_eq!(settled["roundId"], rolled["data"]["roundId"]);
    let payout = settled["payout"].as_i64().unwrap();
    assert_eq!(settled["balance"].as_i64().unwrap(), 10_000 - 100 + payout);
    assert_eq!(settled["outcome"] == "win", payout > 0);

    // The revealed seed reproduces the roll and matches the commitment published before.
    let d = &rolled["data"];
    let commitment = commitments.get(&d["roundId"]).unwrap_or(&d["commitment"]);
    let report = verify(&VerifyArgs {
        server_seed: d["serverSeed"].as_str().unwrap().into(),
        commitment: Some(commitment.as_str().unwrap().into()),
        client_seeds: vec!["alice-seed".into()],
        client_seed_mix: Some(d["clientSeedMix"].as_str().unwrap().into()),
        nonce: d["nonce"].as_u64().unwrap(),
        roll: Some(d["roll"].to_string()),
    })
    .unwrap();
    assert!(report.ok(), "{report:?}");

    // A repeated key never debits twice: the same outcome comes back.
    send(&mut ws, bet).await;
    loop {
        let f = recv(&mut ws).await;
        if f["type"] == "bet_settled" {
            assert_eq!(f["balance"], settled["balance"]);
            assert_eq!(f["payout"], settled["payout"]);
            break;
        }
    }

    let (status, metrics) = http_get(server.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ws_active_connections 1"));
    assert!(metrics.contains("ws_message_latency_ms_bucket"));
    // The ledger admin path is merged in, and closed without an admin token.
    assert_eq!(
        http_get(server.admin_addr, "/admin/ledger/balance/alice")
            .await
            .0,
        503
    );
    settled
}

/// The load generator paces bets from the first second: each player's first bet falls at its
/// own phase of the period, not all at once when measuring starts (a burst of one bet per
/// player used to dominate the measured acknowledgement tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_paces_bets_from_the_start() {
    let (server, shutdown) = start(&["--jwt-secret", "pace-secret"]).await;
    let url = format!("ws://{}/ws", server.player_addr);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gameserver"))
        .args([
            "bench",
            "--url",
            &url,
            "--jwt-secret",
            "pace-secret",
            "--connections",
            "100",
            "--rooms",
            "5",
            "--bet-rate",
            "20",
            "--duration",
            "2",
            "--warmup",
            "1",
            "--settle-wait",
            "5",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 20 bets/s over 100 players is one bet per player every 5 s; player i bets first at i/100
    // of that, so in 2 s players 0..=39 bet once: 40 bets, not 100.
    let sent = report["bets_sent"].as_u64().unwrap();
    assert!((32..=48).contains(&sent), "{sent} bets sent in 2 s at 20/s");
    assert_eq!(report["bets_settled"], report["bets_sent"]);
    shutdown.cancel();
}
