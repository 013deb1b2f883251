//! Sockets that pile up: half-sent requests, connection floods, one address taking the port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// A socket to `addr` from the loopback address `from` (127.0.0.x: a distinct client IP).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(addr).await.unwrap()
}

/// Reads until the server closes; true if it did within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(within, s.read_to_end(&mut sink)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

/// An upgrade request from `from`; returns the status line's code and the whole answer head.
async fn upgrade_from(from: [u8; 4], addr: SocketAddr) -> (TcpStream, u16, String) {
    let mut s = connect_from(from, addr).await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head[9..12].parse().unwrap();
    (s, code, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_requests_are_closed_within_six_seconds() {
    let gw = start(config()).await;
    let started = Instant::now();
    let mut socks = Vec::new();
    for i in 0..1000u32 {
        let from = [127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8];
        let mut s = connect_from(from, gw.addr).await;
        if i % 10 == 0 {
            // A few send nothing at all.
        } else {
            s.write_all(b"GET /ws HT").await.unwrap();
        }
        socks.push(s);
    }
    // Meanwhile an honest player is served.
    let mut alice = Client::in_room(gw.addr, "alice", "g").await;
    alice.send(json!({"type":"ping"})).await;
    assert_eq!(alice.recv().await["type"], "pong");
    let mut open = 0;
    for s in &mut socks {
        let left = Duration::from_secs(6).saturating_sub(started.elapsed());
        if !closed_within(s, left).await {
            open += 1;
        }
    }
    let took = started.elapsed();
    eprintln!("1000 half-sent requests: {open} still open after {took:?}");
    assert_eq!(open, 0, "sockets left open after {took:?}");
    // The honest player's WebSocket is not subject to the header deadline.
    alice.send(json!({"type":"ping"})).await;
    assert_eq!(alice.recv().await["type"], "pong");
}

#[tokio::test]
async fn the_connection_over_the_cap_gets_a_clear_refusal() {
    let mut cfg = config();
    cfg.max_connections = 3;
    cfg.max_connections_per_ip = 0;
    let gw = start(cfg).await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(Client::user(gw.addr, &format!("p{i}")).await);
    }
    let (mut s, code, head) = upgrade_from([127, 0, 0, 9], gw.addr).await;
    assert_eq!(code, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.contains("connection limit"), "{body}");
    wait_metric(
        &gw,
        "ws_refused_connections_total{reason=\"connection_cap\"}",
        1.0,
    )
    .await;
    // A place freed is a place taken.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let (_s, code, _) = upgrade_from([127, 0, 0, 9], gw.addr).await;
        if code == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was never given");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Those already in are unaffected.
    for c in &mut held {
        c.send(json!({"type":"ping"})).await;
        assert_eq!(c.recv().await["type"], "pong");
    }
}

#[tokio::test]
async fn one_address_cannot_take_the_port() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 4;
    let gw = start(cfg).await;
    let attacker = [127, 0, 0, 7];
    let mut held = Vec::new();
    for _ in 0..4 {
        let (s, code, _) = upgrade_from(attacker, gw.addr).await;
        assert_eq!(code, 101);
        held.push(s);
    }
    let (_s, code, head) = upgrade_from(attacker, gw.addr).await;
    assert_eq!(code, 429, "{head}");
    assert!(head.contains("x-refused: ip_cap"), "{head}");
    wait_metric(&gw, "ws_refused_connections_total{reason=\"ip_cap\"}", 1.0).await;
    // Another address is served.
    let (_s, code, _) = upgrade_from([127, 0, 0, 8], gw.addr).await;
    assert_eq!(code, 101);
}
