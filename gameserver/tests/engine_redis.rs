//! Gateways and engines joined by a real redis-server: cross-gateway rooms, duplicate bets,
//! engine crash takeover, room spreading, and a Redis restart.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gameserver::bus::redis::{RedisBus, RedisBusConfig};
use gameserver::bus::{
    BetRequest, BusError, Delivery, EngineBus, GatewayBus, MarkedNotice, QueuedBet, Target,
};
use gameserver::engine::{self, EngineConfig};
use gameserver::ledger::{
    BetRecord, Entry, EntryKind, Fence, Ledger, LedgerError, Placed, Posted, RedisLedger,
    RoundState, Settlement, Transfer, Wager,
};
use serde_json::{json, Value};
use support::{RedisCluster, RedisServer};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

fn bus_cfg(url: &str, node: &str) -> RedisBusConfig {
    bus_cfg_url(url, node)
}

fn bus_cfg_url(url: &str, node: &str) -> RedisBusConfig {
    let mut cfg = RedisBusConfig::new(url, node);
    cfg.lease_ttl = Duration::from_millis(1_000);
    cfg.claim_idle = Duration::from_millis(500);
    // Synthetic bursts of bets: the per-player rate is not under test here.
    cfg.bets_per_user_per_second = 0;
    cfg
}

struct Gateway {
    bus: Arc<RedisBus>,
    rx: Receiver<Delivery>,
}

async fn gateway(url: &str, node: &str, rooms: &[&str]) -> Gateway {
    let bus = RedisBus::connect(bus_cfg(url, node)).unwrap();
    let rx = bus.take_deliveries().unwrap();
    for room in rooms {
        bus.subscribe_room(room).await.unwrap();
        bus.join_room(room, &format!("{node}-conn")).await.unwrap();
    }
    // Direct frames reach a gateway only for the users it holds: these tests' players.
    let users = ["ann", "bo", "cy"].map(String::from);
    for u in users.into_iter().chain((0..8).map(|i| format!("p{i}"))) {
        bus.subscribe_user(&u).await.unwrap();
    }
    // The subscriber connects in the background.
    bus.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    Gateway { bus, rx }
}

/// An engine on its own runtime, so a crash can be simulated by dropping every task at once.
struct Engine {
    registry: prometheus::Registry,
    stop: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
    done: tokio::sync::oneshot::Receiver<Result<(), engine::EngineError>>,
}

impl Engine {
    async fn stop(mut self) {
        self.stop.cancel();
        (&mut self.done).await.unwrap().unwrap();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Like SIGKILL: every task stops where it is; leases and pending entries stay behind.
    fn crash(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn start_engine(url: &str, node: &str) -> Engine {
    start_engine_with(url, node, |l| Arc::new(l))
}

/// An engine whose ledger is `wrap`ped (to stop it at a chosen step).
fn start_engine_with(
    url: &str,
    node: &str,
    wrap: impl FnOnce(RedisLedger) -> Arc<dyn Ledger> + Send + 'static,
) -> Engine {
    start_engine_wrapped(url, node, |b| b as Arc<dyn EngineBus>, wrap)
}

/// An engine whose bus and ledger are wrapped.
fn start_engine_wrapped(
    url: &str,
    node: &str,
    wrap_bus: impl FnOnce(Arc<RedisBus>) -> Arc<dyn EngineBus> + Send + 'static,
    wrap: impl FnOnce(RedisLedger) -> Arc<dyn Ledger> + Send + 'static,
) -> Engine {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let (tx, done) = tokio::sync::oneshot::channel();
    let (url, node, reg, token) = (
        url.to_owned(),
        node.to_owned(),
        registry.clone(),
        stop.clone(),
    );
    rt.spawn(async move {
        let bus = RedisBus::connect(bus_cfg_url(&url, &node)).unwrap();
        bus.register_metrics(&reg).unwrap();
        let ledger = wrap(RedisLedger::connect(&url, "gf").unwrap());
        let bus = wrap_bus(bus);
        let cfg = EngineConfig {
            engine_id: node,
            betting_window: Duration::from_millis(300),
            result_pause: Duration::from_millis(50),
            starting_balance: Some(10_000),
            rooms_poll: Duration::from_millis(100),
            ..EngineConfig::default()
        };
        let _ = tx.send(engine::run(bus, ledger, cfg, reg, token).await);
    });
    Engine {
        registry,
        stop,
        rt: Some(rt),
        done,
    }
}

fn leases(e: &Engine) -> i64 {
    e.registry
        .gather()
        .iter()
        .find(|m| m.name() == "engine_room_leases")
        .map(|m| m.get_metric()[0].get_gauge().value() as i64)
        .unwrap_or(0)
}

fn bet(user: &str, key: &str, game: &str) -> BetRequest {
    BetRequest {
        idempotency_key: key.into(),
        user_id: user.into(),
        game_id: game.into(),
        amount: 100,
        selection: json!({"direction":"over","target":50}),
        client_seed: None,
        gateway_id: "test".into(),
        received_at_ms: 0,
    }
}

async fn next(rx: &mut Receiver<Delivery>) -> (Target, Value) {
    let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no delivery within 10 s")
        .expect("closed");
    (d.target.clone(), serde_json::from_str(&d.frame).unwrap())
}

async fn ledger_total(url: &str) -> (i64, usize) {
    let l = RedisLedger::connect(url, "gf").unwrap();
    let total = l.accounts().await.unwrap().iter().map(|(_, b)| b).sum();
    let stakes = l
        .entries(0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EntryKind::Bet)
        .count();
    (total, stakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_three_gateways_see_every_event_once() {
    players_on_three_gateways_see_every_event_once_on(&RedisServer::start().url()).await;
}

/// The same on a three-node Redis Cluster, bus and ledger alike: each room's frames go over its shard channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_three_gateways_see_every_event_once_on_a_redis_cluster() {
    players_on_three_gateways_see_every_event_once_on(&RedisCluster::start(3).url()).await;
}

async fn players_on_three_gateways_see_every_event_once_on(url: &str) {
    let mut gws = Vec::new();
    for i in 0..3 {
        gws.push(gateway(url, &format!("gw{i}"), &["g1"]).await);
    }
    let engine = start_engine(url, "e1");
    // Per gateway: how often each (event, roundId) arrived, over three rounds.
    for gw in gws.iter_mut() {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut rounds = 0;
        while rounds < 3 {
            let (_, v) = next(&mut gw.rx).await;
            if v["type"] == "game_event" {
                let key = (
                    v["event"].as_str().unwrap().to_owned(),
                    v["data"]["roundId"].as_str().unwrap().to_owned(),
                );
                *seen.entry(key).or_default() += 1;
                if v["event"] == "round_result" {
                    rounds += 1;
                }
            }
        }
        assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    }
    // A bet through one gateway is settled and its result reaches the user channel everywhere.
    gws[1]
        .bus
        .submit_bet(&bet("ann", "k1", "g1"))
        .await
        .unwrap();
    for gw in gws.iter_mut() {
        loop {
            let (t, v) = next(&mut gw.rx).await;
            if t == Target::User("ann".into()) {
                assert_eq!(v["type"], "bet_settled", "{v}");
                break;
            }
        }
    }
    engine.stop().await;
    assert_eq!(ledger_total(url).await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bet_through_two_gateways_debits_once() {
    the_same_bet_through_two_gateways_debits_once_on(&RedisServer::start().url()).await;
}

/// The same with bus and ledger on a three-node Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bet_through_two_gateways_debits_once_on_a_redis_cluster() {
    the_same_bet_through_two_gateways_debits_once_on(&RedisCluster::start(3).url()).await;
}

async fn the_same_bet_through_two_gateways_debits_once_on(url: &str) {
    let mut a = gateway(url, "gwa", &["g1"]).await;
    let b = gateway(url, "gwb", &["g1"]).await;
    let engine = start_engine(url, "e1");
    let (a_bus, b_bus) = (a.bus.clone(), b.bus.clone());
    let x = bet("bo", "dup", "g1");
    let (r1, r2) = tokio::join!(a_bus.submit_bet(&x), b_bus.submit_bet(&x));
    r1.unwrap();
    r2.unwrap();
    // Both copies are answered by one settlement on the user's channel, and after it the
    // next round's result passes with no second one.
    let mut settled = Vec::new();
    let mut rounds_after = 0;
    while rounds_after < 2 {
        let (t, v) = next(&mut a.rx).await;
        if t == Target::User("bo".into()) {
            assert_eq!(v["type"], "bet_settled", "{v}");
            settled.push(v);
        } else if !settled.is_empty() && v["event"] == "round_result" {
            rounds_after += 1;
        }
    }
    assert_eq!(settled.len(), 1, "{settled:?}");
    engine.stop().await;
    assert_eq!(ledger_total(url).await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_engine_s_rooms_move_and_every_bet_settles_once() {
    a_crashed_engine_s_rooms_move_and_every_bet_settles_once_on(&RedisServer::start().url()).await;
}

/// The same with bus and ledger on a three-node Redis Cluster: rooms in different slots move, their streams polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_engine_s_rooms_move_and_every_bet_settles_once_on_a_redis_cluster() {
    a_crashed_engine_s_rooms_move_and_every_bet_settles_once_on(&RedisCluster::start(3).url())
        .await;
}

async fn a_crashed_engine_s_rooms_move_and_every_bet_settles_once_on(url: &str) {
    let rooms = ["r1", "r2", "r3", "r4"];
    let mut gw = gateway(url, "gw", &rooms).await;
    let e1 = start_engine(url, "e1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e2 = start_engine(url, "e2");
    // Rooms spread over both engines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(leases(&e1) == 2 && leases(&e2) == 2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms did not spread: {} / {}",
            leases(&e1),
            leases(&e2)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bets flow into every room while e1 dies abruptly (no cleanup, leases left to expire).
    let mut keys = Vec::new();
    let mut e1 = Some(e1);
    for i in 0..80 {
        let b = bet(&format!("p{}", i % 8), &format!("k{i}"), rooms[i % 4]);
        gw.bus.submit_bet(&b).await.unwrap();
        keys.push(b.idempotency_key);
        if i == 30 {
            if let Some(e) = e1.take() {
                e.crash();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut outcome: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while outcome.len() < keys.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} answered",
            outcome.len(),
            keys.len()
        );
        let (t, v) = next(&mut gw.rx).await;
        if matches!(t, Target::User(_)) {
            assert_eq!(v["type"], "bet_settled", "{v}");
            *outcome
                .entry(v["idempotencyKey"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(leases(&e2), 4, "the survivor owns every room");
    e2.stop().await;
    // Every bet taken into the ledger was acknowledged and deleted from its room's stream.
    let mut conn = gameserver::redisx::connect(url).unwrap();
    for room in rooms {
        for key in [format!("gf:bets:{room}"), format!("gf:{{r.{room}}}:bets")] {
            let queued: usize = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(queued, 0, "{key}");
        }
    }
    let (total, stakes) = ledger_total(url).await;
    assert_eq!(total, 0, "money conserved");
    assert_eq!(stakes, keys.len(), "every bet debited exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_survived() {
    let mut server = RedisServer::start();
    let mut gw = gateway(&server.url(), "gw", &["g1"]).await;
    let engine = start_engine(&server.url(), "e1");
    loop {
        let (_, v) = next(&mut gw.rx).await;
        if v["event"] == "round_started" {
            break;
        }
    }
    server.kill();
    // While Redis is down the bus says so clearly.
    let err = gw.bus.submit_bet(&bet("cy", "k1", "g1")).await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    // Recovery: the gateway re-subscribes and re-registers its members by itself, and bets
    // settle again. While presence is being restored a bet may be refused with a clear reason.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    'recovered: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no settlement after the restart"
        );
        attempt += 1;
        let key = format!("after-{attempt}");
        if gw.bus.submit_bet(&bet("cy", &key, "g1")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        loop {
            let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), gw.rx.recv()).await
            else {
                continue 'recovered;
            };
            let v: Value = serde_json::from_str(&d.frame).unwrap();
            if d.target == Target::User("cy".into()) && v["idempotencyKey"] == json!(key) {
                if v["type"] == "bet_settled" {
                    break 'recovered;
                }
                assert_eq!(v["reason"], "ROUND_CLOSED", "{v}");
                continue 'recovered;
            }
        }
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_gateway_s_members_drop_out_of_rooms() {
    a_dead_gateway_s_members_drop_out_of_rooms_on(&RedisServer::start().url()).await;
}

/// The same on a Redis Cluster, where a room's presence and the room set are in different
/// slots (the room set is pruned by generation, never by a cross-slot script).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_gateway_s_members_drop_out_of_rooms_on_a_redis_cluster() {
    a_dead_gateway_s_members_drop_out_of_rooms_on(&RedisCluster::start(3).url()).await;
}

async fn a_dead_gateway_s_members_drop_out_of_rooms_on(url: &str) {
    use gameserver::bus::EngineBus;
    let cfg = |node: &str| {
        let mut c = bus_cfg(url, node);
        c.presence_ttl = Duration::from_millis(600);
        c
    };
    let dead = RedisBus::connect(cfg("gw-dead")).unwrap();
    let live = RedisBus::connect(cfg("gw-live")).unwrap();
    assert_eq!(dead.join_room("r", "d1").await.unwrap(), 1);
    assert_eq!(dead.join_room("solo", "d2").await.unwrap(), 1);
    assert_eq!(live.join_room("r", "l1").await.unwrap(), 2);
    // Live gateways keep their members well past the TTL by refreshing them.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(live.join_room("r", "l2").await.unwrap(), 3);

    // A gateway that stops writing (its process died): its members drop out.
    drop(dead);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = live.join_room("r", "l2").await.unwrap();
        if n == 2 {
            break;
        }
        assert_eq!(n, 3, "count of r");
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead gateway's member still counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Engines run rounds only where someone is alive.
    let engine = RedisBus::connect(cfg("e")).unwrap();
    assert_eq!(engine.active_rooms().await.unwrap(), ["r"]);
    assert_eq!(live.leave_room("r", "l1").await.unwrap(), 1);
    assert_eq!(live.leave_room("r", "l2").await.unwrap(), 0);
    // The last member gone, the room is no longer live: its engine lets it go.
    assert!(engine.active_rooms().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_s_live_room_cap_refuses_one_room_more() {
    the_fleet_s_live_room_cap_refuses_one_room_more_on(&RedisServer::start().url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_s_live_room_cap_refuses_one_room_more_on_a_redis_cluster() {
    the_fleet_s_live_room_cap_refuses_one_room_more_on(&RedisCluster::start(3).url()).await;
}

/// Two gateways sharing a cap of two live rooms: a third room is refused on either (with
/// nothing left counted for it), a room already live still takes members, and a room whose
/// last member left makes room for another.
async fn the_fleet_s_live_room_cap_refuses_one_room_more_on(url: &str) {
    let cfg = |node: &str| {
        let mut c = bus_cfg(url, node);
        c.max_live_rooms = 2;
        c
    };
    let a = RedisBus::connect(cfg("gwa")).unwrap();
    let b = RedisBus::connect(cfg("gwb")).unwrap();
    assert_eq!(a.join_room("r1", "a1").await.unwrap(), 1);
    assert_eq!(b.join_room("r2", "b1").await.unwrap(), 1);
    for (bus, conn) in [(&a, "a2"), (&b, "b2")] {
        let refused = bus.join_room("r3", conn).await;
        assert!(
            matches!(
                refused,
                Err(BusError::Refused(gameserver::bus::Bound::LiveRooms))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        b.join_room("r1", "b3").await.unwrap(),
        2,
        "a live room takes members"
    );
    assert_eq!(a.leave_room("r1", "a1").await.unwrap(), 1);
    assert_eq!(b.leave_room("r1", "b3").await.unwrap(), 0);
    // r3's refused joins left nothing behind: it starts at one member.
    assert_eq!(a.join_room("r3", "a4").await.unwrap(), 1);
    let refused = b.join_room("r4", "b4").await;
    assert!(matches!(refused, Err(BusError::Refused(_))), "{refused:?}");
}

/// A ledger that stops its engine for good right after its first settlement is stored, before
/// the engine can tell the player: a crash between the two steps.
struct StopAfterFirstSettlement {
    inner: RedisLedger,
    stopped: tokio::sync::Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
}

#[async_trait::async_trait]
impl Ledger for StopAfterFirstSettlement {
    async fn balance(&self, account: &str) -> Result<i64, LedgerError> {
        self.inner.balance(account).await
    }
    async fn transfer(&self, t: &Transfer) -> Result<Posted, LedgerError> {
        self.inner.transfer(t).await
    }
    async fn claim_room(&self, game_id: &str) -> Result<Fence, LedgerError> {
        self.inner.claim_room(game_id).await
    }
    async fn place_bet(&self, fence: &Fence, wager: &Wager) -> Result<Placed, LedgerError> {
        self.inner.place_bet(fence, wager).await
    }
    async fn settle_bet(
        &self,
        fence: &Fence,
        user_id: &str,
        key: &str,
        roll: u32,
        payout: i64,
    ) -> Result<Settlement, LedgerError> {
        let settled = self
            .inner
            .settle_bet(fence, user_id, key, roll, payout)
            .await?;
        if let Some(tx) = self.stopped.lock().await.take() {
            let _ = tx.send(key.to_owned());
            std::future::pending::<()>().await;
        }
        Ok(settled)
    }
    async fn reject_bet(
        &self,
        fence: &Fence,
        wager: &Wager,
        reason: &str,
    ) -> Result<BetRecord, LedgerError> {
        self.inner.reject_bet(fence, wager, reason).await
    }
    async fn bet(&self, user_id: &str, key: &str) -> Result<Option<BetRecord>, LedgerError> {
        self.inner.bet(user_id, key).await
    }
    async fn round_bets(&self, round_id: &str) -> Result<Vec<BetRecord>, LedgerError> {
        self.inner.round_bets(round_id).await
    }
    async fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        self.inner.entries(after, limit).await
    }
    async fn accounts(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        self.inner.accounts().await
    }
    async fn next_nonce(&self, fence: &Fence) -> Result<u64, LedgerError> {
        self.inner.next_nonce(fence).await
    }
    async fn open_round(&self, fence: &Fence, round: &RoundState) -> Result<(), LedgerError> {
        self.inner.open_round(fence, round).await
    }
    async fn current_round(&self, game_id: &str) -> Result<Option<RoundState>, LedgerError> {
        self.inner.current_round(game_id).await
    }
    async fn close_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        self.inner.close_round(fence, round_id).await
    }
    async fn finish_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        self.inner.finish_round(fence, round_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_whose_engine_died_before_telling_the_player_is_told_once() {
    let server = RedisServer::start();
    let mut gw = gateway(&server.url(), "gw", &["g1"]).await;
    let (tx, stopped) = tokio::sync::oneshot::channel();
    let doomed = start_engine_with(&server.url(), "e1", move |inner| {
        Arc::new(StopAfterFirstSettlement {
            inner,
            stopped: tokio::sync::Mutex::new(Some(tx)),
        })
    });
    let keys = ["k1", "k2", "k3"];
    for (i, key) in keys.iter().enumerate() {
        gw.bus
            .submit_bet(&bet(["ann", "bo", "cy"][i], key, "g1"))
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("no settlement within 10 s")
        .unwrap();
    // The ledger holds the settlement of `first`; its engine dies before publishing it.
    doomed.crash();
    let survivor = start_engine(&server.url(), "e2");

    let mut told: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_until = None;
    loop {
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "told {told:?}, {first} settled first");
        if quiet_until.is_some_and(|q| now >= q) {
            break;
        }
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), gw.rx.recv()).await
        else {
            continue;
        };
        let v: Value = serde_json::from_str(&d.frame).unwrap();
        if matches!(d.target, Target::User(_)) {
            assert_eq!(v["type"], "bet_settled", "{v}");
            *told
                .entry(v["idempotencyKey"].as_str().unwrap().to_owned())
                .or_default() += 1;
            if told.len() == keys.len() && quiet_until.is_none() {
                // Every player told; listen a while longer for a second notice.
                quiet_until = Some(now + Duration::from_secs(1));
            }
        }
    }
    assert!(
        told.values().all(|&n| n == 1),
        "told more than once: {told:?}"
    );
    survivor.stop().await;
    assert_eq!(ledger_total(&server.url()).await, (0, keys.len()));
}

/// The bus of an owner that no longer learns of its leases, as if its renewals and their
/// replies were held up (a long pause, a one-way partition): once `blind` is set it reports
/// the rooms it owned as still its own, never renews them and never hears they are lost. Its
/// rounds go on, so its next ledger write comes after another engine took the room over.
struct BlindToLeases {
    inner: Arc<RedisBus>,
    blind: Arc<std::sync::atomic::AtomicBool>,
    last: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl EngineBus for BlindToLeases {
    async fn next_bets(&self, max: usize, wait: Duration) -> Result<Vec<QueuedBet>, BusError> {
        self.inner.next_bets(max, wait).await
    }
    async fn ack_bet(&self, id: &str) -> Result<(), BusError> {
        self.inner.ack_bet(id).await
    }
    async fn ack_bets(&self, ids: &[String]) -> Result<(), BusError> {
        self.inner.ack_bets(ids).await
    }
    async fn publish(&self, d: Delivery) -> Result<(), BusError> {
        EngineBus::publish(self.inner.as_ref(), d).await
    }
    async fn publish_outcomes(&self, n: Vec<MarkedNotice>) -> Result<(), BusError> {
        self.inner.publish_outcomes(n).await
    }
    async fn active_rooms(&self) -> Result<Vec<String>, BusError> {
        if self.blind.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(self.last.lock().unwrap().clone());
        }
        let rooms = self.inner.active_rooms().await?;
        *self.last.lock().unwrap() = rooms.clone();
        Ok(rooms)
    }
    fn lost_rooms(&self) -> Vec<String> {
        if self.blind.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        self.inner.lost_rooms()
    }
    async fn give_up(&self, game_id: &str) -> Result<(), BusError> {
        self.last.lock().unwrap().retain(|r| r != game_id);
        self.inner.give_up(game_id).await
    }
    fn redelivers(&self) -> bool {
        true
    }
    async fn begin_drain(&self) -> Result<(), BusError> {
        self.inner.begin_drain().await
    }
    async fn stand_down(&self) -> Result<(), BusError> {
        self.inner.stand_down().await
    }
}

fn counter(e: &Engine, name: &str) -> f64 {
    e.registry
        .gather()
        .iter()
        .find(|m| m.name() == name)
        .map(|m| m.get_metric()[0].get_counter().value())
        .unwrap_or(0.0)
}

/// The window the fence closes, forced: a room's owner loses its lease without noticing and
/// keeps running rounds while another engine takes the room over. Its next write (opening a
/// round, placing, closing, settling) is refused `STALE_OWNER`, it stops the room and lets it
/// go, and every bet is still settled exactly once with the money conserved: none of its
/// rounds overwrote the new owner's, none of its stakes was left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_missed_losing_its_lease_writes_nothing_after_the_takeover() {
    let server = RedisServer::start();
    let mut gw = gateway(&server.url(), "gw", &["g1"]).await;
    let blind = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&blind);
    let stale = start_engine_wrapped(
        &server.url(),
        "e1",
        move |inner| {
            Arc::new(BlindToLeases {
                inner,
                blind: flag,
                last: std::sync::Mutex::new(Vec::new()),
            })
        },
        |l| Arc::new(l),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leases(&stale) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "e1 took no room");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users = ["ann", "bo", "cy"];
    let mut keys = Vec::new();
    let submit = |i: usize| bet(users[i % 3], &format!("k{i}"), "g1");
    for i in 0..20 {
        gw.bus.submit_bet(&submit(i)).await.unwrap();
        keys.push(format!("k{i}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From here e1 believes it owns g1 for ever; its lease runs out within a second.
    blind.store(true, std::sync::atomic::Ordering::Release);
    let taker = start_engine(&server.url(), "e2");
    for i in 20..200 {
        gw.bus.submit_bet(&submit(i)).await.unwrap();
        keys.push(format!("k{i}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut told: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut quiet_until = None;
    loop {
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "{} of {} told", told.len(), keys.len());
        if quiet_until.is_some_and(|q| now >= q) {
            break;
        }
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), gw.rx.recv()).await
        else {
            continue;
        };
        if matches!(d.target, Target::User(_)) {
            let v: Value = serde_json::from_str(&d.frame).unwrap();
            assert_eq!(v["type"], "bet_settled", "{v}");
            *told
                .entry(v["idempotencyKey"].as_str().unwrap().to_owned())
                .or_default() += 1;
            if told.len() == keys.len() && quiet_until.is_none() {
                quiet_until = Some(now + Duration::from_secs(1));
            }
        }
    }
    let refused = counter(&stale, "engine_stale_owner_total");
    eprintln!(
        "stale owner: {refused} writes refused; {} bets told once each",
        told.len()
    );
    assert!(
        refused >= 1.0,
        "the stale owner wrote on after the takeover"
    );
    assert!(
        told.values().all(|&n| n == 1),
        "told more than once: {told:?}"
    );
    assert_eq!(leases(&taker), 1, "the new owner keeps the room");
    stale.crash();
    taker.stop().await;
    assert_eq!(ledger_total(&server.url()).await, (0, keys.len()));
    let l = RedisLedger::connect(&server.url(), "gf").unwrap();
    for (i, k) in keys.iter().enumerate() {
        let rec = l.bet(users[i % 3], k).await.unwrap().unwrap();
        assert!(
            matches!(rec.state, gameserver::ledger::BetState::Settled { .. }),
            "{k}: {:?}",
            rec.state
        );
    }
}
