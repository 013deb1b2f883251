//! Money under faults, with real processes and a real redis-server: engines paused past their
//! lease (SIGSTOP/SIGCONT), killed (SIGKILL), cut off from Redis by a proxy that stops
//! forwarding, a settle reply dropped on the wire, the ledger's Redis killed and restarted with
//! AOF, a ledger without persistence or without its identity. Every test ends with the same
//! audit: each acknowledged bet settled exactly once and its player told once, no bet record
//! left pending, every stake and payout applied at most once, all balances summing to 0.

// Only its total helper is used here.
#[allow(dead_code)]
mod ledger_suite;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gameserver::bus::redis::RedisBus;
use gameserver::bus::{BetRequest, Delivery, GatewayBus, Target};
use gameserver::ledger::{BetState, EntryKind, Ledger, RedisLedger};
use serde_json::{json, Value};
use support::fleet::{
    bus_conn, engine_base, free_addr, http_get, lease_owners, metric, players_and_gateway_at,
    players_and_gateway_on, players_and_gateway_with_ledger, redis_conn, rooms_shared_by, signal,
    Proc,
};
use support::{FaultProxy, RedisCluster, RedisServer};
use tokio::sync::mpsc::Receiver;

/// Bets submitted through the bus while a fault plays out: one every `every`, round-robin over
/// the players p0…p7 and the rooms. Only bets whose `XADD` succeeded count as acknowledged (a
/// failed submission may still have landed, so it may be settled too, but need not be).
struct Flow {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Bets, Bets)>,
}

/// (user, idempotency key) of bets.
type Bets = Vec<(String, String)>;

impl Flow {
    /// Keys are `<tag><n>`.
    fn start(gw: Arc<RedisBus>, tag: &str, rooms: &[&str], every: Duration) -> Self {
        let tag = tag.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        let task = tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0usize;
            while !flag.load(Ordering::Acquire) {
                let user = format!("p{}", i % 8);
                let key = format!("{tag}{i}");
                let bet = BetRequest {
                    idempotency_key: key.clone(),
                    user_id: user.clone(),
                    game_id: rooms[i % rooms.len()].clone(),
                    amount: 100,
                    selection: json!({"direction": "under", "target": 50}),
                    client_seed: Some(format!("s{i}")),
                    gateway_id: "gw".into(),
                    received_at_ms: 0,
                };
                match gw.submit_bet(&bet).await {
                    Ok(()) => acked.push((user, key)),
                    Err(_) => failed.push((user, key)),
                }
                i += 1;
                tokio::time::sleep(every).await;
            }
            (acked, failed)
        });
        Self { stop, task }
    }

    /// Stops submitting; the acknowledged and the failed submissions.
    async fn finish(self) -> (Bets, Bets) {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap()
    }
}

/// Players p0…p7 funded with `balance` on the ledger's Redis, a gateway's side of the bus
/// holding a member in each room, what the players are told, and a connection to the bus.
async fn players(
    bus: &RedisServer,
    ledger: &RedisServer,
    rooms: &[&str],
    balance: i64,
) -> (Arc<RedisBus>, Told, redis::aio::MultiplexedConnection) {
    let (_, gw, rx) = players_and_gateway_with_ledger(bus, ledger, rooms, balance).await;
    (gw, listen(rx), redis_conn(bus).await)
}

/// Counts the `bet_settled` notices each key's player receives.
type Told = Arc<Mutex<HashMap<String, usize>>>;

fn listen(mut rx: Receiver<Delivery>) -> Told {
    let told: Told = Arc::default();
    let out = Arc::clone(&told);
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            if matches!(d.target, Target::User(_)) {
                let v: Value = serde_json::from_str(&d.frame).unwrap();
                assert_eq!(v["type"], "bet_settled", "{v}");
                *out.lock()
                    .unwrap()
                    .entry(v["idempotencyKey"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    });
    told
}

/// Waits until every acknowledged key's player was told (at most `within`), then a second
/// more for any duplicate.
async fn all_told(told: &Told, acked: &[(String, String)], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let missing = {
            let t = told.lock().unwrap();
            acked.iter().filter(|(_, k)| !t.contains_key(k)).count()
        };
        if missing == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged bets never told",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The audit every fault test ends with; returns a one-line summary for the log.
async fn audit(
    fault: &str,
    ledger_server: &RedisServer,
    told: &Told,
    acked: &[(String, String)],
    failed: &[(String, String)],
) -> String {
    // A client of its own: the test's may have lost its connection to a restarted server.
    let ledger = &RedisLedger::connect(&ledger_server.url(), "gf").unwrap();
    let told = told.lock().unwrap().clone();
    let mut settled = 0;
    for (user, key) in acked {
        let rec = ledger.bet(user, key).await.unwrap();
        assert!(
            matches!(
                rec.as_ref().map(|r| &r.state),
                Some(BetState::Settled { .. })
            ),
            "{fault}: acknowledged {key} is not settled: {rec:?}"
        );
        settled += 1;
    }
    let duplicates: Vec<(&String, &usize)> = told.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "{fault}: told twice: {duplicates:?}");
    for (_, key) in acked {
        assert_eq!(told.get(key), Some(&1), "{fault}: {key} told");
    }
    // Each stake and each payout applied at most once, only for bets that were submitted.
    let submitted: HashSet<&str> = acked
        .iter()
        .chain(failed)
        .map(|(_, k)| k.as_str())
        .collect();
    let entries = ledger.entries(0, 10_000_000).await.unwrap();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        *per_key.entry(e.key.as_str()).or_default() += 1;
    }
    assert!(
        per_key.values().all(|&n| n == 1),
        "{fault}: an entry key applied twice"
    );
    let stakes = entries.iter().filter(|e| e.kind == EntryKind::Bet).count();
    for e in entries.iter().filter(|e| e.kind == EntryKind::Bet) {
        let key = e.key.rsplit(':').next().unwrap_or("");
        assert!(
            submitted.contains(key),
            "{fault}: stake for unknown bet {}",
            e.key
        );
    }
    let pending = pending_bets(ledger_server).await;
    assert_eq!(pending, 0, "{fault}: bet records left pending");
    let total = ledger_suite::total(ledger).await;
    assert_eq!(total, 0, "{fault}: money created or lost");
    let line = format!(
        "{fault}: acknowledged {}, settled {settled}, stakes {stakes}, told twice {}, pending \
         {pending}, balance sum {total} (failed submissions {})",
        acked.len(),
        duplicates.len(),
        failed.len()
    );
    eprintln!("{line}");
    line
}

/// Bet records still pending in the ledger's Redis.
async fn pending_bets(server: &RedisServer) -> usize {
    let mut conn = redis_conn(server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("gf:bet:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut pending = 0;
    for k in keys {
        let state: Option<String> = redis::cmd("HGET")
            .arg(&k)
            .arg("state")
            .query_async(&mut conn)
            .await
            .unwrap();
        if state.as_deref() == Some("pending") {
            pending += 1;
        }
    }
    pending
}

/// An engine with a known admin address, tolerating this harness's Redis without AOF.
fn engine_at(url: &str, id: &str, lease_ms: u64) -> (Proc, String) {
    let admin = free_addr();
    let mut cmd = engine_base(url, id, lease_ms, &admin);
    cmd.arg("--allow-ephemeral-ledger");
    (Proc(cmd.spawn().unwrap()), admin)
}

const ROOMS: [&str; 4] = ["r1", "r2", "r3", "r4"];
const LEASE_MS: u64 = 1_000;

/// (a) The owner of rooms is paused (SIGSTOP) past its lease while bets flow; the other
/// engine takes its rooms; the paused one resumes (SIGCONT) and must not act on rooms it lost;
/// then the new owner is killed (SIGKILL) and the resumed engine takes everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_then_the_new_owner_killed() {
    let server = RedisServer::start();
    let (gw, told, mut conn) = players(&server, &server, &ROOMS, 10_000_000).await;
    let (paused, paused_admin) = engine_at(&server.url(), "e1", LEASE_MS);
    let (mut taker, _) = engine_at(&server.url(), "e2", LEASE_MS);
    rooms_shared_by(&mut conn, &ROOMS, &["e1", "e2"], Duration::from_secs(30)).await;

    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&paused, "STOP");
    // Past its lease: e2 runs every room.
    rooms_shared_by(&mut conn, &ROOMS, &["e2"], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    signal(&paused, "CONT");
    // The resumed engine learns it lost its rooms and takes its share again.
    rooms_shared_by(&mut conn, &ROOMS, &["e1", "e2"], Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    taker.0.kill().unwrap();
    taker.0.wait().unwrap();
    rooms_shared_by(&mut conn, &ROOMS, &["e1"], Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, failed) = flow.finish().await;

    all_told(&told, &acked, Duration::from_secs(30)).await;
    let lost = metric(&paused_admin, "engine_room_leases_lost_total").await;
    let stale = metric(&paused_admin, "engine_stale_owner_total").await;
    eprintln!("paused engine after SIGCONT: {lost} room leases found lost, {stale} writes refused STALE_OWNER");
    assert!(
        lost + stale >= 1.0,
        "the paused engine never noticed it lost its rooms"
    );
    audit(
        "SIGSTOP owner, SIGKILL new owner",
        &server,
        &told,
        &acked,
        &failed,
    )
    .await;
    assert_eq!(lease_owners(&mut conn, &ROOMS).await, ["e1"; 4]);
}

/// Without AOF on its ledger's Redis an engine refuses to start, saying why and what to do;
/// with AOF on (or the development flag) it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_refuses_a_ledger_redis_without_persistence() {
    let server = RedisServer::start();
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking({
            let url = server.url();
            move || {
                engine_base(&url, "e1", LEASE_MS, "127.0.0.1:0")
                    .stderr(std::process::Stdio::piped())
                    .output()
                    .unwrap()
            }
        }),
    )
    .await
    .expect("the engine neither refused nor stopped")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without AOF persistence")
            && stderr.contains("appendonly yes")
            && stderr.contains("--allow-ephemeral-ledger"),
        "{stderr}"
    );

    let mut conn = redis_conn(&server).await;
    support::fleet::turn_aof_on(&server).await;
    let admin = free_addr();
    let _engine = Proc(
        engine_base(&server.url(), "e1", LEASE_MS, &admin)
            .spawn()
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while http_get(&admin, "/readyz").await.map(|r| r.0) != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "engine on an AOF ledger never ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id: Option<String> = redis::cmd("GET")
        .arg("gf:ledger:identity")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        id.is_some_and(|i| i.len() == 32),
        "a new ledger gets its identity marker"
    );
}

/// The ledger's Redis forgets everything under a running engine (FLUSHALL, as a restart
/// without persistence would): the engine halts bet intake instead of carrying on as if
/// nothing happened (not ready, `engine_ledger_halted 1`, bets left queued, nothing written);
/// with the data back (here: its identity marker and the players' funds) it resumes and every
/// bet queued meanwhile is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_halts_on_a_ledger_that_forgot_and_resumes_when_it_is_back() {
    let server = RedisServer::start();
    let rooms = ["h1"];
    let (gw, told, mut conn) = players(&server, &server, &rooms, 1_000_000).await;
    let (_engine, admin) = engine_at(&server.url(), "e1", LEASE_MS);
    rooms_shared_by(&mut conn, &rooms, &["e1"], Duration::from_secs(30)).await;
    let identity: String = redis::cmd("GET")
        .arg("gf:ledger:identity")
        .query_async(&mut conn)
        .await
        .unwrap();
    let flow = Flow::start(Arc::clone(&gw), "before", &rooms, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = flow.finish().await;
    all_told(&told, &before, Duration::from_secs(15)).await;

    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    gw.join_room("h1", "conn").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http_get(&admin, "/readyz").await;
        let halted = metric(&admin, "engine_ledger_halted").await;
        if halted == 1.0
            && ready
                .as_ref()
                .is_some_and(|(s, b)| *s == 503 && b.contains("ledger identity"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not halted: {ready:?}, halted {halted}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bets keep coming while halted: queued, not taken.
    let flow = Flow::start(Arc::clone(&gw), "after", &rooms, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queued: usize = redis::cmd("XLEN")
        .arg("gf:bets:h1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(queued > 0, "no bet queued while halted");
    let written: Vec<String> = redis::cmd("KEYS")
        .arg("gf:ledger:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(written.is_empty(), "written while halted: {written:?}");

    // The data comes back (a restore): the marker and, here, fresh funds.
    redis::cmd("SET")
        .arg("gf:ledger:identity")
        .arg(&identity)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let ledger = RedisLedger::connect(&server.url(), "gf").unwrap();
    for u in 0..8 {
        ledger
            .transfer(&gameserver::ledger::Transfer {
                key: format!("refund-{u}"),
                kind: EntryKind::Deposit,
                from: gameserver::ledger::TREASURY.into(),
                to: gameserver::ledger::user_account(&format!("p{u}")),
                amount: 1_000_000,
                memo: String::new(),
            })
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&admin, "engine_ledger_halted").await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, failed) = flow.finish().await;
    all_told(&told, &after, Duration::from_secs(30)).await;
    audit(
        "ledger forgot, halted, restored",
        &server,
        &told,
        &after,
        &failed,
    )
    .await;
}

/// (b) A partition: one engine reaches Redis (bus and ledger) through a proxy that stops
/// forwarding for three lease lifetimes, then forwards again (everything it held included).
/// The other engine takes the cut-off one's rooms; the cut-off one stops them at once and,
/// when the network is back, whatever it had sent meanwhile is refused or harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_partitioned_from_redis_past_its_lease() {
    let server = RedisServer::start();
    let (gw, told, mut conn) = players(&server, &server, &ROOMS, 10_000_000).await;
    let proxy = FaultProxy::start(server.port);
    let (_cut_off, cut_admin) = engine_at(&proxy.url(), "e1", LEASE_MS);
    let (_other, _) = engine_at(&server.url(), "e2", LEASE_MS);
    rooms_shared_by(&mut conn, &ROOMS, &["e1", "e2"], Duration::from_secs(30)).await;

    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.stall();
    rooms_shared_by(&mut conn, &ROOMS, &["e2"], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    let lost_during = metric(&cut_admin, "engine_room_leases_lost_total").await;
    proxy.resume();
    rooms_shared_by(&mut conn, &ROOMS, &["e1", "e2"], Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, failed) = flow.finish().await;

    all_told(&told, &acked, Duration::from_secs(30)).await;
    let stale = metric(&cut_admin, "engine_stale_owner_total").await;
    eprintln!(
        "partitioned engine: {lost_during} room leases given up during the partition, {stale} \
         writes refused STALE_OWNER after it"
    );
    assert!(
        lost_during >= 1.0,
        "the cut-off engine kept its rooms running through the partition"
    );
    audit("partition past the lease", &server, &told, &acked, &failed).await;
}

/// (c) The ledger's own Redis, persisted with AOF (`appendfsync always`), is SIGKILLed in
/// the middle of the load and restarted on its data: engines wait it out (bets stay queued on
/// the bus), nothing acknowledged is lost, and no stake or payout is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aof_ledger_redis_killed_mid_load_and_restarted() {
    let bus = RedisServer::start();
    let mut ledger_server = RedisServer::start_aof("always");
    let (gw, told, mut conn) = players(&bus, &ledger_server, &ROOMS, 10_000_000).await;
    let mut engines = Vec::new();
    for id in ["e1", "e2"] {
        // No development flag: this ledger persists.
        let mut cmd = engine_base(&bus.url(), id, LEASE_MS, "127.0.0.1:0");
        cmd.env("LEDGER_REDIS_URL", ledger_server.url());
        engines.push(Proc(cmd.spawn().unwrap()));
    }
    rooms_shared_by(&mut conn, &ROOMS, &["e1", "e2"], Duration::from_secs(30)).await;

    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ledger_server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    ledger_server.restart();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (acked, failed) = flow.finish().await;

    all_told(&told, &acked, Duration::from_secs(30)).await;
    for e in &mut engines {
        assert!(e.0.try_wait().unwrap().is_none(), "an engine exited");
    }
    audit(
        "AOF ledger Redis SIGKILLed and restarted",
        &ledger_server,
        &told,
        &acked,
        &failed,
    )
    .await;
}

/// (c') The same kill on a ledger's Redis without persistence (engines allowed to run on it):
/// it comes back empty, and the engines halt instead of going on with the money forgotten:
/// nothing is written to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_ledger_redis_restarted_empty_halts_the_engines() {
    let bus = RedisServer::start();
    let mut ledger_server = RedisServer::start();
    let (gw, told, mut conn) = players(&bus, &ledger_server, &ROOMS, 10_000_000).await;
    let admin = free_addr();
    let mut cmd = engine_base(&bus.url(), "e1", LEASE_MS, &admin);
    cmd.env("LEDGER_REDIS_URL", ledger_server.url())
        .arg("--allow-ephemeral-ledger");
    let _engine = Proc(cmd.spawn().unwrap());
    rooms_shared_by(&mut conn, &ROOMS, &["e1"], Duration::from_secs(30)).await;
    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ledger_server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&admin, "engine_ledger_halted").await != 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the engine went on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acked, _) = flow.finish().await;
    let mut lconn = redis_conn(&ledger_server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut lconn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "written to the forgotten ledger: {keys:?}");
    // Not ready either, once the readiness grace for a lost dependency is over.
    wait_not_ready_for_identity(&admin).await;
    let untold = untold(&told, &acked);
    eprintln!(
        "ephemeral ledger restarted empty: engine halted, {untold} of {} bets left queued, \
         nothing written",
        acked.len()
    );
    assert!(untold > 0);
}

/// Waits (at most 10 s) until the engine's `/readyz` says 503 for its ledger identity.
async fn wait_not_ready_for_identity(admin: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(admin, "/readyz").await.unwrap();
        if status == 503 && body.contains("ledger identity") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many acknowledged bets' players were never told.
fn untold(told: &Told, acked: &[(String, String)]) -> usize {
    let t = told.lock().unwrap();
    acked.iter().filter(|(_, k)| !t.contains_key(k)).count()
}

/// (c'') One node of a three-node ledger cluster restarted empty (a node without persistence):
/// the shards it serves forgot their money, and the engine halts instead of going on without
/// it: nothing is written to that node, and the engine is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_cluster_node_restarted_empty_halts_the_engines() {
    let bus = RedisServer::start();
    let mut cluster = RedisCluster::start(3);
    let (_, gw, rx) = players_and_gateway_on(&bus, &cluster.url(), &ROOMS, 10_000_000).await;
    let (told, mut conn) = (listen(rx), redis_conn(&bus).await);
    let admin = free_addr();
    let mut cmd = engine_base(&bus.url(), "e1", LEASE_MS, &admin);
    cmd.env("LEDGER_REDIS_URL", cluster.url())
        .arg("--allow-ephemeral-ledger");
    let _engine = Proc(cmd.spawn().unwrap());
    rooms_shared_by(&mut conn, &ROOMS, &["e1"], Duration::from_secs(30)).await;
    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node_keys = |port: u16| async move {
        let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("KEYS")
            .arg("*")
            .query_async::<Vec<String>>(&mut node)
            .await
            .unwrap()
    };
    let before = node_keys(cluster.ports[1]).await;
    assert!(
        before.iter().any(|k| k.ends_with(":ledger:identity")),
        "node 1 serves ledger shards: {before:?}"
    );
    cluster.restart_node(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while metric(&admin, "engine_ledger_halted").await != 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the engine went on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acked, _) = flow.finish().await;
    let keys = node_keys(cluster.ports[1]).await;
    assert!(keys.is_empty(), "written to the forgotten node: {keys:?}");
    wait_not_ready_for_identity(&admin).await;
    let untold = untold(&told, &acked);
    eprintln!(
        "ledger cluster node restarted empty: engine halted, {untold} of {} bets left queued, \
         nothing written to the node",
        acked.len()
    );
    assert!(untold > 0);
}

/// (c''') The bus on a three-node Redis Cluster, the ledger on its own Redis: a bus node is
/// SIGKILLed and restarted empty between two waves of bets. The gateway's shard channels on
/// that node are subscribed again, its presence there written again, the engine's consumer
/// groups made again, and every bet acknowledged before or after is settled and told once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_cluster_node_restarted_empty_between_waves_loses_nothing_acknowledged() {
    let mut cluster = RedisCluster::start(3);
    let ledger_server = RedisServer::start();
    let (_, gw, rx) =
        players_and_gateway_at(&cluster.url(), &ledger_server.url(), &ROOMS, 10_000_000).await;
    let told = listen(rx);
    let mut conn = bus_conn(&cluster.url());
    let admin = free_addr();
    let mut cmd = engine_base(&cluster.url(), "e1", LEASE_MS, &admin);
    cmd.env("LEDGER_REDIS_URL", ledger_server.url())
        .arg("--allow-ephemeral-ledger");
    let _engine = Proc(cmd.spawn().unwrap());
    rooms_shared_by(&mut conn, &ROOMS, &["e1"], Duration::from_secs(30)).await;

    let first = Flow::start(Arc::clone(&gw), "a", &ROOMS, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (mut acked, mut failed) = first.finish().await;
    all_told(&told, &acked, Duration::from_secs(30)).await;

    let node = redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.ports[1])).unwrap();
    let node_keys = |pattern: &'static str| {
        let node = node.clone();
        async move {
            let Ok(mut c) = node.get_multiplexed_async_connection().await else {
                return Vec::new();
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            keys
        }
    };
    let before = node_keys("gf:{[ru].*").await;
    assert!(!before.is_empty(), "node 1 serves rooms or players");
    let mut presence: Vec<String> = node_keys("gf:{r.*}:presence").await;
    presence.sort();
    cluster.restart_node(1);

    // The restarted node knows this gateway's members again (presence restored).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut now = node_keys("gf:{r.*}:presence").await;
        now.sort();
        if now == presence {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence not restored on the restarted node: {now:?} vs {presence:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = Flow::start(Arc::clone(&gw), "b", &ROOMS, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (acked2, failed2) = second.finish().await;
    assert!(!acked2.is_empty(), "no bet acknowledged after the restart");
    acked.extend(acked2);
    failed.extend(failed2);
    all_told(&told, &acked, Duration::from_secs(30)).await;
    // Every bet taken into the ledger was acknowledged on the bus (and deleted): nothing is
    // left to be redelivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for room in ROOMS {
        loop {
            let queued: usize = redis::cmd("XLEN")
                .arg(format!("gf:{{r.{room}}}:bets"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if queued == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queued} entries left in {room}'s bet stream"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    audit(
        "bus cluster node restarted empty between waves",
        &ledger_server,
        &told,
        &acked,
        &failed,
    )
    .await;
}

/// (d) The reply to a settlement is dropped on the wire (the proxy closes the ledger
/// connection after forwarding the request): the settlement happened, the engine retries, finds
/// it done, and still tells the player, once. Three times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_settle_reply() {
    let server = RedisServer::start();
    let (gw, told, mut conn) = players(&server, &server, &ROOMS, 10_000_000).await;
    let proxy = FaultProxy::start(server.port);
    let mut cmd = engine_base(&server.url(), "e1", LEASE_MS, "127.0.0.1:0");
    cmd.env("LEDGER_REDIS_URL", proxy.url())
        .arg("--allow-ephemeral-ledger");
    let _engine = Proc(cmd.spawn().unwrap());
    rooms_shared_by(&mut conn, &ROOMS, &["e1"], Duration::from_secs(30)).await;

    let flow = Flow::start(Arc::clone(&gw), "k", &ROOMS, Duration::from_millis(10));
    for _ in 0..3 {
        // A settlement's arguments carry each bet's payout key.
        proxy.drop_reply_after(b"payout:p");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let fired = proxy.fired();
        while proxy.fired() == fired {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no settlement to drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (acked, failed) = flow.finish().await;
    all_told(&told, &acked, Duration::from_secs(30)).await;
    assert_eq!(proxy.fired(), 3);
    audit("settle reply dropped ×3", &server, &told, &acked, &failed).await;
}
