//! The ledger behaviour suite against the Redis ledger on a real three-node Redis Cluster
//! (the same suite as `ledger_redis.rs` on one redis-server), and what only a sharded ledger
//! has: money spread over the nodes, one atomic script per shard, fences in every shard,
//! identity markers per shard.

mod ledger_suite;
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use gameserver::ledger::redis::MAX_BALANCE;
use gameserver::ledger::{Ledger, LedgerError, Placed, RedisLedger, Transfer, HOUSE};
use support::RedisCluster;

fn redis_ledger(cluster: &RedisCluster, prefix: &str) -> RedisLedger {
    RedisLedger::connect(&cluster.url(), prefix).unwrap()
}

fn ledger(cluster: &RedisCluster, prefix: &str) -> Arc<dyn Ledger> {
    Arc::new(redis_ledger(cluster, prefix))
}

#[tokio::test]
async fn transfers_validate_and_are_idempotent() {
    let c = RedisCluster::start(3);
    ledger_suite::transfers_validate_and_are_idempotent(ledger(&c, "t1"), MAX_BALANCE).await;
}

#[tokio::test]
async fn bets_have_one_final_outcome() {
    let c = RedisCluster::start(3);
    ledger_suite::bets_have_one_final_outcome(ledger(&c, "t2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_conserved_under_concurrency() {
    let c = RedisCluster::start(3);
    ledger_suite::money_is_conserved_under_concurrency(ledger(&c, "t3")).await;
}

#[tokio::test]
async fn batches_settle_each_bet_once() {
    let c = RedisCluster::start(3);
    ledger_suite::batches_settle_each_bet_once(ledger(&c, "t4")).await;
}

#[tokio::test]
async fn rounds_are_fenced() {
    let c = RedisCluster::start(3);
    ledger_suite::rounds_are_fenced(ledger(&c, "t5")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_placements_each_get_their_own_answer() {
    let c = RedisCluster::start(3);
    ledger_suite::simultaneous_placements_each_get_their_own_answer(ledger(&c, "t6")).await;
}

#[tokio::test]
async fn stale_owners_write_nothing() {
    let c = RedisCluster::start(3);
    ledger_suite::stale_owners_write_nothing(ledger(&c, "t7")).await;
}

#[tokio::test]
async fn an_unfinished_round_is_never_replaced() {
    let c = RedisCluster::start(3);
    ledger_suite::an_unfinished_round_is_never_replaced(ledger(&c, "t8")).await;
}

/// Many players, one room: their money lands in many shards on every node, each bet is
/// debited and settled once, the house's sub-accounts sum to its balance and every balance
/// to 0; a round spanning every shard is read back whole and closed everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_spans_every_shard_and_money_stays_whole() {
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t9");
    assert!(l.layout().is_sharded());
    let players: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let shards: HashSet<u16> = players.iter().map(|p| l.layout().user_shard(p)).collect();
    assert!(shards.len() >= 12, "64 players in {} shards", shards.len());
    let f = l.claim_room("dice-1").await.unwrap();
    for p in &players {
        l.transfer(&ledger_suite::deposit(p, 1_000, &format!("d-{p}")))
            .await
            .unwrap();
    }
    for p in &players {
        let placed = l
            .place_bet(&f, &ledger_suite::wager(p, "k1", "dice-1-1", 100))
            .await
            .unwrap();
        assert!(matches!(placed, Placed::Accepted(_)), "{p}: {placed:?}");
    }
    assert_eq!(l.round_bets("dice-1-1").await.unwrap().len(), 64);
    l.close_round(&f, "dice-1-1").await.unwrap();
    // Closed in the shards of players who have not bet in it too.
    let late = (0..1000)
        .map(|i| format!("late{i}"))
        .find(|p| !shards.contains(&l.layout().user_shard(p)))
        .unwrap_or_else(|| "late".into());
    l.transfer(&ledger_suite::deposit(&late, 100, "d-late"))
        .await
        .unwrap();
    assert_eq!(
        l.place_bet(&f, &ledger_suite::wager(&late, "k1", "dice-1-1", 10))
            .await
            .unwrap(),
        Placed::RoundClosed
    );
    // Every other player wins 250.
    let items: Vec<_> = players
        .iter()
        .enumerate()
        .map(|(i, p)| gameserver::ledger::SettleItem {
            user_id: p.clone(),
            key: "k1".into(),
            roll: 5,
            payout: if i % 2 == 0 { 250 } else { 0 },
        })
        .collect();
    let settled = l.settle_bets(&f, &items).await;
    assert!(settled.iter().all(|s| s.as_ref().is_ok_and(|s| s.now)));
    let again = l.settle_bets(&f, &items).await;
    assert!(again.iter().all(|s| s.as_ref().is_ok_and(|s| !s.now)));
    for (i, p) in players.iter().enumerate() {
        let want = if i % 2 == 0 { 1_150 } else { 900 };
        assert_eq!(l.balance(&format!("user:{p}")).await.unwrap(), want, "{p}");
    }
    // The house took 64 × 100 and paid 32 × 250, spread over its sub-accounts.
    assert_eq!(l.balance(HOUSE).await.unwrap(), 6_400 - 8_000);
    let accounts = l.accounts().await.unwrap();
    let subs = accounts
        .iter()
        .filter(|(a, _)| a.starts_with("house:s"))
        .count();
    assert_eq!(subs, shards.len());
    assert_eq!(ledger_suite::total(&l).await, 0);
    l.finish_round(&f, "dice-1-1").await.unwrap();
    assert!(l.current_round("dice-1").await.unwrap().is_none());
}

/// A claim fences the room in every shard, not only the room's own.
#[tokio::test]
async fn a_claim_fences_every_shard() {
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t10");
    let old = l.claim_room("dice-2").await.unwrap();
    let home = l.layout().room_shard("dice-2");
    let away = (0..1000)
        .map(|i| format!("u{i}"))
        .find(|u| l.layout().user_shard(u) != home)
        .unwrap();
    l.transfer(&ledger_suite::deposit(&away, 500, "d"))
        .await
        .unwrap();
    let new = l.claim_room("dice-2").await.unwrap();
    assert!(new.epoch > old.epoch);
    let err = l
        .place_bet(&old, &ledger_suite::wager(&away, "k", "dice-2-1", 100))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::StaleOwner { .. }), "{err}");
    assert_eq!(l.balance(&format!("user:{away}")).await.unwrap(), 500);
    assert!(matches!(
        l.place_bet(&new, &ledger_suite::wager(&away, "k", "dice-2-1", 100))
            .await
            .unwrap(),
        Placed::Accepted(_)
    ));
}

/// Two players of different shards cannot be moved between atomically: refused, nothing moves.
#[tokio::test]
async fn a_transfer_between_shards_is_refused() {
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t11");
    let a = "alice";
    let b = (0..1000)
        .map(|i| format!("b{i}"))
        .find(|u| l.layout().user_shard(u) != l.layout().user_shard(a))
        .unwrap();
    l.transfer(&ledger_suite::deposit(a, 100, "d"))
        .await
        .unwrap();
    let t = Transfer {
        key: "gift".into(),
        kind: gameserver::ledger::EntryKind::Withdrawal,
        from: "user:alice".into(),
        to: format!("user:{b}"),
        amount: 10,
        memo: String::new(),
    };
    let err = l.transfer(&t).await.unwrap_err();
    assert_eq!(err.code(), "CROSS_SHARD", "{err}");
    assert_eq!(l.balance("user:alice").await.unwrap(), 100);
    assert_eq!(ledger_suite::total(&l).await, 0);
}

/// Each shard carries the identity marker; an engine started on it writes nowhere once one
/// shard's marker is gone (as after a node restarted without its data), and the ledger can
/// tell which shard disagrees.
#[tokio::test]
async fn a_shard_that_forgot_its_identity_takes_no_write() {
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t12");
    let (id, created) = l.ensure_identity().await.unwrap();
    assert!(created);
    l.require_identity(id.clone());
    l.check_identity().await.unwrap();
    let again = redis_ledger(&c, "t12");
    assert_eq!(again.ensure_identity().await.unwrap(), (id.clone(), false));

    let victim = "victim";
    let shard = l.layout().user_shard(victim);
    l.transfer(&ledger_suite::deposit(victim, 100, "d"))
        .await
        .unwrap();
    let f = l.claim_room("dice-3").await.unwrap();
    // The shard forgets (its key is deleted, as a node without AOF would after a restart).
    let mut conn = gameserver::redisx::connect(&c.url()).unwrap();
    let _: () = redis::cmd("DEL")
        .arg(l.layout().key(shard, "ledger:identity"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = l
        .place_bet(&f, &ledger_suite::wager(victim, "k", "dice-3-1", 10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "LEDGER_IDENTITY_LOST", "{err}");
    let err = l.check_identity().await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("{{t12.{shard}}}")),
        "{err}"
    );
    assert_eq!(l.balance(&format!("user:{victim}")).await.unwrap(), 100);
    // A new engine refuses to start on the half-forgotten ledger until told.
    let err = redis_ledger(&c, "t12").ensure_identity().await.unwrap_err();
    assert!(err.to_string().contains(&format!("shard {shard}")), "{err}");
    let fresh = redis_ledger(&c, "t12").replace_identity().await.unwrap();
    assert_eq!(
        redis_ledger(&c, "t12").ensure_identity().await.unwrap(),
        (fresh, false)
    );
}

/// A sharded ledger is archived one file per shard, each with its shard's own cursor: every
/// entry lands once in its shard's file in sequence order, Redis keeps none of them, a second
/// run moves nothing, and the single-stream `archive` refuses it with a reason.
#[tokio::test]
async fn a_sharded_ledger_is_archived_one_file_per_shard() {
    use gameserver::ledger::archive::{archive, archive_shards, shard_path};
    use gameserver::ledger::{user_account, Entry, EntryKind, TREASURY};
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t13");
    for i in 0..40 {
        l.transfer(&Transfer {
            key: format!("d{i}"),
            kind: EntryKind::Deposit,
            from: TREASURY.into(),
            to: user_account(&format!("u{i}")),
            amount: 10 + i,
            memo: String::new(),
        })
        .await
        .unwrap();
    }
    let before = l.entries(0, 10_000).await.unwrap();
    assert_eq!(before.len(), 40);
    let dir =
        std::env::temp_dir().join(format!("gameserver-cluster-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ledger.jsonl");
    let horizon = gameserver::clock::now_ms() + 1;

    let err = archive(&l, &out, horizon, 7).await.unwrap_err();
    assert!(err.to_string().contains("16 audit streams"), "{err}");

    let done = archive_shards(&l, &out, horizon, 7).await.unwrap();
    assert_eq!(done.len(), 16);
    let mut archived: Vec<Entry> = Vec::new();
    for (shard, (file, summary)) in done.iter().enumerate() {
        assert_eq!(file, &shard_path(&out, shard as u16));
        let lines: Vec<Entry> = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(summary.archived, lines.len() as u64, "shard {shard}");
        assert!(
            lines.iter().all(|e| usize::from(e.shard) == shard),
            "shard {shard}"
        );
        let seqs: Vec<u64> = lines.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=lines.len() as u64).collect::<Vec<_>>(),
            "shard {shard}"
        );
        assert_eq!(
            l.shard_archived_through(shard as u16).await.unwrap(),
            lines.len() as u64
        );
        archived.extend(lines);
    }
    let key = |e: &Entry| (e.shard, e.seq);
    let mut want = before.clone();
    want.sort_by_key(key);
    archived.sort_by_key(key);
    assert_eq!(archived, want, "every entry archived once, unchanged");
    assert!(
        l.entries(0, 10_000).await.unwrap().is_empty(),
        "Redis keeps none"
    );
    // Entries up to the lowest shard's mark are archived everywhere.
    let lowest = done.iter().map(|(_, s)| s.archived_through).min().unwrap();
    assert_eq!(l.archived_through().await.unwrap(), lowest);

    let again = archive_shards(&l, &out, horizon, 7).await.unwrap();
    assert!(again.iter().all(|(_, s)| s.archived == 0), "{again:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The slot each shard's keys hash to, as the cluster computes it (the ledger routes its
/// per-node commands, INFO and WAITAOF, by it).
#[tokio::test]
async fn the_ledger_knows_each_shards_slot() {
    let c = RedisCluster::start(3);
    let l = redis_ledger(&c, "t14");
    let mut conn = gameserver::redisx::connect(&c.url()).unwrap();
    for shard in l.layout().all() {
        let key = l.layout().key(shard, "ledger:balances");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            gameserver::ledger::layout::cluster_slot(&key),
            slot,
            "{key}"
        );
    }
    // Persistence is read from every node: none of the test nodes keeps an AOF.
    assert!(!l.persistence().await.unwrap().aof_enabled);
}
