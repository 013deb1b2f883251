//! A real `gameserver gateway` process on a real redis-server: SIGTERM drains it (every client
//! told and closed with 1012, readiness and upgrades refused at once) and the process exits.
//! Gateway and engine processes are ready only while Redis is reachable, and stay alive
//! (liveness) through a Redis outage.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gameserver::auth::{mint_token, now_secs};
use serde_json::{json, Value};
use support::RedisServer;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "process-test-secret-of-at-least-32-bytes";

/// Kills the process if the test ends early (a failed assertion must not leave it running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).await.map(|(status, _)| status)
}

/// Status and body of a GET; `None` while nothing answers.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_client_and_exits() {
    let redis = RedisServer::start();
    let (player, admin) = (free_addr(), free_addr());
    let mut proc = Proc(
        Command::new(env!("CARGO_BIN_EXE_gameserver"))
            .args([
                "gateway",
                "--listen",
                &player.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .env("REDIS_URL", redis.url())
            .env("JWT_SECRET", SECRET)
            .env("RECONNECT_SPREAD_SECONDS", "1")
            .env("DRAIN_TIMEOUT_SECONDS", "10")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_status(admin, "/readyz").await != Some(200) {
        assert!(Instant::now() < deadline, "gateway did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut clients = Vec::new();
    for i in 0..8 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{player}/ws"))
            .await
            .unwrap();
        assert_eq!(recv(&mut ws).await.unwrap()["type"], "connected");
        let token = mint_token(SECRET.as_bytes(), &format!("u{i}"), now_secs(), 300).unwrap();
        ws.send(Message::text(
            json!({"type":"authenticate","token":token}).to_string(),
        ))
        .await
        .unwrap();
        assert_eq!(recv(&mut ws).await.unwrap()["type"], "authenticated");
        clients.push(ws);
    }

    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Readiness fails at once (well before the first close).
    let mut refused = false;
    while sent.elapsed() < Duration::from_millis(800) {
        if http_status(admin, "/readyz").await == Some(503) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "/readyz still ready after SIGTERM");
    match tokio_tungstenite::connect_async(format!("ws://{player}/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("upgrade should be refused, got {:?}", other.map(|_| ())),
    }

    for ws in &mut clients {
        let mut notice = None;
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "server_draining" {
                        notice = Some(v);
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => break frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        let notice = notice.expect("server_draining before the close");
        assert!(notice["resumeToken"].as_str().unwrap().starts_with("v2."));
        assert!(notice["reconnectAfterMs"].as_u64().unwrap() < 1_000);
        assert_eq!(u16::from(close.unwrap().code), 1012);
    }
    // The process exits on its own once the last connection is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after its drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "exit status {code:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
}

fn gameserver(args: &[&str], redis: &RedisServer) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_gameserver"))
            .args(args)
            .env("REDIS_URL", redis.url())
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls every admin address until `/readyz` answers `want` (asserting that `/healthz` stays
/// 200 meanwhile); returns the last body per address.
async fn readiness_becomes(admins: &[SocketAddr], want: u16, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut bodies = vec![String::new(); admins.len()];
    let mut done = vec![false; admins.len()];
    while done.contains(&false) {
        for (i, admin) in admins.iter().enumerate() {
            if done[i] {
                continue;
            }
            assert_eq!(
                http_status(*admin, "/healthz").await,
                Some(200),
                "{admin}: liveness must not depend on Redis"
            );
            if let Some((status, body)) = http_get(*admin, "/readyz").await {
                done[i] = status == want;
                bodies[i] = body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not {want} within {within:?}: {bodies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_and_liveness_does_not() {
    let mut redis = RedisServer::start();
    // Redis is down when the processes start.
    redis.kill();
    let (player, gw_admin, engine_admin) = (free_addr(), free_addr(), free_addr());
    let _gateway = gameserver(
        &[
            "gateway",
            "--listen",
            &player.to_string(),
            "--admin-listen",
            &gw_admin.to_string(),
        ],
        &redis,
    );
    let _engine = gameserver(
        &[
            "engine",
            "--admin-listen",
            &engine_admin.to_string(),
            "--allow-ephemeral-ledger",
        ],
        &redis,
    );
    let admins = [gw_admin, engine_admin];
    // Alive (the admin port answers) but not ready, saying why.
    let deadline = Instant::now() + Duration::from_secs(10);
    for admin in admins {
        while http_status(admin, "/healthz").await != Some(200) {
            assert!(Instant::now() < deadline, "{admin} never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = http_get(admin, "/readyz").await.unwrap();
        assert_eq!(status, 503, "{admin}: {body}");
        assert!(body.contains("redis: not connected yet"), "{admin}: {body}");
    }

    redis.restart();
    readiness_becomes(&admins, 200, Duration::from_secs(10)).await;

    // A lost Redis takes them out of their Services only after the grace period.
    redis.kill();
    let lost = Instant::now();
    let bodies = readiness_becomes(&admins, 503, Duration::from_secs(15)).await;
    let after = lost.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "readiness failed {after:?} after Redis was lost, within the grace period"
    );
    for body in &bodies {
        assert!(body.contains("redis: unreachable for"), "{body}");
    }

    redis.restart();
    readiness_becomes(&admins, 200, Duration::from_secs(10)).await;
}

/// A demo fleet (`gateway --demo-page`, `engine --starting-balance`): the gateway serves the
/// page and a token for any name, and a new player can bet at once from the starting balance,
/// credited once. A gateway without the flag serves neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_gateway_serves_the_page_and_a_new_player_bets_from_the_starting_balance() {
    let redis = RedisServer::start();
    let mut engine = support::fleet::engine_command(&redis, "demo-engine", 1_000);
    let _engine = Proc(engine.args(["--starting-balance", "1000"]).spawn().unwrap());
    let gateway = |demo: bool| {
        let (player, admin) = (free_addr(), free_addr());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gameserver"));
        cmd.args(["gateway", "--listen", &player.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .env("REDIS_URL", redis.url())
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if demo {
            cmd.arg("--demo-page");
        }
        (Proc(cmd.spawn().unwrap()), player, admin)
    };
    let (_demo, player, admin) = gateway(true);
    let (_plain, plain_player, plain_admin) = gateway(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in [admin, plain_admin] {
        while http_status(a, "/readyz").await != Some(200) {
            assert!(Instant::now() < deadline, "gateway did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let (status, page) = http_get(player, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") && page.contains("gamefleet-client.js"),
        "{page}"
    );
    assert_eq!(http_status(player, "/gamefleet-client.js").await, Some(200));
    assert_eq!(http_status(plain_player, "/dev/token").await, Some(404));
    assert_ne!(http_status(plain_player, "/").await, Some(200));

    let (status, body) = http_get(player, "/dev/token?user=alice").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["userId"], "alice");
    let token = body["token"].as_str().unwrap();

    // The token works on every gateway of the fleet (one secret), not only the demo one.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{plain_player}/ws"))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "connected");
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"type":"authenticate","token":token})))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "authenticated");
    ws.send(send(json!({"type":"join_game","gameId":"demo-1"})))
        .await
        .unwrap();
    // Bet as soon as a round opens; then two more in later rounds, from what is left.
    let (mut placed, mut balances) = (0, vec![]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while balances.len() < 3 {
        assert!(Instant::now() < deadline, "bets not settled: {balances:?}");
        let Some(f) = recv(&mut ws).await else {
            continue;
        };
        match (f["type"].as_str(), f["event"].as_str()) {
            (Some("game_event"), Some("round_started")) if placed == balances.len() => {
                placed += 1;
                ws.send(send(
                    json!({"type":"place_bet","gameId":"demo-1","amount":100,
                    "selection":{"direction":"over","target":50.5},
                    "idempotencyKey":format!("demo-{placed}")}),
                ))
                .await
                .unwrap();
            }
            (Some("bet_rejected"), _) => panic!("bet rejected: {f}"),
            (Some("bet_settled"), _) => {
                let payout = f["payout"].as_i64().unwrap();
                balances.push((payout, f["balance"].as_i64().unwrap()));
            }
            _ => {}
        }
    }
    // 1,000 credited once: each balance is the previous one less the stake plus the payout.
    let mut expected = 1000;
    for (payout, balance) in balances {
        expected += payout - 100;
        assert_eq!(balance, expected, "credited more than once?");
    }
}
