//! The ledger behaviour suite against the in-memory ledger.

mod ledger_suite;

use std::sync::Arc;

use gameserver::ledger::MemoryLedger;

#[tokio::test]
async fn transfers_validate_and_are_idempotent() {
    ledger_suite::transfers_validate_and_are_idempotent(Arc::new(MemoryLedger::new()), i64::MAX)
        .await;
}

#[tokio::test]
async fn bets_have_one_final_outcome() {
    ledger_suite::bets_have_one_final_outcome(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_conserved_under_concurrency() {
    ledger_suite::money_is_conserved_under_concurrency(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test]
async fn rounds_are_fenced() {
    ledger_suite::rounds_are_fenced(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test]
async fn batches_settle_each_bet_once() {
    ledger_suite::batches_settle_each_bet_once(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test]
async fn simultaneous_placements_each_get_their_own_answer() {
    ledger_suite::simultaneous_placements_each_get_their_own_answer(Arc::new(MemoryLedger::new()))
        .await;
}

#[tokio::test]
async fn stale_owners_write_nothing() {
    ledger_suite::stale_owners_write_nothing(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test]
async fn an_unfinished_round_is_never_replaced() {
    ledger_suite::an_unfinished_round_is_never_replaced(Arc::new(MemoryLedger::new())).await;
}
