//! Real `gameserver engine` processes on a real redis-server: one is killed with SIGKILL in the
//! middle of traffic; every acknowledged bet is still settled exactly once and money is
//! conserved.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::bus::{BetRequest, GatewayBus, Target};
use gameserver::ledger::{user_account, EntryKind, Ledger, RedisLedger, Transfer, TREASURY};
use serde_json::{json, Value};
use support::RedisServer;

/// Kills the process if the test ends early (a failed assertion must not leave it running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn engine_process(server: &RedisServer, id: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_gameserver"))
            .args([
                "engine",
                "--admin-listen",
                "127.0.0.1:0",
                "--engine-id",
                id,
                "--betting-window-ms",
                "300",
                "--result-pause-ms",
                "50",
                "--lease-ttl-ms",
                "1000",
            ])
            .env("REDIS_URL", server.url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_engine_loses_and_doubles_nothing() {
    let server = RedisServer::start();
    let ledger = RedisLedger::connect(&server.url(), "gf").unwrap();
    for u in 0..8 {
        ledger
            .transfer(&Transfer {
                key: format!("seed-{u}"),
                kind: EntryKind::Deposit,
                from: TREASURY.into(),
                to: user_account(&format!("p{u}")),
                amount: 100_000,
                memo: String::new(),
            })
            .await
            .unwrap();
    }
    let gw = RedisBus::connect(RedisBusConfig::new(server.url(), "gw")).unwrap();
    let mut rx = gw.take_deliveries().unwrap();
    let rooms = ["r1", "r2", "r3", "r4"];
    for room in rooms {
        for _ in 0..100 {
            if gw.subscribe_room(room).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw.join_room(room, "conn").await.unwrap();
    }
    // Direct frames reach a gateway only for the users it holds.
    for u in 0..8 {
        gw.subscribe_user(&format!("p{u}")).await.unwrap();
    }
    let mut doomed = engine_process(&server, "e1");
    let mut survivor = engine_process(&server, "e2");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let mut keys = Vec::new();
    for i in 0..120 {
        let bet = BetRequest {
            idempotency_key: format!("k{i}"),
            user_id: format!("p{}", i % 8),
            game_id: rooms[i % 4].into(),
            amount: 100,
            selection: json!({"direction": "under", "target": 50}),
            client_seed: Some(format!("s{i}")),
            gateway_id: "gw".into(),
            received_at_ms: 0,
        };
        gw.submit_bet(&bet).await.unwrap();
        keys.push(bet.idempotency_key);
        if i == 50 {
            doomed.0.kill().unwrap(); // SIGKILL
            doomed.0.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut settled: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Wait for every bet, then one more second to catch any duplicate settlement.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "{} of {} settled",
            settled.len(),
            keys.len()
        );
        if quiet_until.is_some_and(|q| now >= q) {
            break;
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
            if settled.len() == keys.len() && quiet_until.is_none() {
                quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(survivor.0.id().to_string())
        .status();
    let _ = survivor.0.wait();

    assert!(
        settled.values().all(|&n| n == 1),
        "settled more than once: {settled:?}"
    );
    let entries = ledger.entries(0, 100_000).await.unwrap();
    let stakes = entries.iter().filter(|e| e.kind == EntryKind::Bet).count();
    assert_eq!(stakes, keys.len(), "every bet debited exactly once");
    let total: i64 = ledger
        .accounts()
        .await
        .unwrap()
        .iter()
        .map(|(_, b)| b)
        .sum();
    assert_eq!(total, 0, "money conserved");
    for k in &keys {
        let rec = ledger
            .bet(&format!("p{}", k[1..].parse::<usize>().unwrap() % 8), k)
            .await
            .unwrap();
        assert!(
            matches!(
                rec.map(|r| r.state),
                Some(gameserver::ledger::BetState::Settled { .. })
            ),
            "{k}"
        );
    }
}
