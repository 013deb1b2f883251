//! In-process ledger for local mode and tests: one mutex around the whole state makes every
//! operation atomic (check and debit happen under the same lock).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::protocol::BetRejectReason;

use crate::clock::now_ms;

use super::accounts::{is_system, user_account, HOUSE};
use super::check::check_transfer;
use super::error::LedgerError;
use super::keys::{payout_key, stake_key};
use super::store::Ledger;
use super::types::{
    BetRecord, BetState, Entry, EntryKind, Fence, Outcome, Placed, Posted, RoundState, Settlement,
    Transfer, Wager,
};

#[derive(Default)]
struct State {
    balances: HashMap<String, i64>,
    entries: Vec<Entry>,
    /// Transfer key → index in `entries`.
    applied: HashMap<String, usize>,
    /// (user, key) → record.
    bets: HashMap<(String, String), BetRecord>,
    /// Round id → bets in placement order.
    rounds: HashMap<String, Vec<(String, String)>>,
    nonces: HashMap<String, u64>,
    open: HashMap<String, RoundState>,
    closed: HashSet<String>,
    /// Room → its owner epoch (see [`Fence`]).
    epochs: HashMap<String, u64>,
}

impl State {
    /// Refuses a fence that is not the room's current one.
    fn check(&self, fence: &Fence) -> Result<(), LedgerError> {
        let current = self.epochs.get(&fence.game_id).copied().unwrap_or(0);
        if current != fence.epoch {
            return Err(LedgerError::StaleOwner {
                game_id: fence.game_id.clone(),
                epoch: fence.epoch,
                current,
            });
        }
        Ok(())
    }

    fn balance(&self, account: &str) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Validated, idempotent, overdraft-free movement; the caller holds the lock.
    fn transfer(&mut self, t: &Transfer) -> Result<Posted, LedgerError> {
        check_transfer(t)?;
        if let Some(&i) = self.applied.get(&t.key) {
            let e = &self.entries[i];
            if e.from != t.from || e.to != t.to || e.amount != t.amount || e.kind != t.kind {
                return Err(LedgerError::KeyReused(t.key.clone()));
            }
            return Ok(Posted {
                entry: e.clone(),
                duplicate: true,
            });
        }
        let from_before = self.balance(&t.from);
        let to_before = self.balance(&t.to);
        let from_after = from_before
            .checked_sub(t.amount)
            .ok_or_else(|| LedgerError::Overflow(t.from.clone()))?;
        if from_after < 0 && !is_system(&t.from) {
            return Err(LedgerError::InsufficientBalance {
                account: t.from.clone(),
                balance: from_before,
                needed: t.amount,
            });
        }
        let to_after = to_before
            .checked_add(t.amount)
            .ok_or_else(|| LedgerError::Overflow(t.to.clone()))?;
        self.balances.insert(t.from.clone(), from_after);
        self.balances.insert(t.to.clone(), to_after);
        let entry = Entry {
            seq: self.entries.len() as u64 + 1,
            key: t.key.clone(),
            kind: t.kind,
            from: t.from.clone(),
            to: t.to.clone(),
            amount: t.amount,
            from_balance: from_after,
            to_balance: to_after,
            at_ms: now_ms(),
            memo: t.memo.clone(),
            shard: 0,
        };
        self.applied.insert(t.key.clone(), self.entries.len());
        self.entries.push(entry.clone());
        Ok(Posted {
            entry,
            duplicate: false,
        })
    }
}

fn bet_key(user_id: &str, key: &str) -> (String, String) {
    (user_id.to_owned(), key.to_owned())
}

#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation checks before it writes, so a panic elsewhere cannot leave half an
        // operation behind; the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn balance(&self, account: &str) -> Result<i64, LedgerError> {
        Ok(self.lock().balance(account))
    }

    async fn transfer(&self, t: &Transfer) -> Result<Posted, LedgerError> {
        self.lock().transfer(t)
    }

    async fn claim_room(&self, game_id: &str) -> Result<Fence, LedgerError> {
        let mut s = self.lock();
        let epoch = s.epochs.entry(game_id.to_owned()).or_insert(0);
        *epoch += 1;
        Ok(Fence {
            game_id: game_id.to_owned(),
            epoch: *epoch,
        })
    }

    async fn place_bet(&self, fence: &Fence, w: &Wager) -> Result<Placed, LedgerError> {
        if w.amount <= 0 {
            return Err(LedgerError::InvalidAmount(w.amount));
        }
        let mut s = self.lock();
        s.check(fence)?;
        let id = bet_key(&w.user_id, &w.key);
        if let Some(existing) = s.bets.get(&id) {
            return Ok(Placed::Existing(existing.clone()));
        }
        if s.closed.contains(&w.round_id) {
            return Ok(Placed::RoundClosed);
        }
        let t = Transfer {
            key: stake_key(&w.user_id, &w.key),
            kind: EntryKind::Bet,
            from: user_account(&w.user_id),
            to: HOUSE.to_owned(),
            amount: w.amount,
            memo: w.round_id.clone(),
        };
        match s.transfer(&t) {
            Ok(posted) => {
                let record = BetRecord {
                    wager: w.clone(),
                    state: BetState::Pending {
                        balance: posted.entry.from_balance,
                    },
                };
                s.bets.insert(id.clone(), record.clone());
                s.rounds.entry(w.round_id.clone()).or_default().push(id);
                Ok(Placed::Accepted(record))
            }
            Err(LedgerError::InsufficientBalance { balance, .. }) => {
                let record = BetRecord {
                    wager: w.clone(),
                    state: BetState::Rejected {
                        reason: BetRejectReason::InsufficientBalance.as_str().into(),
                        balance: Some(balance),
                    },
                };
                s.bets.insert(id, record.clone());
                Ok(Placed::Insufficient(record))
            }
            Err(e) => Err(e),
        }
    }

    async fn settle_bet(
        &self,
        fence: &Fence,
        user_id: &str,
        key: &str,
        roll: u32,
        payout: i64,
    ) -> Result<Settlement, LedgerError> {
        if payout < 0 {
            return Err(LedgerError::InvalidAmount(payout));
        }
        let mut s = self.lock();
        s.check(fence)?;
        let id = bet_key(user_id, key);
        let record = s
            .bets
            .get(&id)
            .cloned()
            .ok_or_else(|| LedgerError::UnknownBet {
                user_id: user_id.into(),
                key: key.into(),
            })?;
        let BetState::Pending { .. } = record.state else {
            return Ok(Settlement { record, now: false });
        };
        let balance = if payout > 0 {
            let t = Transfer {
                key: payout_key(user_id, key),
                kind: EntryKind::Payout,
                from: HOUSE.to_owned(),
                to: user_account(user_id),
                amount: payout,
                memo: record.wager.round_id.clone(),
            };
            s.transfer(&t)?.entry.to_balance
        } else {
            // Losing bets move no money; report the player's balance as it is now.
            s.balance(&user_account(user_id))
        };
        let settled = BetRecord {
            wager: record.wager,
            state: BetState::Settled {
                roll,
                outcome: if payout > 0 {
                    Outcome::Win
                } else {
                    Outcome::Lose
                },
                payout,
                balance,
            },
        };
        s.bets.insert(id, settled.clone());
        Ok(Settlement {
            record: settled,
            now: true,
        })
    }

    async fn reject_bet(
        &self,
        fence: &Fence,
        w: &Wager,
        reason: &str,
    ) -> Result<BetRecord, LedgerError> {
        let mut s = self.lock();
        s.check(fence)?;
        let record = s
            .bets
            .entry(bet_key(&w.user_id, &w.key))
            .or_insert_with(|| BetRecord {
                wager: w.clone(),
                state: BetState::Rejected {
                    reason: reason.to_owned(),
                    balance: None,
                },
            });
        Ok(record.clone())
    }

    async fn bet(&self, user_id: &str, key: &str) -> Result<Option<BetRecord>, LedgerError> {
        Ok(self.lock().bets.get(&bet_key(user_id, key)).cloned())
    }

    async fn round_bets(&self, round_id: &str) -> Result<Vec<BetRecord>, LedgerError> {
        let s = self.lock();
        Ok(s.rounds
            .get(round_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| s.bets.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        let s = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(s.entries.len());
        Ok(s.entries[start..].iter().take(limit).cloned().collect())
    }

    async fn accounts(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let mut all: Vec<_> = self
            .lock()
            .balances
            .iter()
            .map(|(a, b)| (a.clone(), *b))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn next_nonce(&self, fence: &Fence) -> Result<u64, LedgerError> {
        let mut s = self.lock();
        s.check(fence)?;
        let n = s.nonces.entry(fence.game_id.clone()).or_insert(0);
        *n += 1;
        Ok(*n)
    }

    async fn open_round(&self, fence: &Fence, round: &RoundState) -> Result<(), LedgerError> {
        let mut s = self.lock();
        s.check(fence)?;
        if let Some(open) = s.open.get(&fence.game_id) {
            if open.round_id != round.round_id {
                return Err(LedgerError::RoundOpen(open.round_id.clone()));
            }
        }
        s.open.insert(fence.game_id.clone(), round.clone());
        Ok(())
    }

    async fn current_round(&self, game_id: &str) -> Result<Option<RoundState>, LedgerError> {
        Ok(self.lock().open.get(game_id).cloned())
    }

    async fn close_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        let mut s = self.lock();
        s.check(fence)?;
        s.closed.insert(round_id.to_owned());
        Ok(())
    }

    async fn finish_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        let mut s = self.lock();
        s.check(fence)?;
        if s.open
            .get(&fence.game_id)
            .is_some_and(|r| r.round_id == round_id)
        {
            s.open.remove(&fence.game_id);
        }
        Ok(())
    }
}
