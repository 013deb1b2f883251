//! Real `gameserver engine` processes on a real redis-server: one is killed with SIGKILL, or
//! stopped with SIGTERM, in the middle of traffic; every acknowledged bet is still settled
//! exactly once, money is conserved, and the rooms go on on the other engine.

// Only its total helper is used here.
#[allow(dead_code)]
mod ledger_suite;
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use gameserver::bus::{BetRequest, GatewayBus, Target};
use gameserver::ledger::{EntryKind, Ledger};
use serde_json::{json, Value};
use support::fleet::{
    bus_conn, engine_command, engine_command_url, engine_process_with_lease, lease_owners,
    players_and_gateway, players_and_gateway_at, players_and_gateway_with_ledger, redis_conn,
    rooms_shared_by, settlements, sigterm, Proc,
};
use support::{RedisCluster, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_engine_loses_and_doubles_nothing() {
    let server = RedisServer::start();
    sigkill_mid_traffic(&server.url(), None).await;
}

/// The same with the ledger on a three-node Redis Cluster (the bus on its single Redis): the
/// survivor recovers the killed engine's rounds from every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_engine_with_the_ledger_on_a_redis_cluster() {
    let server = RedisServer::start();
    let cluster = RedisCluster::start(3);
    sigkill_mid_traffic(&server.url(), Some(cluster.url())).await;
}

/// The same with bus and ledger on one three-node Redis Cluster: the killed engine's pending
/// bets are claimed from their rooms' slots by the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_engine_with_bus_and_ledger_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    sigkill_mid_traffic(&cluster.url(), None).await;
}

/// 120 bets over four rooms on two engines, one SIGKILLed after 50: every bet debited and
/// settled once, money conserved. `bus_url`: the engines' `REDIS_URL`; `ledger_url`: their
/// `LEDGER_REDIS_URL` (default: the bus's Redis).
async fn sigkill_mid_traffic(bus_url: &str, ledger_url: Option<String>) {
    let rooms = ["r1", "r2", "r3", "r4"];
    let ledger_at = ledger_url.clone().unwrap_or_else(|| bus_url.to_owned());
    let (ledger, gw, mut rx) = players_and_gateway_at(bus_url, &ledger_at, &rooms, 100_000).await;
    let mut conn = bus_conn(bus_url);
    let engine = |id: &str| {
        let mut cmd = engine_command_url(bus_url, id, 1_000);
        if let Some(url) = &ledger_url {
            cmd.env("LEDGER_REDIS_URL", url);
        }
        Proc(cmd.spawn().unwrap())
    };
    let mut doomed = engine("e1");
    let mut survivor = engine("e2");
    // Both engines run rooms before one is killed (a slow start must not make the kill moot).
    rooms_shared_by(&mut conn, &rooms, &["e1", "e2"], Duration::from_secs(30)).await;

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

    let settled = settlements(&mut rx, keys.len(), Duration::from_secs(30)).await;
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
    let total = ledger_suite::total(&ledger).await;
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

/// Room events seen by the test's gateway: (receive time, event name, nonce) per room.
type RoomLog = HashMap<String, Vec<(std::time::Instant, String, u64)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_an_engine_hands_its_rooms_over() {
    let server = RedisServer::start();
    let rooms = ["r1", "r2", "r3", "r4", "r5", "r6"];
    let (ledger, gw, mut rx) = players_and_gateway(&server, &rooms, 1_000_000).await;
    let mut conn = redis_conn(&server).await;
    // A lease longer than the whole handover: rooms can only move because it is released.
    let lease_ms = 5_000;
    let draining = engine_process_with_lease(&server, "e1", lease_ms);
    let mut survivor = engine_process_with_lease(&server, "e2", lease_ms);
    rooms_shared_by(&mut conn, &rooms, &["e1", "e2"], Duration::from_secs(30)).await;

    // Collect room events and settlements while bets flow.
    let collector = tokio::spawn(async move {
        let mut log: RoomLog = HashMap::new();
        let mut settled: HashMap<String, usize> = HashMap::new();
        while let Some(d) = rx.recv().await {
            let v: Value = serde_json::from_str(&d.frame).unwrap();
            match d.target {
                Target::User(_) => {
                    assert_eq!(v["type"], "bet_settled", "{v}");
                    *settled
                        .entry(v["idempotencyKey"].as_str().unwrap().into())
                        .or_default() += 1;
                }
                Target::Room(room) if v["type"] == "game_event" => {
                    log.entry(room).or_default().push((
                        std::time::Instant::now(),
                        v["event"].as_str().unwrap().to_owned(),
                        v["data"]["nonce"].as_u64().unwrap(),
                    ));
                }
                _ => {}
            }
            if settled.len() == 600 {
                // Every bet settled; keep listening briefly for duplicates.
                let quiet = tokio::time::sleep(Duration::from_secs(1));
                tokio::pin!(quiet);
                loop {
                    tokio::select! {
                        _ = &mut quiet => return (log, settled),
                        d = rx.recv() => {
                            let Some(d) = d else { return (log, settled) };
                            if matches!(d.target, Target::User(_)) {
                                let v: Value = serde_json::from_str(&d.frame).unwrap();
                                *settled.entry(v["idempotencyKey"].as_str().unwrap().into()).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
        (log, settled)
    });

    let mut keys = Vec::new();
    let mut term_at = None;
    let mut draining = Some(draining);
    let mut e1_rooms: Vec<&str> = Vec::new();
    let mut exited = None;
    for i in 0..600 {
        let bet = BetRequest {
            idempotency_key: format!("k{i}"),
            user_id: format!("p{}", i % 8),
            game_id: rooms[i % rooms.len()].into(),
            amount: 100,
            selection: json!({"direction": "under", "target": 50}),
            client_seed: None,
            gateway_id: "gw".into(),
            received_at_ms: 0,
        };
        gw.submit_bet(&bet).await.unwrap();
        keys.push(bet.idempotency_key);
        if i == 200 {
            // The rooms the stopping engine runs right now.
            let owners = lease_owners(&mut conn, &rooms).await;
            e1_rooms = rooms
                .iter()
                .zip(&owners)
                .filter(|(_, o)| *o == "e1")
                .map(|(r, _)| *r)
                .collect();
            assert!(!e1_rooms.is_empty(), "e1 runs no room: {owners:?}");
            sigterm(draining.as_ref().unwrap());
            let at = std::time::Instant::now();
            term_at = Some(at);
            let mut draining = draining.take().unwrap();
            exited = Some(tokio::spawn(async move {
                loop {
                    if let Some(status) = draining.0.try_wait().unwrap() {
                        return (status, at.elapsed());
                    }
                    assert!(
                        at.elapsed() < Duration::from_secs(10),
                        "engine still running 10 s after SIGTERM"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let term_at = term_at.unwrap();
    let (exit, exited_after) = exited.unwrap().await.unwrap();
    assert!(exit.success(), "engine exit status {exit:?}");
    // Nothing left behind that cannot be claimed at once: no lease, and no entry pending with
    // the stopped engine that looks recently read.
    let owners = lease_owners(&mut conn, &rooms).await;
    assert!(!owners.iter().any(|o| o == "e1"), "leases kept: {owners:?}");
    for room in rooms {
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(format!("gf:bets:{room}"))
            .arg("engines")
            .arg("-")
            .arg("+")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        for p in pending.ids.iter().filter(|p| p.consumer.starts_with("e1-")) {
            assert!(
                p.last_delivered_ms > 60_000,
                "{room} {} left pending with the stopped engine, idle {} ms",
                p.id,
                p.last_delivered_ms
            );
        }
    }

    let (log, settled) = tokio::time::timeout(Duration::from_secs(30), collector)
        .await
        .expect("not every bet settled within 30 s")
        .unwrap();
    // Every bet taken into the ledger was acknowledged on the stream (and deleted from it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = 0;
        for room in rooms {
            let n: usize = redis::cmd("XLEN")
                .arg(format!("gf:bets:{room}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            left += n;
        }
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} bet entries never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&survivor);
    let _ = survivor.0.wait();

    assert_eq!(settled.len(), keys.len(), "every bet settled");
    assert!(
        settled.values().all(|&n| n == 1),
        "settled more than once: {settled:?}"
    );
    let entries = ledger.entries(0, 100_000).await.unwrap();
    let stakes = entries.iter().filter(|e| e.kind == EntryKind::Bet).count();
    assert_eq!(stakes, keys.len(), "every bet debited exactly once");
    let total = ledger_suite::total(&ledger).await;
    assert_eq!(total, 0, "money conserved");

    // Every room's rounds: each nonce rolled exactly once, none skipped; the stopped engine's
    // rooms went on. The handoff gap is the longest time after SIGTERM with no round open.
    let mut worst_gap = Duration::ZERO;
    for room in rooms {
        let events = &log[room];
        let results: Vec<u64> = events
            .iter()
            .filter(|(_, e, _)| e == "round_result")
            .map(|(_, _, n)| *n)
            .collect();
        let first = results[0];
        assert_eq!(
            results,
            (first..first + results.len() as u64).collect::<Vec<_>>(),
            "{room}: rounds skipped or doubled"
        );
        if !e1_rooms.contains(&room) {
            continue;
        }
        assert!(
            events
                .iter()
                .any(|(t, e, _)| e == "round_started" && t.duration_since(term_at) > exited_after),
            "{room}: no round after the handover (exit after {exited_after:?}): {:?}",
            events
                .iter()
                .map(|(t, e, n)| (t.saturating_duration_since(term_at).as_millis(), e, n))
                .collect::<Vec<_>>()
        );
        let mut last_result = None;
        for (t, e, _) in events.iter().filter(|(t, _, _)| *t >= term_at) {
            match e.as_str() {
                "round_result" => last_result = Some(*t),
                "round_started" => {
                    if let Some(r) = last_result.take() {
                        eprintln!(
                            "{room}: {} ms without a round",
                            t.duration_since(r).as_millis()
                        );
                        worst_gap = worst_gap.max(t.duration_since(r));
                    }
                }
                _ => {}
            }
        }
    }
    eprintln!(
        "SIGTERM: engine exited after {} ms; longest handoff gap {} ms over {} rooms",
        exited_after.as_millis(),
        worst_gap.as_millis(),
        e1_rooms.len()
    );
    assert!(
        worst_gap < Duration::from_millis(lease_ms),
        "handoff took {worst_gap:?}: rooms moved by lease expiry, not release"
    );
}

/// With `LEDGER_REDIS_URL` the money lives on its own Redis: bets taken from the bus's streams
/// are debited and settled there, once each, and the bus's Redis holds no ledger key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_ledger_redis_holds_all_the_money() {
    let bus_server = RedisServer::start();
    let ledger_server = RedisServer::start();
    let rooms = ["s1", "s2"];
    let (ledger, gw, mut rx) =
        players_and_gateway_with_ledger(&bus_server, &ledger_server, &rooms, 10_000).await;
    let _engine = Proc(
        engine_command(&bus_server, "e1", 1_000)
            .env("LEDGER_REDIS_URL", ledger_server.url())
            .spawn()
            .unwrap(),
    );
    let mut conn = redis_conn(&bus_server).await;
    rooms_shared_by(&mut conn, &rooms, &["e1"], Duration::from_secs(30)).await;
    for i in 0..20 {
        gw.submit_bet(&BetRequest {
            idempotency_key: format!("k{i}"),
            user_id: format!("p{}", i % 8),
            game_id: rooms[i % 2].into(),
            amount: 100,
            selection: json!({"direction": "over", "target": 50}),
            client_seed: None,
            gateway_id: "gw".into(),
            received_at_ms: 0,
        })
        .await
        .unwrap();
    }
    let settled = settlements(&mut rx, 20, Duration::from_secs(30)).await;
    assert!(
        settled.values().all(|&n| n == 1),
        "settled more than once: {settled:?}"
    );
    let stakes = ledger
        .entries(0, 1_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EntryKind::Bet)
        .count();
    assert_eq!(stakes, 20);
    let total = ledger_suite::total(&ledger).await;
    assert_eq!(total, 0);
    let on_bus: Vec<String> = redis::cmd("KEYS")
        .arg("gf:ledger:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        on_bus.is_empty(),
        "ledger keys on the bus's Redis: {on_bus:?}"
    );
    let bet_records: Vec<String> = redis::cmd("KEYS")
        .arg("gf:bet:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(bet_records.is_empty(), "{bet_records:?}");
}
