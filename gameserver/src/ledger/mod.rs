//! The money ledger: integer minor units, idempotent by key, append-only entry log.
//!
//! Accounts are strings: players are `user:<userId>` ([`user_account`]), and two system
//! accounts stand on the other side of every movement: [`HOUSE`] (stakes in, payouts out) and
//! [`TREASURY`] (deposits and withdrawals). System accounts may go negative; player accounts
//! never do. Every movement is an [`Entry`] from one account to another, so the sum of all
//! balances never changes (it is zero): money is neither created nor destroyed.
//!
//! Bets have their own records ([`BetRecord`]) so that a repeated idempotency key always gets the
//! original outcome, whichever engine sees it. Each bet operation is one atomic step.

pub mod admin;
pub mod archive;
pub mod durability;
pub mod layout;
pub mod memory;
pub mod redis;
mod reply;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisLedger;
pub use memory::MemoryLedger;

/// Receives stakes and pays winnings.
pub const HOUSE: &str = "house";
/// Source of deposits (admin credits, local-mode starting balances) and sink of withdrawals.
pub const TREASURY: &str = "treasury";

/// The ledger account of a player.
pub fn user_account(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn is_system(account: &str) -> bool {
    account == HOUSE || account == TREASURY
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Stake: player → house.
    Bet,
    /// Winnings: house → player.
    Payout,
    /// Treasury → player (admin credit, starting balance).
    Deposit,
    /// Player → treasury (admin debit).
    Withdrawal,
}

/// A requested movement of money, applied at most once per `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: String,
    pub kind: EntryKind,
    pub from: String,
    pub to: String,
    pub amount: i64,
    #[serde(default)]
    pub memo: String,
}

/// One line of the append-only log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// 1, 2, 3, … in the order applied.
    pub seq: u64,
    pub key: String,
    pub kind: EntryKind,
    pub from: String,
    pub to: String,
    pub amount: i64,
    /// Balances of `from` and `to` right after this entry.
    pub from_balance: i64,
    pub to_balance: i64,
    pub at_ms: u64,
    #[serde(default)]
    pub memo: String,
    /// The audit stream the entry is in: the ledger shard (always 0 on a single Redis, and
    /// then left out of the JSON). Sequence numbers count per shard.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shard: u16,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// The result of [`Ledger::transfer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub entry: Entry,
    /// The key had been applied before; `entry` is the original one and nothing moved now.
    pub duplicate: bool,
}

/// A bet as the engine accepted it into a round (or tried to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wager {
    pub user_id: String,
    /// The client's idempotency key (unique per user).
    pub key: String,
    pub game_id: String,
    /// Empty when the bet was rejected before it reached a round.
    #[serde(default)]
    pub round_id: String,
    pub amount: i64,
    /// Normalised selection (`{"direction","target"}`), or the raw one for rejected bets.
    pub selection: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_seed: Option<String>,
    /// The bus delivery that carried it (empty if none): a later delivery of the same key from
    /// the same entry is this bet handled elsewhere, one from another entry is the player
    /// asking again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub delivery: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Win,
    Lose,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum BetState {
    /// Stake debited; waiting for its round's roll.
    #[serde(rename_all = "camelCase")]
    Pending { balance: i64 },
    #[serde(rename_all = "camelCase")]
    Settled {
        roll: u32,
        outcome: Outcome,
        payout: i64,
        balance: i64,
    },
    /// Nothing was debited. `balance` is known when the ledger rejected it.
    #[serde(rename_all = "camelCase")]
    Rejected {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance: Option<i64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BetRecord {
    pub wager: Wager,
    #[serde(flatten)]
    pub state: BetState,
}

/// The result of [`Ledger::place_bet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Stake debited now; the record is `Pending`.
    Accepted(BetRecord),
    /// The key was seen before: this is its record, unchanged.
    Existing(BetRecord),
    /// Not enough balance; recorded as rejected `INSUFFICIENT_BALANCE` (final for this key).
    Insufficient(BetRecord),
    /// The round no longer takes bets (it is being rolled); nothing was recorded.
    RoundClosed,
}

/// Proof that an engine owns a room in the ledger: the room's owner epoch it claimed with
/// [`Ledger::claim_room`]. Every claim raises the epoch, so at most one holder's epoch is the
/// current one; the ledger refuses room writes (round open/close/finish, bet placement,
/// rejection, settlement) carrying any other as [`LedgerError::StaleOwner`] and changes
/// nothing. Leases decide who should run a room; the fence makes a paused or partitioned former
/// owner harmless whatever the timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub game_id: String,
    pub epoch: u64,
}

/// A round that has been opened and not yet finished: enough to roll and settle it, by this
/// engine or, after a crash, by the room's next owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundState {
    pub game_id: String,
    pub round_id: String,
    pub nonce: u64,
    pub server_seed: String,
    pub commitment: String,
    pub betting_opens_at: u64,
    pub betting_closes_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("amount must be a positive integer number of minor units, got {0}")]
    InvalidAmount(i64),
    #[error("account {account} has {balance}, needs {needed}")]
    InsufficientBalance {
        account: String,
        balance: i64,
        needed: i64,
    },
    #[error("balance of {0} would overflow")]
    Overflow(String),
    #[error("invalid account {0:?}")]
    InvalidAccount(String),
    #[error("idempotency key {0:?} was already used for a different operation")]
    KeyReused(String),
    #[error("no bet {key:?} of user {user_id:?}")]
    UnknownBet { user_id: String, key: String },
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger data corrupt: {0}")]
    Corrupt(String),
    #[error("entry {through} is not recorded yet (the last is {last})")]
    BeyondLog { through: u64, last: u64 },
    /// Another engine claimed the room since this fence was taken; nothing was written.
    #[error("room {game_id:?} is owned by epoch {current} now, not {epoch}")]
    StaleOwner {
        game_id: String,
        epoch: u64,
        current: u64,
    },
    /// The room's previous round is not finished; it must be settled before a new one opens.
    #[error("round {0} of the room is still open")]
    RoundOpen(String),
    /// The ledger's identity marker is gone or changed: the store lost or replaced its data.
    /// Nothing was written; bet intake halts until it is back.
    #[error("ledger identity lost: {0}")]
    IdentityLost(String),
    /// A sharded ledger (Redis Cluster) moves money atomically only inside one shard: between a
    /// player and a system account, or two players of the same shard.
    #[error(
        "{from} and {to} are in different ledger shards; no transfer moves money between them"
    )]
    CrossShard { from: String, to: String },
    /// What this ledger does not offer in its configuration.
    #[error("{0}")]
    Unsupported(String),
}

impl LedgerError {
    /// Stable machine-readable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::InvalidAmount(_) => "INVALID_AMOUNT",
            LedgerError::InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            LedgerError::Overflow(_) => "AMOUNT_OVERFLOW",
            LedgerError::InvalidAccount(_) => "INVALID_ACCOUNT",
            LedgerError::KeyReused(_) => "IDEMPOTENCY_KEY_REUSED",
            LedgerError::UnknownBet { .. } => "UNKNOWN_BET",
            LedgerError::Unavailable(_) => "LEDGER_UNAVAILABLE",
            LedgerError::Corrupt(_) => "LEDGER_CORRUPT",
            LedgerError::BeyondLog { .. } => "BEYOND_LOG",
            LedgerError::StaleOwner { .. } => "STALE_OWNER",
            LedgerError::RoundOpen(_) => "ROUND_OPEN",
            LedgerError::IdentityLost(_) => "LEDGER_IDENTITY_LOST",
            LedgerError::CrossShard { .. } => "CROSS_SHARD",
            LedgerError::Unsupported(_) => "UNSUPPORTED",
        }
    }
}

/// The result of [`Ledger::settle_bet`].
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    pub record: BetRecord,
    /// This call settled it (false: it was already final).
    pub now: bool,
}

/// One bet to settle in [`Ledger::settle_bets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleItem {
    pub user_id: String,
    pub key: String,
    pub roll: u32,
    pub payout: i64,
}

/// Largest amount or balance any ledger takes, in minor units: 2^53 − 1, the largest integer
/// Redis Lua numbers (doubles) hold exactly. The engine refuses bets whose possible payout is
/// above it, so no accepted bet can become unpayable.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

/// Checks shared by every implementation, before anything is touched.
pub fn check_transfer(t: &Transfer) -> Result<(), LedgerError> {
    if t.amount <= 0 {
        return Err(LedgerError::InvalidAmount(t.amount));
    }
    for account in [&t.from, &t.to] {
        if account.is_empty() || !(is_system(account) || account.starts_with("user:")) {
            return Err(LedgerError::InvalidAccount(account.clone()));
        }
    }
    if t.from == t.to {
        return Err(LedgerError::InvalidAccount(t.to.clone()));
    }
    if t.key.is_empty() {
        return Err(LedgerError::KeyReused(String::new()));
    }
    Ok(())
}

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
    /// (see [`durability`]); an in-process ledger cannot lose it.
    async fn check_identity(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}

pub(crate) use crate::clock::now_ms;
