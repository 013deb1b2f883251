//! Test harness: a real gateway on 127.0.0.1:0 over a MemoryBus, and a tokio-tungstenite client.
//! Tests play the engine through the bus's `EngineBus` side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gameserver::admin::{self, AdminState, Health};
use gameserver::auth::{mint_token, now_secs, Authenticator};
use gameserver::bus::memory::MemoryBus;
use gameserver::bus::{Delivery, GatewayBus, Target};
use gameserver::gateway::{Gateway, GatewayConfig};
use gameserver::server;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const SECRET: &[u8] = b"integration-test-secret";
pub const WAIT: Duration = Duration::from_secs(5);
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub bus: Arc<MemoryBus>,
    pub gateway: Arc<Gateway>,
    pub health: Arc<Health>,
    shutdown: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn config() -> GatewayConfig {
    GatewayConfig {
        gateway_id: "test-gw".into(),
        ..GatewayConfig::default()
    }
}

pub async fn start(cfg: GatewayConfig) -> TestGateway {
    let bus = Arc::new(MemoryBus::new());
    start_with_bus(cfg, bus.clone(), bus).await
}

/// `gateway_bus` is what the gateway talks to; `bus` is the MemoryBus the test plays engine on.
pub async fn start_with_bus(
    cfg: GatewayConfig,
    gateway_bus: Arc<dyn GatewayBus>,
    bus: Arc<MemoryBus>,
) -> TestGateway {
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let health = Arc::new(Health::default());
    let gateway = Gateway::new(
        cfg,
        gateway_bus,
        Authenticator::new(SECRET).unwrap(),
        &registry,
        health.clone(),
    )
    .unwrap();
    gateway.start(shutdown.clone()).unwrap();
    let player = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let admin_l = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = player.local_addr().unwrap();
    let admin_addr = admin_l.local_addr().unwrap();
    tokio::spawn(server::serve(
        player,
        gateway.router(),
        shutdown.clone(),
        gateway.serve_options(),
    ));
    let admin_router = admin::router(AdminState {
        registry,
        health: health.clone(),
    })
    .merge(admin::drain_routes(health.clone(), ADMIN_TOKEN));
    tokio::spawn(server::serve(
        admin_l,
        admin_router,
        shutdown.clone(),
        server::ServeOptions::default(),
    ));
    health.set_ready(true);
    TestGateway {
        addr,
        admin_addr,
        bus,
        gateway,
        health,
        shutdown,
    }
}

pub fn token(user: &str) -> String {
    mint_token(SECRET, user, now_secs(), 300).unwrap()
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub connection_id: String,
    /// From `authenticated` (empty before).
    pub resume_token: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_path(addr, "/ws").await
    }

    pub async fn connect_path(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap();
        let mut c = Client {
            ws,
            connection_id: String::new(),
            resume_token: String::new(),
        };
        let hello = c.recv().await;
        assert_eq!(hello["type"], "connected");
        c.connection_id = hello["connectionId"].as_str().unwrap().to_owned();
        c
    }

    /// Connected and authenticated as `user`.
    pub async fn user(addr: SocketAddr, user: &str) -> Client {
        let mut c = Self::connect(addr).await;
        c.send(json!({"type":"authenticate","token":token(user)}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "authenticated", "{reply}");
        assert_eq!(reply["userId"], user);
        assert!(reply["resumeToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("v2.")));
        c.resume_token = reply["resumeToken"].as_str().unwrap().to_owned();
        c
    }

    /// Authenticated and in `game`; returns the player count reported.
    pub async fn in_room(addr: SocketAddr, user: &str, game: &str) -> Client {
        let mut c = Self::user(addr, user).await;
        c.join(game).await;
        c
    }

    pub async fn join(&mut self, game: &str) -> Value {
        self.send(json!({"type":"join_game","gameId":game})).await;
        let reply = self.recv().await;
        assert_eq!(reply["type"], "game_joined", "{reply}");
        assert_eq!(reply["gameId"], game);
        reply
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text frame as JSON (skipping pings/pongs).
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("stream ended")
                .expect("read error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Next frame of the given type, skipping others (e.g. presence noise).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Asserts nothing arrives for `d`.
    /// Keeps reading (so pings are answered) and asserts no text frame arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match next {
                Some(Ok(Message::Text(t))) => panic!("expected silence, got {t}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close frame if one came.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// The frame without its resume `position` (for comparing with expected frames).
pub fn plain(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("position");
    }
    v
}

/// A `presence` frame without its position.
pub fn presence(game: &str, count: u64, joined: &[&str], left: &[&str]) -> Value {
    json!({"type":"presence","gameId":game,"playerCount":count,"joined":joined,"left":left,
           "joinedMore":0,"leftMore":0})
}

/// Publish a frame the way an engine does.
pub async fn engine_publish(bus: &MemoryBus, target: Target, frame: Value) {
    use gameserver::bus::EngineBus;
    EngineBus::publish(
        bus,
        Delivery {
            target,
            emitted_at_ms: gameserver::clock::now_ms(),
            except_connection: None,
            frame: Arc::from(frame.to_string()),
        },
    )
    .await
    .unwrap();
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `POST path` with an optional bearer token; returns the status and body.
pub async fn http_post(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Value of an unlabelled or labelled metric sample line, e.g. `ws_active_connections` or
/// `ws_errors_total{code="ROOM_FULL"}`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Opens a WebSocket by hand and then never reads or answers anything (a vanished client).
pub async fn silent_client(addr: SocketAddr) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
    s
}

pub async fn metrics(gw: &TestGateway) -> String {
    http_get(gw.admin_addr, "/metrics").await.1
}

/// Polls the metrics until `sample` reaches `want` (metrics settle asynchronously).
pub async fn wait_metric(gw: &TestGateway, sample: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics(gw).await;
        if metric(&text, sample) == Some(want) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{sample} never reached {want}; metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
