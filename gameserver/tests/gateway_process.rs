//! A real `gameserver gateway` process on a real redis-server: SIGTERM drains it (every client
//! told and closed with 1012, readiness and upgrades refused at once) and the process exits.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gameserver::auth::{mint_token, now_secs};
use serde_json::{json, Value};
use support::RedisServer;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "process-test-secret";

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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.get(9..12)?.parse().ok()
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
        assert!(notice["resumeToken"].as_str().unwrap().starts_with("v1."));
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
