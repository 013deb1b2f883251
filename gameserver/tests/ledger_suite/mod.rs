//! Behaviour every `Ledger` implementation must have; run against each backend.

use std::collections::HashMap;
use std::sync::Arc;

use gameserver::ledger::Entry;
use gameserver::ledger::{
    user_account, BetState, EntryKind, Ledger, LedgerError, Outcome, Placed, RoundState,
    SettleItem, Transfer, Wager, HOUSE, TREASURY,
};
use serde_json::json;

pub fn deposit(user: &str, amount: i64, key: &str) -> Transfer {
    Transfer {
        key: key.into(),
        kind: EntryKind::Deposit,
        from: TREASURY.into(),
        to: user_account(user),
        amount,
        memo: String::new(),
    }
}

pub fn wager(user: &str, key: &str, round: &str, amount: i64) -> Wager {
    Wager {
        user_id: user.into(),
        key: key.into(),
        game_id: "g1".into(),
        round_id: round.into(),
        amount,
        selection: json!({"direction":"over","target":50.0}),
        client_seed: None,
        delivery: String::new(),
    }
}

/// Round `n` of room g1.
pub fn round_of_g1(n: u64) -> RoundState {
    RoundState {
        game_id: "g1".into(),
        round_id: format!("g1-{n}"),
        nonce: n,
        server_seed: "seed".into(),
        commitment: "c".into(),
        betting_opens_at: 1,
        betting_closes_at: 2,
    }
}

pub async fn total(ledger: &dyn Ledger) -> i64 {
    ledger
        .accounts()
        .await
        .unwrap()
        .iter()
        .map(|(_, b)| b)
        .sum()
}

/// `max_balance`: the largest balance the backend holds exactly.
pub async fn transfers_validate_and_are_idempotent(ledger: Arc<dyn Ledger>, max_balance: i64) {
    let l = ledger.as_ref();
    for bad in [0, -1, i64::MIN] {
        assert_eq!(
            l.transfer(&deposit("a", bad, "k0")).await,
            Err(LedgerError::InvalidAmount(bad))
        );
    }
    let mut t = deposit("a", 5, "k0");
    t.to = "nobody".into();
    assert!(matches!(
        l.transfer(&t).await,
        Err(LedgerError::InvalidAccount(_))
    ));

    let first = l.transfer(&deposit("a", 500, "dep-1")).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.entry.to_balance, 500);
    let again = l.transfer(&deposit("a", 500, "dep-1")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.entry, first.entry);
    assert_eq!(l.balance(&user_account("a")).await.unwrap(), 500);
    assert_eq!(
        l.transfer(&deposit("a", 501, "dep-1")).await,
        Err(LedgerError::KeyReused("dep-1".into()))
    );

    // Player accounts never overdraw; system accounts may go negative.
    let withdraw = Transfer {
        key: "wd-1".into(),
        kind: EntryKind::Withdrawal,
        from: user_account("a"),
        to: TREASURY.into(),
        amount: 501,
        memo: String::new(),
    };
    assert_eq!(
        l.transfer(&withdraw).await,
        Err(LedgerError::InsufficientBalance {
            account: user_account("a"),
            balance: 500,
            needed: 501
        })
    );
    assert_eq!(l.balance(TREASURY).await.unwrap(), -500);

    // Overflow is refused, not wrapped.
    l.transfer(&deposit("rich", max_balance - 1_000, "dep-max"))
        .await
        .unwrap();
    assert!(matches!(
        l.transfer(&deposit("rich", 2_000, "dep-more")).await,
        Err(LedgerError::Overflow(_))
    ));
    assert_eq!(total(l).await, 0);

    let entries = l.entries(0, 100).await.unwrap();
    let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["dep-1", "dep-max"]);
    assert_numbered(&entries);
    let at = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| (e.shard, e.seq))
    };
    let (first, second) = (at("dep-1").unwrap(), at("dep-max").unwrap());
    if first.0 == second.0 {
        assert!(first.1 < second.1, "applied in order");
    }
    // `after` leaves out exactly the entries numbered up to it.
    let later: Vec<Entry> = entries.iter().filter(|e| e.seq > 1).cloned().collect();
    assert_eq!(l.entries(1, 100).await.unwrap(), later);
}

/// Each audit stream (one per ledger shard; one in all on a single store) numbers its entries
/// 1, 2, 3, … in the order they were applied.
pub fn assert_numbered(entries: &[Entry]) {
    let mut next: HashMap<u16, u64> = HashMap::new();
    let mut by_stream: Vec<&Entry> = entries.iter().collect();
    by_stream.sort_by_key(|e| e.shard);
    for e in by_stream {
        let n = next.entry(e.shard).or_insert(1);
        assert_eq!(e.seq, *n, "entry {} of stream {}", e.key, e.shard);
        *n += 1;
    }
}

pub async fn bets_have_one_final_outcome(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let f = l.claim_room("g1").await.unwrap();
    l.transfer(&deposit("b", 1_000, "dep-b")).await.unwrap();

    let placed = l
        .place_bet(&f, &wager("b", "k1", "g1-1", 300))
        .await
        .unwrap();
    let Placed::Accepted(rec) = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(rec.state, BetState::Pending { balance: 700 });
    assert_eq!(l.balance(HOUSE).await.unwrap(), 300);
    // Same key again: nothing debited, existing record returned.
    assert!(matches!(
        l.place_bet(&f, &wager("b", "k1", "g1-2", 300))
            .await
            .unwrap(),
        Placed::Existing(_)
    ));
    assert_eq!(l.balance(&user_account("b")).await.unwrap(), 700);
    // The key is per user: another user's "k1" is a different bet.
    l.transfer(&deposit("c", 100, "dep-c")).await.unwrap();
    assert!(matches!(
        l.place_bet(&f, &wager("c", "k1", "g1-1", 100))
            .await
            .unwrap(),
        Placed::Accepted(_)
    ));

    let first = l.settle_bet(&f, "b", "k1", 5001, 594).await.unwrap();
    assert!(first.now, "the first call settles it");
    let settled = first.record;
    assert_eq!(
        settled.state,
        BetState::Settled {
            roll: 5001,
            outcome: Outcome::Win,
            payout: 594,
            balance: 1_294
        }
    );
    // Settling twice pays once, and says it was already settled.
    let again = l.settle_bet(&f, "b", "k1", 5001, 594).await.unwrap();
    assert!(!again.now);
    assert_eq!(again.record, settled);
    assert_eq!(l.balance(&user_account("b")).await.unwrap(), 1_294);
    let lost = l.settle_bet(&f, "c", "k1", 5001, 0).await.unwrap().record;
    assert!(matches!(
        lost.state,
        BetState::Settled {
            outcome: Outcome::Lose,
            payout: 0,
            balance: 0,
            ..
        }
    ));
    assert_eq!(l.bet("b", "k1").await.unwrap(), Some(settled));
    assert_eq!(l.round_bets("g1-1").await.unwrap().len(), 2);

    // Insufficient balance is final for that key, even after a deposit.
    let placed = l
        .place_bet(&f, &wager("c", "k2", "g1-2", 50))
        .await
        .unwrap();
    assert!(
        matches!(&placed, Placed::Insufficient(r) if matches!(&r.state, BetState::Rejected { reason, balance: Some(0) } if reason == "INSUFFICIENT_BALANCE")),
        "{placed:?}"
    );
    l.transfer(&deposit("c", 100, "dep-c2")).await.unwrap();
    assert!(matches!(
        l.place_bet(&f, &wager("c", "k2", "g1-2", 50))
            .await
            .unwrap(),
        Placed::Existing(_)
    ));

    // A rejection recorded first stays; a second rejection reason does not replace it.
    let r1 = l
        .reject_bet(&f, &wager("c", "k3", "", 5), "INVALID_SELECTION")
        .await
        .unwrap();
    let r2 = l
        .reject_bet(&f, &wager("c", "k3", "", 5), "ROUND_CLOSED")
        .await
        .unwrap();
    assert_eq!(r1, r2);
    assert!(matches!(
        l.place_bet(&f, &wager("c", "k3", "g1-3", 5)).await.unwrap(),
        Placed::Existing(_)
    ));
    assert!(matches!(
        l.settle_bet(&f, "c", "nope", 1, 0).await,
        Err(LedgerError::UnknownBet { .. })
    ));
    assert_eq!(total(l).await, 0);
}

/// Many tasks bet concurrently, with every bet submitted twice; stakes never overdraw, each key
/// is debited once, and the sum of all balances is unchanged.
pub async fn money_is_conserved_under_concurrency(ledger: Arc<dyn Ledger>) {
    const USERS: usize = 20;
    const BETS: usize = 30;
    const START: i64 = 1_000;
    for u in 0..USERS {
        ledger
            .transfer(&deposit(&format!("u{u}"), START, &format!("dep-{u}")))
            .await
            .unwrap();
    }
    let f = ledger.claim_room("g1").await.unwrap();
    let mut tasks = Vec::new();
    for u in 0..USERS {
        for copy in 0..2 {
            let ledger = Arc::clone(&ledger);
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let user = format!("u{u}");
                let mut accepted = 0;
                for b in 0..BETS {
                    // 30 bets of 50..=99 (about 2,250) exceed the 1,000 balance plus every
                    // possible winning (6 wins of 2× stake, at most 1,188): some are refused.
                    let amount = 50 + ((u * 7 + b * 13) % 50) as i64;
                    let key = format!("bet-{b}");
                    let round = format!("r{}", b % 3);
                    let w = wager(&user, &key, &round, amount);
                    match ledger.place_bet(&f, &w).await.unwrap() {
                        Placed::Accepted(_) => accepted += 1,
                        Placed::Existing(_) | Placed::Insufficient(_) => {}
                        Placed::RoundClosed => panic!("no round was closed"),
                    }
                    if (b + copy) % 2 == 0 {
                        // Settle from both copies: must pay once.
                        if let Some(rec) = ledger.bet(&user, &key).await.unwrap() {
                            if matches!(
                                rec.state,
                                BetState::Pending { .. } | BetState::Settled { .. }
                            ) {
                                let payout = if b % 5 == 0 { amount * 2 } else { 0 };
                                ledger.settle_bet(&f, &user, &key, 1, payout).await.unwrap();
                            }
                        }
                    }
                }
                accepted
            }));
        }
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let total_after = total(ledger.as_ref()).await;
    assert_eq!(total_after, 0, "money created or destroyed");
    let entries = ledger.entries(0, 1_000_000).await.unwrap();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        *per_key.entry(e.key.as_str()).or_default() += 1;
    }
    assert!(per_key.values().all(|&n| n == 1), "a key was applied twice");
    let stakes = entries.iter().filter(|e| e.kind == EntryKind::Bet).count();
    assert_eq!(stakes, accepted, "each accepted bet debited exactly once");
    assert!(accepted > 0 && accepted < USERS * BETS, "{accepted}");
    for (account, balance) in ledger.accounts().await.unwrap() {
        if account.starts_with("user:") {
            assert!(balance >= 0, "{account} overdrawn: {balance}");
        }
    }
    // Replaying the log reproduces every balance.
    let mut replay: HashMap<String, i64> = HashMap::new();
    for e in &entries {
        *replay.entry(e.from.clone()).or_default() -= e.amount;
        *replay.entry(e.to.clone()).or_default() += e.amount;
        assert_eq!(replay[&e.from], e.from_balance);
        assert_eq!(replay[&e.to], e.to_balance);
    }
    for (account, balance) in ledger.accounts().await.unwrap() {
        assert_eq!(
            replay.get(&account).copied().unwrap_or(0),
            balance,
            "{account}"
        );
    }
}

/// Round bookkeeping: nonces count up per room, the open round is remembered until finished,
/// and a closed round refuses new bets while keeping the ones it has.
pub async fn rounds_are_fenced(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let f = l.claim_room("g1").await.unwrap();
    let f2 = l.claim_room("g2").await.unwrap();
    assert_eq!(l.next_nonce(&f).await.unwrap(), 1);
    assert_eq!(l.next_nonce(&f).await.unwrap(), 2);
    assert_eq!(l.next_nonce(&f2).await.unwrap(), 1);
    // A stale owner takes no nonce: a successor continues the room's count.
    let successor = l.claim_room("g2").await.unwrap();
    assert!(matches!(
        l.next_nonce(&f2).await,
        Err(LedgerError::StaleOwner { .. })
    ));
    assert_eq!(l.next_nonce(&successor).await.unwrap(), 2);
    assert_eq!(l.current_round("g1").await.unwrap(), None);
    let round = RoundState {
        game_id: "g1".into(),
        round_id: "g1-2".into(),
        nonce: 2,
        server_seed: "seed".into(),
        commitment: "c".into(),
        betting_opens_at: 1,
        betting_closes_at: 2,
    };
    l.open_round(&f, &round).await.unwrap();
    assert_eq!(l.current_round("g1").await.unwrap(), Some(round.clone()));
    l.transfer(&deposit("f", 100, "dep-f")).await.unwrap();
    assert!(matches!(
        l.place_bet(&f, &wager("f", "k1", "g1-2", 10))
            .await
            .unwrap(),
        Placed::Accepted(_)
    ));
    l.close_round(&f, "g1-2").await.unwrap();
    l.close_round(&f, "g1-2").await.unwrap();
    assert_eq!(
        l.place_bet(&f, &wager("f", "k2", "g1-2", 10))
            .await
            .unwrap(),
        Placed::RoundClosed
    );
    // Nothing recorded for the refused bet: the key stays free.
    assert_eq!(l.bet("f", "k2").await.unwrap(), None);
    assert_eq!(l.round_bets("g1-2").await.unwrap().len(), 1);
    l.finish_round(&f, "g1-1").await.unwrap(); // not the open one: no effect
    assert!(l.current_round("g1").await.unwrap().is_some());
    l.finish_round(&f, "g1-2").await.unwrap();
    assert_eq!(l.current_round("g1").await.unwrap(), None);
    assert_eq!(l.balance(&user_account("f")).await.unwrap(), 90);
}

/// A batch settles each bet as if alone: in order, a bet repeated in the batch is paid once,
/// unknown bets and bad payouts are refused without affecting the rest, and money is conserved.
pub async fn batches_settle_each_bet_once(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let f = l.claim_room("g1").await.unwrap();
    l.transfer(&deposit("p", 1_000, "dep-p")).await.unwrap();
    l.transfer(&deposit("q", 1_000, "dep-q")).await.unwrap();
    for (user, key) in [("p", "w"), ("p", "l"), ("q", "w")] {
        let placed = l
            .place_bet(&f, &wager(user, key, "g9-1", 100))
            .await
            .unwrap();
        assert!(matches!(placed, Placed::Accepted(_)), "{placed:?}");
    }
    let item = |user: &str, key: &str, payout: i64| SettleItem {
        user_id: user.into(),
        key: key.into(),
        roll: 7_000,
        payout,
    };
    let results = l
        .settle_bets(
            &f,
            &[
                item("p", "w", 198),
                item("p", "l", 0),
                item("p", "w", 198),
                item("p", "missing", 0),
                item("q", "w", -1),
                item("q", "w", 250),
            ],
        )
        .await;
    assert_eq!(results.len(), 6);
    let now: Vec<Option<bool>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|s| s.now))
        .collect();
    assert_eq!(
        now,
        [Some(true), Some(true), Some(false), None, None, Some(true)]
    );
    assert!(matches!(results[3], Err(LedgerError::UnknownBet { .. })));
    assert!(matches!(results[4], Err(LedgerError::InvalidAmount(-1))));
    assert_eq!(
        results[0].as_ref().unwrap().record,
        results[2].as_ref().unwrap().record
    );
    assert!(matches!(
        results[1].as_ref().unwrap().record.state,
        BetState::Settled {
            outcome: Outcome::Lose,
            payout: 0,
            balance: 998,
            ..
        }
    ));
    // p: 1,000 − 200 staked + 198 won; q: 1,000 − 100 + 250.
    assert_eq!(l.balance(&user_account("p")).await.unwrap(), 998);
    assert_eq!(l.balance(&user_account("q")).await.unwrap(), 1_150);
    // Settling the batch again moves nothing and reports every bet as already final.
    let again = l
        .settle_bets(&f, &[item("p", "w", 198), item("q", "w", 250)])
        .await;
    assert!(
        again.iter().all(|r| matches!(r, Ok(s) if !s.now)),
        "{again:?}"
    );
    assert_eq!(l.balance(&user_account("p")).await.unwrap(), 998);
    assert!(l.settle_bets(&f, &[]).await.is_empty());
    assert_eq!(total(l).await, 0);
}

/// 100 placements in flight at once, of every outcome: each gets its own answer, as if they
/// were made one after the other in the order they were issued.
pub async fn simultaneous_placements_each_get_their_own_answer(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let f = l.claim_room("g1").await.unwrap();
    for u in 0..10 {
        l.transfer(&deposit(&format!("p{u}"), 100, &format!("dep-p{u}")))
            .await
            .unwrap();
    }
    l.close_round(&f, "closed").await.unwrap();
    // Per player: 10 placements of 30. Keys k0..k3 into round "open" (k3 overdraws after three
    // accepted), k0 again (a repeat), k4 into the closed round, and k5..k8 into "open" (all
    // overdraw).
    let mut calls = Vec::new();
    for u in 0..10 {
        let user = format!("p{u}");
        for (key, round) in [
            ("k0", "open"),
            ("k1", "open"),
            ("k2", "open"),
            ("k3", "open"),
            ("k0", "open"),
            ("k4", "closed"),
            ("k5", "open"),
            ("k6", "open"),
            ("k7", "open"),
            ("k8", "open"),
        ] {
            let w = wager(&user, key, round, 30);
            let ledger = Arc::clone(&ledger);
            let f = f.clone();
            calls.push(async move {
                (
                    w.user_id.clone(),
                    w.key.clone(),
                    ledger.place_bet(&f, &w).await,
                )
            });
        }
    }
    let results = futures_util::future::join_all(calls).await;
    let mut per_user: HashMap<String, (usize, usize, usize, usize)> = HashMap::new();
    for (user, key, r) in results {
        let tally = per_user.entry(user.clone()).or_default();
        match r.unwrap() {
            Placed::Accepted(rec) => {
                assert!(
                    matches!(rec.state, BetState::Pending { .. }),
                    "{user} {key}"
                );
                tally.0 += 1;
            }
            Placed::Existing(rec) => {
                assert_eq!(key, "k0", "only k0 was repeated");
                assert_eq!(rec.wager.key, "k0");
                tally.1 += 1;
            }
            Placed::Insufficient(rec) => {
                assert!(
                    matches!(rec.state, BetState::Rejected { ref reason, balance: Some(10) } if reason == "INSUFFICIENT_BALANCE"),
                    "{user} {key}: {:?}",
                    rec.state
                );
                tally.2 += 1;
            }
            Placed::RoundClosed => {
                assert_eq!(key, "k4");
                tally.3 += 1;
            }
        }
    }
    assert_eq!(per_user.len(), 10);
    for (user, tally) in &per_user {
        assert_eq!(
            *tally,
            (3, 1, 5, 1),
            "{user}: accepted, repeated, insufficient, closed"
        );
        assert_eq!(l.balance(&format!("user:{user}")).await.unwrap(), 10);
    }
    assert_eq!(l.round_bets("open").await.unwrap().len(), 30);
    assert!(l.round_bets("closed").await.unwrap().is_empty());
    assert_eq!(total(l).await, 0);
}

/// Everything the ledger holds, for "nothing changed" checks: balances, entries, and the
/// records of the given bets.
pub async fn snapshot(
    l: &dyn Ledger,
    bets: &[(&str, &str)],
) -> (
    Vec<(String, i64)>,
    Vec<gameserver::ledger::Entry>,
    Vec<Option<gameserver::ledger::BetRecord>>,
) {
    let mut records = Vec::new();
    for (user, key) in bets {
        records.push(l.bet(user, key).await.unwrap());
    }
    (
        l.accounts().await.unwrap(),
        l.entries(0, 1_000_000).await.unwrap(),
        records,
    )
}

/// A fence taken before the room was claimed again is refused for every room write (round
/// open, close and finish, placement, rejection, settlement, batch settlement) with
/// `STALE_OWNER`, and nothing changes; the current fence works.
pub async fn stale_owners_write_nothing(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let old = l.claim_room("g1").await.unwrap();
    l.transfer(&deposit("s", 1_000, "dep-s")).await.unwrap();
    let round = round_of_g1(1);
    l.open_round(&old, &round).await.unwrap();
    assert!(matches!(
        l.place_bet(&old, &wager("s", "k1", "g1-1", 100))
            .await
            .unwrap(),
        Placed::Accepted(_)
    ));
    // Another engine takes the room over.
    let new = l.claim_room("g1").await.unwrap();
    assert!(new.epoch > old.epoch, "{new:?} after {old:?}");
    let before = snapshot(l, &[("s", "k1"), ("s", "k2"), ("s", "k3")]).await;
    let stale = |r: Result<(), LedgerError>, what: &str| match r {
        Err(LedgerError::StaleOwner {
            game_id,
            epoch,
            current,
        }) => {
            assert_eq!(
                (game_id.as_str(), epoch, current),
                ("g1", old.epoch, new.epoch),
                "{what}"
            );
        }
        other => panic!("{what}: {other:?}"),
    };
    let next = round_of_g1(2);
    stale(l.open_round(&old, &next).await, "open_round");
    stale(
        l.place_bet(&old, &wager("s", "k2", "g1-1", 100))
            .await
            .map(|_| ()),
        "place_bet",
    );
    stale(
        l.reject_bet(&old, &wager("s", "k3", "", 100), "INVALID_SELECTION")
            .await
            .map(|_| ()),
        "reject_bet",
    );
    stale(
        l.settle_bet(&old, "s", "k1", 1, 198).await.map(|_| ()),
        "settle_bet",
    );
    let item = SettleItem {
        user_id: "s".into(),
        key: "k1".into(),
        roll: 1,
        payout: 198,
    };
    for r in l.settle_bets(&old, &[item.clone(), item.clone()]).await {
        stale(r.map(|_| ()), "settle_bets");
    }
    stale(l.close_round(&old, "g1-1").await, "close_round");
    stale(l.finish_round(&old, "g1-1").await, "finish_round");
    assert_eq!(
        snapshot(l, &[("s", "k1"), ("s", "k2"), ("s", "k3")]).await,
        before,
        "a stale owner changed the ledger"
    );
    assert_eq!(l.current_round("g1").await.unwrap(), Some(round));
    // The new owner settles what the old one left.
    l.close_round(&new, "g1-1").await.unwrap();
    let s = l.settle_bet(&new, "s", "k1", 1, 198).await.unwrap();
    assert!(s.now);
    l.finish_round(&new, "g1-1").await.unwrap();
    assert_eq!(l.current_round("g1").await.unwrap(), None);
    assert_eq!(l.balance(&user_account("s")).await.unwrap(), 1_098);
    assert_eq!(total(l).await, 0);
    // Fences are per room: another room's claim does not touch this one.
    l.claim_room("g2").await.unwrap();
    l.open_round(&new, &next).await.unwrap();
}

/// A round not yet finished is never replaced by another (its stakes would be forgotten);
/// opening the same round again is a harmless retry.
pub async fn an_unfinished_round_is_never_replaced(ledger: Arc<dyn Ledger>) {
    let l = ledger.as_ref();
    let f = l.claim_room("g1").await.unwrap();
    let first = round_of_g1(1);
    let second = round_of_g1(2);
    l.open_round(&f, &first).await.unwrap();
    l.open_round(&f, &first).await.unwrap();
    assert_eq!(
        l.open_round(&f, &second).await,
        Err(LedgerError::RoundOpen("g1-1".into()))
    );
    assert_eq!(l.current_round("g1").await.unwrap(), Some(first));
    l.finish_round(&f, "g1-1").await.unwrap();
    l.open_round(&f, &second).await.unwrap();
    assert_eq!(l.current_round("g1").await.unwrap(), Some(second));
}
