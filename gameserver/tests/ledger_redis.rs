//! The ledger behaviour suite against the Redis ledger on a real redis-server.

mod ledger_suite;
mod support;

use std::sync::Arc;

use gameserver::ledger::redis::MAX_BALANCE;
use gameserver::ledger::{Ledger, RedisLedger};
use support::RedisServer;

fn ledger(server: &RedisServer, prefix: &str) -> Arc<dyn Ledger> {
    Arc::new(RedisLedger::connect(&server.url(), prefix).unwrap())
}

#[tokio::test]
async fn transfers_validate_and_are_idempotent() {
    let server = RedisServer::start();
    ledger_suite::transfers_validate_and_are_idempotent(ledger(&server, "t1"), MAX_BALANCE).await;
}

#[tokio::test]
async fn bets_have_one_final_outcome() {
    let server = RedisServer::start();
    ledger_suite::bets_have_one_final_outcome(ledger(&server, "t2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_conserved_under_concurrency() {
    let server = RedisServer::start();
    ledger_suite::money_is_conserved_under_concurrency(ledger(&server, "t3")).await;
}

#[tokio::test]
async fn batches_settle_each_bet_once() {
    let server = RedisServer::start();
    ledger_suite::batches_settle_each_bet_once(ledger(&server, "t6")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ledger_clients_share_one_truth() {
    // Two processes' worth of clients on the same keys: the same key debits once.
    let server = RedisServer::start();
    let a = ledger(&server, "t4");
    let b = ledger(&server, "t4");
    let f = a.claim_room("g1").await.unwrap();
    a.transfer(&ledger_suite::deposit("x", 100, "d"))
        .await
        .unwrap();
    let w = ledger_suite::wager("x", "k", "r1", 60);
    let (ra, rb) = tokio::join!(a.place_bet(&f, &w), b.place_bet(&f, &w));
    let accepted = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|p| matches!(p, gameserver::ledger::Placed::Accepted(_)))
        .count();
    assert_eq!(accepted, 1);
    assert_eq!(b.balance("user:x").await.unwrap(), 40);
    assert_eq!(ledger_suite::total(b.as_ref()).await, 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_not_panicked() {
    let mut server = RedisServer::start();
    let l = ledger(&server, "t5");
    l.transfer(&ledger_suite::deposit("y", 5, "d"))
        .await
        .unwrap();
    server.kill();
    let err = l.balance("user:y").await.unwrap_err();
    assert_eq!(err.code(), "LEDGER_UNAVAILABLE", "{err}");
    server.restart();
    // Reconnects by itself (data is gone: the test server keeps nothing on disk).
    let mut ok = false;
    for _ in 0..50 {
        if l.balance("user:y").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "ledger did not reconnect");
}

#[tokio::test]
async fn rounds_are_fenced() {
    let server = RedisServer::start();
    ledger_suite::rounds_are_fenced(ledger(&server, "t6")).await;
}

#[tokio::test]
async fn amounts_beyond_lua_precision_are_refused_and_balances_stay_exact() {
    use gameserver::ledger::LedgerError;
    let server = RedisServer::start();
    let l = ledger(&server, "t6");
    let f = l.claim_room("g1").await.unwrap();
    // Not representable as a Lua number: refused before reaching a script.
    for amount in [MAX_BALANCE + 1, 1 << 60, i64::MAX] {
        assert_eq!(
            l.transfer(&ledger_suite::deposit("big", amount, &format!("d{amount}")))
                .await
                .map(|_| ()),
            Err(LedgerError::InvalidAmount(amount))
        );
        assert!(matches!(
            l.place_bet(&f, &ledger_suite::wager("big", &format!("k{amount}"), "r1", amount))
                .await,
            Err(LedgerError::InvalidAmount(a)) if a == amount
        ));
    }
    // The largest amount is taken exactly (no rounding through doubles).
    l.transfer(&ledger_suite::deposit("big", MAX_BALANCE, "dmax"))
        .await
        .unwrap();
    assert_eq!(l.balance("user:big").await.unwrap(), MAX_BALANCE);
    assert!(matches!(
        l.transfer(&ledger_suite::deposit("big", 1, "d1")).await,
        Err(LedgerError::Overflow(_))
    ));
    // A payout that would push a balance past the limit is refused; nothing moves.
    l.place_bet(&f, &ledger_suite::wager("big", "b1", "r1", 1))
        .await
        .unwrap();
    assert!(matches!(
        l.settle_bet(&f, "big", "b1", 100, 2).await,
        Err(LedgerError::Overflow(_))
    ));
    assert_eq!(l.balance("user:big").await.unwrap(), MAX_BALANCE - 1);
    assert_eq!(ledger_suite::total(l.as_ref()).await, 0);
    assert_eq!(l.entries(0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn idempotency_keys_are_kept_for_the_retention_period() {
    use gameserver::ledger::BetState;
    use std::time::Duration;
    let server = RedisServer::start();
    let retention = Duration::from_millis(1_500);
    let l = RedisLedger::connect(&server.url(), "t7")
        .unwrap()
        .with_retention(retention);
    let f = l.claim_room("g1").await.unwrap();
    let first = l
        .transfer(&ledger_suite::deposit("r", 1_000, "dep"))
        .await
        .unwrap();
    l.place_bet(&f, &ledger_suite::wager("r", "settled", "r1", 100))
        .await
        .unwrap();
    l.place_bet(&f, &ledger_suite::wager("r", "pending", "r1", 100))
        .await
        .unwrap();
    l.settle_bet(&f, "r", "settled", 1, 0).await.unwrap();
    // Within the window a repeated key changes nothing and gets its first outcome.
    let again = l
        .transfer(&ledger_suite::deposit("r", 1_000, "dep"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.entry.seq, first.entry.seq);
    assert!(matches!(
        l.place_bet(&f, &ledger_suite::wager("r", "settled", "r2", 100))
            .await
            .unwrap(),
        gameserver::ledger::Placed::Existing(_)
    ));
    assert_eq!(l.balance("user:r").await.unwrap(), 800);

    tokio::time::sleep(retention + Duration::from_millis(300)).await;
    // After it, final records and keys are gone; a pending bet is kept until it settles.
    assert!(l.bet("r", "settled").await.unwrap().is_none());
    assert!(matches!(
        l.bet("r", "pending").await.unwrap().map(|b| b.state),
        Some(BetState::Pending { .. })
    ));
    let fresh = l
        .transfer(&ledger_suite::deposit("r", 1_000, "dep"))
        .await
        .unwrap();
    assert!(!fresh.duplicate, "key usable afresh after the retention");
    assert_eq!(l.balance("user:r").await.unwrap(), 1_800);
    // The audit stream keeps every entry.
    assert_eq!(l.entries(0, 100).await.unwrap().len(), 4);
    assert_eq!(ledger_suite::total(&l).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_placements_each_get_their_own_answer() {
    let server = RedisServer::start();
    ledger_suite::simultaneous_placements_each_get_their_own_answer(ledger(&server, "t7")).await;
}

#[tokio::test]
async fn stale_owners_write_nothing() {
    let server = RedisServer::start();
    ledger_suite::stale_owners_write_nothing(ledger(&server, "t20")).await;
}

#[tokio::test]
async fn an_unfinished_round_is_never_replaced() {
    let server = RedisServer::start();
    ledger_suite::an_unfinished_round_is_never_replaced(ledger(&server, "t21")).await;
}

use support::fleet::redis_conn as raw;

/// `ledger:seq` reset behind the audit stream (e.g. evicted, or restored from an older
/// snapshot than the log): every money script is refused before its first write, so ten
/// retries of each change no balance, no record and no entry; once the sequence is right
/// again the same calls go through, once.
#[tokio::test]
async fn a_reset_sequence_makes_every_money_script_change_nothing() {
    use gameserver::ledger::{BetState, LedgerError, Placed, SettleItem};
    let server = RedisServer::start();
    let l = ledger(&server, "t22");
    let f = l.claim_room("g1").await.unwrap();
    l.transfer(&ledger_suite::deposit("q", 1_000, "dep-q"))
        .await
        .unwrap();
    for key in ["w1", "w2"] {
        let placed = l
            .place_bet(&f, &ledger_suite::wager("q", key, "g1-1", 100))
            .await
            .unwrap();
        assert!(matches!(placed, Placed::Accepted(_)));
    }
    let mut conn = raw(&server).await;
    let seq: String = redis::cmd("GET")
        .arg("t22:ledger:seq")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq, "3");
    redis::cmd("SET")
        .arg("t22:ledger:seq")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let bets = [("q", "w1"), ("q", "w2"), ("q", "w3")];
    let before = ledger_suite::snapshot(l.as_ref(), &bets).await;
    let win = |key: &str| SettleItem {
        user_id: "q".into(),
        key: key.into(),
        roll: 9_000,
        payout: 198,
    };
    let corrupt = |e: &LedgerError, what: &str| {
        assert_eq!(e.code(), "LEDGER_CORRUPT", "{what}: {e}");
        assert!(e.to_string().contains("nothing was written"), "{what}: {e}");
    };
    for _ in 0..10 {
        corrupt(
            &l.transfer(&ledger_suite::deposit("q", 50, "dep-again"))
                .await
                .unwrap_err(),
            "transfer",
        );
        match l
            .place_bet(&f, &ledger_suite::wager("q", "w3", "g1-1", 100))
            .await
        {
            Err(e) => corrupt(&e, "place_bet"),
            Ok(p) => panic!("placed on a corrupt ledger: {p:?}"),
        }
        corrupt(
            &l.settle_bet(&f, "q", "w1", 9_000, 198).await.unwrap_err(),
            "settle_bet",
        );
        for r in l.settle_bets(&f, &[win("w1"), win("w2")]).await {
            corrupt(&r.unwrap_err(), "settle_bets");
        }
        // A loss writes no entry, yet is not settled ahead of the refused win either.
        let loss = SettleItem {
            payout: 0,
            ..win("w2")
        };
        for r in l.settle_bets(&f, &[loss, win("w1")]).await {
            corrupt(&r.unwrap_err(), "settle_bets with a loss first");
        }
    }
    assert_eq!(
        ledger_suite::snapshot(l.as_ref(), &bets).await,
        before,
        "a refused script left writes behind"
    );
    let seq: String = redis::cmd("GET")
        .arg("t22:ledger:seq")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq, "0", "the sequence itself was not advanced");
    // Repaired: each operation applies exactly once.
    redis::cmd("SET")
        .arg("t22:ledger:seq")
        .arg(3)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let settled = l.settle_bets(&f, &[win("w1"), win("w2")]).await;
    assert!(settled.iter().all(|s| s.as_ref().is_ok_and(|s| s.now)));
    let rec = l.bet("q", "w1").await.unwrap().unwrap();
    assert!(matches!(rec.state, BetState::Settled { payout: 198, .. }));
    assert_eq!(l.balance("user:q").await.unwrap(), 800 + 2 * 198);
    assert_eq!(l.entries(0, 100).await.unwrap().len(), 5);
    assert_eq!(ledger_suite::total(l.as_ref()).await, 0);
}

/// A ledger whose identity marker is gone (its Redis lost its data, or another ledger's data
/// is there now) takes no write from a process that started on it: every script is refused
/// before writing anything, and the data stays as the loss left it. The same marker back
/// (restored data) makes it usable again.
#[tokio::test]
async fn a_ledger_without_its_identity_takes_no_write() {
    use gameserver::ledger::LedgerError;
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "t23").unwrap();
    let (id, created) = l.ensure_identity().await.unwrap();
    assert!(created);
    assert_eq!(l.ensure_identity().await.unwrap(), (id.clone(), false));
    l.require_identity(id.clone());
    let f = l.claim_room("g1").await.unwrap();
    l.transfer(&ledger_suite::deposit("i", 500, "dep-i"))
        .await
        .unwrap();
    l.check_identity().await.unwrap();

    // Redis forgets everything (a restart without persistence, a FLUSHALL, a failover to an
    // empty replica).
    let mut conn = raw(&server).await;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let lost = |e: LedgerError, what: &str| {
        assert_eq!(e.code(), "LEDGER_IDENTITY_LOST", "{what}: {e}");
    };
    lost(l.check_identity().await.unwrap_err(), "check");
    lost(
        l.transfer(&ledger_suite::deposit("i", 500, "dep-2"))
            .await
            .unwrap_err(),
        "transfer",
    );
    lost(l.claim_room("g1").await.unwrap_err(), "claim_room");
    lost(
        l.place_bet(&f, &ledger_suite::wager("i", "k", "g1-1", 10))
            .await
            .unwrap_err(),
        "place_bet",
    );
    lost(
        l.settle_bet(&f, "i", "k", 1, 0).await.unwrap_err(),
        "settle_bet",
    );
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0, "something was written to the forgetful Redis");

    // Another ledger's marker is no better.
    redis::cmd("SET")
        .arg("t23:ledger:identity")
        .arg("someone-else")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    lost(l.check_identity().await.unwrap_err(), "other identity");
    // Restored data brings the marker back.
    redis::cmd("SET")
        .arg("t23:ledger:identity")
        .arg(&id)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    l.check_identity().await.unwrap();
    l.transfer(&ledger_suite::deposit("i", 500, "dep-3"))
        .await
        .unwrap();
}

/// What the engine's start-up check reads of a Redis without persistence.
#[tokio::test]
async fn persistence_is_read_from_the_server() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "t24").unwrap();
    let p = l.persistence().await.unwrap();
    assert!(!p.aof_enabled, "{p:?}");
    assert!(p.version >= (6, 0), "{p:?}");
    assert!(gameserver::ledger::durability::decide(&p, false).is_err());
    support::fleet::turn_aof_on(&server).await;
    let p = l.persistence().await.unwrap();
    assert!(p.aof_enabled, "{p:?}");
    assert!(p.fsync.is_some(), "{p:?}");
    assert!(gameserver::ledger::durability::decide(&p, false).is_ok());
}
