//! The admin ledger API over a real socket: bearer auth, validation, idempotent credit/debit.

mod support;

use std::sync::Arc;

use gameserver::ledger::{admin, Ledger, MemoryLedger, RedisLedger};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(token: &str) -> (std::net::SocketAddr, Arc<MemoryLedger>) {
    let ledger = Arc::new(MemoryLedger::new());
    let app = admin::routes(ledger.clone(), token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, ledger)
}

/// Minimal HTTP/1.1 client: (status, JSON body).
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn credit_and_debit_are_authenticated_validated_and_idempotent() {
    let (addr, ledger) = serve("s3cret").await;
    let credit = json!({"userId":"ann","amount":500,"idempotencyKey":"c1"}).to_string();
    assert_eq!(
        call(addr, "POST", "/admin/ledger/credit", None, &credit)
            .await
            .0,
        401
    );
    assert_eq!(
        call(addr, "POST", "/admin/ledger/credit", Some("wrong"), &credit)
            .await
            .0,
        401
    );

    let (status, v) = call(
        addr,
        "POST",
        "/admin/ledger/credit",
        Some("s3cret"),
        &credit,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["balance"], 500);
    assert_eq!(v["duplicate"], false);
    let (_, v) = call(
        addr,
        "POST",
        "/admin/ledger/credit",
        Some("s3cret"),
        &credit,
    )
    .await;
    assert_eq!(v["duplicate"], true);
    assert_eq!(v["balance"], 500, "a repeated key credits once");

    for (body, code) in [
        (
            json!({"userId":"ann","amount":1.5,"idempotencyKey":"c2"}),
            "INVALID_AMOUNT",
        ),
        (
            json!({"userId":"ann","amount":-1,"idempotencyKey":"c3"}),
            "INVALID_AMOUNT",
        ),
        (
            json!({"userId":"ann","amount":"7","idempotencyKey":"c4"}),
            "INVALID_AMOUNT",
        ),
        (json!({"amount":7,"idempotencyKey":"c5"}), "INVALID_USER"),
    ] {
        let (status, v) = call(
            addr,
            "POST",
            "/admin/ledger/credit",
            Some("s3cret"),
            &body.to_string(),
        )
        .await;
        assert_eq!((status, v["error"].as_str()), (422, Some(code)), "{body}");
    }
    let (status, v) = call(
        addr,
        "POST",
        "/admin/ledger/credit",
        Some("s3cret"),
        "not json",
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("INVALID_PAYLOAD"))
    );

    let over = json!({"userId":"ann","amount":501,"idempotencyKey":"d1"}).to_string();
    let (status, v) = call(addr, "POST", "/admin/ledger/debit", Some("s3cret"), &over).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("INSUFFICIENT_BALANCE"))
    );
    let ok = json!({"userId":"ann","amount":200,"idempotencyKey":"d2"}).to_string();
    let (_, v) = call(addr, "POST", "/admin/ledger/debit", Some("s3cret"), &ok).await;
    assert_eq!(v["balance"], 300);

    let (_, v) = call(addr, "GET", "/admin/ledger/balance/ann", Some("s3cret"), "").await;
    assert_eq!(v["balance"], 300);
    let (_, v) = call(
        addr,
        "GET",
        "/admin/ledger/entries?after=0&limit=10",
        Some("s3cret"),
        "",
    )
    .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["archivedThrough"], 0);
    let total: i64 = ledger
        .accounts()
        .await
        .unwrap()
        .iter()
        .map(|(_, b)| b)
        .sum();
    assert_eq!(total, 0);
}

#[tokio::test]
async fn without_a_token_the_api_is_disabled() {
    let (addr, _) = serve("").await;
    let (status, v) = call(addr, "GET", "/admin/ledger/balance/ann", Some(""), "").await;
    assert_eq!((status, v["error"].as_str()), (503, Some("ADMIN_DISABLED")));
}

#[tokio::test]
async fn entries_say_how_far_the_archive_goes() {
    let server = support::RedisServer::start();
    let ledger = Arc::new(RedisLedger::connect(&server.url(), "adm").unwrap());
    let app = admin::routes(ledger.clone(), "tok");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for i in 0..4 {
        let body = json!({"userId":"bo","amount":5,"idempotencyKey":format!("c{i}")}).to_string();
        let (status, _) = call(addr, "POST", "/admin/ledger/credit", Some("tok"), &body).await;
        assert_eq!(status, 200);
    }
    ledger.trim_entries(3).await.unwrap();
    let (status, v) = call(
        addr,
        "GET",
        "/admin/ledger/entries?after=0",
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["archivedThrough"], 3);
    let seqs: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4]);
}
