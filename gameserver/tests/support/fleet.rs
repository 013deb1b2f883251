//! Real `gameserver engine` processes and a gateway's side of the Redis bus, for process tests:
//! start engines, fund players, submit bets, collect what the players are told.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::bus::{Delivery, GatewayBus, Target};
use gameserver::ledger::{user_account, EntryKind, Ledger, RedisLedger, Transfer, TREASURY};
use serde_json::Value;
use tokio::sync::mpsc::Receiver;

use super::RedisServer;

/// Kills the process if the test ends early (a failed assertion must not leave it running).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn engine_process(server: &RedisServer, id: &str) -> Proc {
    engine_process_with_lease(server, id, 1_000)
}

pub fn engine_process_with_lease(server: &RedisServer, id: &str, lease_ms: u64) -> Proc {
    Proc(engine_command(server, id, lease_ms).spawn().unwrap())
}

pub fn engine_command(server: &RedisServer, id: &str, lease_ms: u64) -> Command {
    engine_command_url(&server.url(), id, lease_ms)
}

/// An engine on the Redis at `url` (e.g. through a fault proxy). This harness's Redis has no
/// AOF, so the engine is told to accept that; the durability tests use [`engine_base`].
pub fn engine_command_url(url: &str, id: &str, lease_ms: u64) -> Command {
    let mut cmd = engine_base(url, id, lease_ms, "127.0.0.1:0");
    cmd.arg("--allow-ephemeral-ledger");
    cmd
}

/// An engine with its admin port at `admin`, held to every start-up check of its ledger.
pub fn engine_base(url: &str, id: &str, lease_ms: u64, admin: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gameserver"));
    cmd.args([
        "engine",
        "--admin-listen",
        admin,
        "--engine-id",
        id,
        "--betting-window-ms",
        "300",
        "--result-pause-ms",
        "50",
        "--lease-ttl-ms",
        &lease_ms.to_string(),
    ])
    .env("REDIS_URL", url)
    .env(
        "RUST_LOG",
        std::env::var("ENGINE_LOG").unwrap_or("warn".into()),
    )
    .stdout(Stdio::null())
    .stderr(if std::env::var("ENGINE_LOG").is_ok() {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    cmd
}

/// The players p0…p7 funded with `balance` each, and a gateway's side of the bus holding a
/// member in each of `rooms` and receiving those rooms and the players' direct frames.
pub async fn players_and_gateway(
    server: &RedisServer,
    rooms: &[&str],
    balance: i64,
) -> (RedisLedger, Arc<RedisBus>, Receiver<Delivery>) {
    players_and_gateway_with_ledger(server, server, rooms, balance).await
}

/// [`players_and_gateway`] with the ledger on its own Redis.
pub async fn players_and_gateway_with_ledger(
    server: &RedisServer,
    ledger_server: &RedisServer,
    rooms: &[&str],
    balance: i64,
) -> (RedisLedger, Arc<RedisBus>, Receiver<Delivery>) {
    players_and_gateway_on(server, &ledger_server.url(), rooms, balance).await
}

/// [`players_and_gateway`] with the ledger at `ledger_url` (a single Redis or a cluster).
pub async fn players_and_gateway_on(
    server: &RedisServer,
    ledger_url: &str,
    rooms: &[&str],
    balance: i64,
) -> (RedisLedger, Arc<RedisBus>, Receiver<Delivery>) {
    players_and_gateway_at(&server.url(), ledger_url, rooms, balance).await
}

/// [`players_and_gateway`] with the bus at `bus_url` and the ledger at `ledger_url` (each a
/// single Redis or a cluster).
pub async fn players_and_gateway_at(
    bus_url: &str,
    ledger_url: &str,
    rooms: &[&str],
    balance: i64,
) -> (RedisLedger, Arc<RedisBus>, Receiver<Delivery>) {
    let ledger = RedisLedger::connect(ledger_url, "gf").unwrap();
    for u in 0..8 {
        ledger
            .transfer(&Transfer {
                key: format!("seed-{u}"),
                kind: EntryKind::Deposit,
                from: TREASURY.into(),
                to: user_account(&format!("p{u}")),
                amount: balance,
                memo: String::new(),
            })
            .await
            .unwrap();
    }
    let mut cfg = RedisBusConfig::new(bus_url, "gw");
    // Bets arrive here in bursts far above a player's pace: the per-player rate is not what
    // these tests are about.
    cfg.bets_per_user_per_second = 0;
    let gw = RedisBus::connect(cfg).unwrap();
    let rx = gw.take_deliveries().unwrap();
    for room in rooms {
        gw.subscribe_room(room).await.unwrap();
        gw.join_room(room, "conn").await.unwrap();
    }
    // Direct frames reach a gateway only for the users it holds.
    for u in 0..8 {
        gw.subscribe_user(&format!("p{u}")).await.unwrap();
    }
    // The subscriber connects in the background.
    gw.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    (ledger, gw, rx)
}

pub async fn redis_conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The `bet_settled` frames received, counted per idempotency key: waits until `n` keys are
/// settled (at most `within`), then one more second to catch any duplicate settlement.
pub async fn settlements(
    rx: &mut Receiver<Delivery>,
    n: usize,
    within: Duration,
) -> HashMap<String, usize> {
    let mut settled: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "{} of {n} settled", settled.len());
        if quiet_until.is_some_and(|q| now >= q) {
            return settled;
        }
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await else {
            continue;
        };
        if matches!(d.target, Target::User(_)) {
            let v: Value = serde_json::from_str(&d.frame).unwrap();
            assert_eq!(v["type"], "bet_settled", "{v}");
            *settled
                .entry(v["idempotencyKey"].as_str().unwrap().into())
                .or_default() += 1;
            if settled.len() == n && quiet_until.is_none() {
                quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// A connection to the bus at `url` (a single Redis or a cluster), for reading its keys.
pub fn bus_conn(url: &str) -> gameserver::redisx::Conn {
    gameserver::redisx::connect(url).unwrap()
}

/// Waits until every room's lease is held by one of `engines`, each holding at least one.
pub async fn rooms_shared_by(
    conn: &mut impl redis::aio::ConnectionLike,
    rooms: &[&str],
    engines: &[&str],
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let owners = lease_owners(conn, rooms).await;
        let held = |e: &&str| owners.iter().any(|o| o == e);
        if owners.iter().all(|o| engines.contains(&o.as_str())) && engines.iter().all(held) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms not shared by {engines:?} within {within:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn sigterm(p: &Proc) {
    signal(p, "TERM");
}

/// Owners (engine ids) of the rooms' leases, from the lease values `<engine-id>-<nonce>`, on
/// either topology's key layout.
pub async fn lease_owners(
    conn: &mut impl redis::aio::ConnectionLike,
    rooms: &[&str],
) -> Vec<String> {
    let mut owners = Vec::new();
    for room in rooms {
        let mut v: Option<String> = None;
        for key in [format!("gf:lease:{room}"), format!("gf:{{r.{room}}}:lease")] {
            if v.is_none() {
                v = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
            }
        }
        owners.push(
            v.and_then(|v| v.split('-').next().map(str::to_owned))
                .unwrap_or_default(),
        );
    }
    owners
}

/// A free loopback address for an admin port.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `GET path` on a local HTTP server: (status, body), or `None` if it does not answer.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The value of an unlabelled metric on a process's `/metrics` (0 if absent).
pub async fn metric(admin: &str, name: &str) -> f64 {
    let Some((_, body)) = http_get(admin, "/metrics").await else {
        return 0.0;
    };
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn signal(p: &Proc, sig: &str) {
    super::send_signal(p.0.id(), sig);
}

/// Turns AOF persistence on in a running Redis (`CONFIG SET appendonly yes`).
pub async fn turn_aof_on(server: &RedisServer) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query_async::<()>(&mut redis_conn(server).await)
        .await
        .unwrap();
}
