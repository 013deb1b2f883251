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
    a.transfer(&ledger_suite::deposit("x", 100, "d"))
        .await
        .unwrap();
    let w = ledger_suite::wager("x", "k", "r1", 60);
    let (ra, rb) = tokio::join!(a.place_bet(&w), b.place_bet(&w));
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
    // Not representable as a Lua number: refused before reaching a script.
    for amount in [MAX_BALANCE + 1, 1 << 60, i64::MAX] {
        assert_eq!(
            l.transfer(&ledger_suite::deposit("big", amount, &format!("d{amount}")))
                .await
                .map(|_| ()),
            Err(LedgerError::InvalidAmount(amount))
        );
        assert!(matches!(
            l.place_bet(&ledger_suite::wager("big", &format!("k{amount}"), "r1", amount))
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
    l.place_bet(&ledger_suite::wager("big", "b1", "r1", 1))
        .await
        .unwrap();
    assert!(matches!(
        l.settle_bet("big", "b1", 100, 2).await,
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
    let first = l
        .transfer(&ledger_suite::deposit("r", 1_000, "dep"))
        .await
        .unwrap();
    l.place_bet(&ledger_suite::wager("r", "settled", "r1", 100))
        .await
        .unwrap();
    l.place_bet(&ledger_suite::wager("r", "pending", "r1", 100))
        .await
        .unwrap();
    l.settle_bet("r", "settled", 1, 0).await.unwrap();
    // Within the window a repeated key changes nothing and gets its first outcome.
    let again = l
        .transfer(&ledger_suite::deposit("r", 1_000, "dep"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.entry.seq, first.entry.seq);
    assert!(matches!(
        l.place_bet(&ledger_suite::wager("r", "settled", "r2", 100))
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
