//! The [`Ledger`] trait: what every backend (memory, Redis) offers.

use async_trait::async_trait;

use super::error::LedgerError;
use super::types::{
    BetRecord, Entry, Fence, Placed, Posted, RoundState, SettleItem, Settlement, Transfer, Wager,
};

/// The money store. One implementation per backend (memory, Redis); every method is one atomic
/// step, safe to call concurrently from many tasks and processes.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Balance of an account (0 if it never moved).
    async fn balance(&self, account: &str) -> Result<i64, LedgerError>;

    /// Move money once per key. Debits from a player account never overdraw. A repeated key
    /// with the same movement returns the original entry with `duplicate: true`.
    async fn transfer(&self, t: &Transfer) -> Result<Posted, LedgerError>;

    /// Take ownership of a room's rounds in the ledger: raises the room's owner epoch and
    /// returns it. Every earlier fence of the room is stale from now on.
    async fn claim_room(&self, game_id: &str) -> Result<Fence, LedgerError>;

    /// Check the fence, the key and the balance, debit the stake to the house, record the bet
    /// as pending in its round, append the entry: all or nothing.
    async fn place_bet(&self, fence: &Fence, wager: &Wager) -> Result<Placed, LedgerError>;

    /// Settle a pending bet: credit `payout` (0 on a loss) from the house and mark it settled.
    /// Settling an already settled bet returns its record unchanged (`now: false`), so of
    /// several engines settling one round only one tells the player.
    async fn settle_bet(
        &self,
        fence: &Fence,
        user_id: &str,
        key: &str,
        roll: u32,
        payout: i64,
    ) -> Result<Settlement, LedgerError>;

    /// [`Ledger::settle_bet`] for several bets, one result per item in order, each as if
    /// settled alone (an item repeated in the batch is settled once). Backends that can do it
    /// in one round trip override this; the default settles them one by one.
    async fn settle_bets(
        &self,
        fence: &Fence,
        items: &[SettleItem],
    ) -> Vec<Result<Settlement, LedgerError>> {
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            out.push(
                self.settle_bet(fence, &i.user_id, &i.key, i.roll, i.payout)
                    .await,
            );
        }
        out
    }

    /// Record a rejection for a key that has no record yet; returns the key's record (the
    /// existing one if there was one: the first outcome is final).
    async fn reject_bet(
        &self,
        fence: &Fence,
        wager: &Wager,
        reason: &str,
    ) -> Result<BetRecord, LedgerError>;

    /// The record of a bet, if its key was seen.
    async fn bet(&self, user_id: &str, key: &str) -> Result<Option<BetRecord>, LedgerError>;

    /// Every bet placed in a round, in placement order.
    async fn round_bets(&self, round_id: &str) -> Result<Vec<BetRecord>, LedgerError>;

    /// Entries with `seq > after`, oldest first, at most `limit`.
    async fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LedgerError>;

    /// Entries up to this sequence number were archived and are no longer served by
    /// [`Ledger::entries`] (0: none; only the Redis ledger archives).
    async fn archived_through(&self) -> Result<u64, LedgerError> {
        Ok(0)
    }

    /// Every account with its balance (audits and conservation checks).
    async fn accounts(&self) -> Result<Vec<(String, i64)>, LedgerError>;

    /// The next round nonce of the fenced room (1, 2, 3, … across engines and restarts).
    async fn next_nonce(&self, fence: &Fence) -> Result<u64, LedgerError>;

    /// Record that a round is open. Refused with [`LedgerError::RoundOpen`] while the room has
    /// another round not yet finished (an unfinished round's stakes are never forgotten).
    async fn open_round(&self, fence: &Fence, round: &RoundState) -> Result<(), LedgerError>;

    /// The room's open round, if one was opened and not finished.
    async fn current_round(&self, game_id: &str) -> Result<Option<RoundState>, LedgerError>;

    /// Stop the round taking bets: afterwards `place_bet` for it answers `RoundClosed`, so the
    /// set of bets the roll depends on is final. Idempotent.
    async fn close_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError>;

    /// The round is settled: forget it as the room's open round (if it still is).
    async fn finish_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError>;

    /// Returns once every write this process made is durable (on disk where the store can say
    /// so): bus entries are acknowledged only after it. The default has nothing to wait for.
    async fn sync(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    /// `Err(IdentityLost)` when the store no longer holds the data this process started on
    /// (see [`durability`](super::durability)); an in-process ledger cannot lose it.
    async fn check_identity(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}
