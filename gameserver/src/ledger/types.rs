//! The values the ledger stores and returns: transfers and their entries, bets and their
//! records, rounds and the fence that guards a room's writes. Re-exported by the ledger module;
//! a leaf of its own so that the backends can name them without naming the ledger module back.

use serde::{Deserialize, Serialize};

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

/// The result of [`Ledger::transfer`](super::Ledger::transfer).
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

/// The result of [`Ledger::place_bet`](super::Ledger::place_bet).
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
/// [`Ledger::claim_room`](super::Ledger::claim_room). Every claim raises the epoch, so at most one holder's epoch is the
/// current one; the ledger refuses room writes (round open/close/finish, bet placement,
/// rejection, settlement) carrying any other as [`LedgerError::StaleOwner`](super::LedgerError::StaleOwner) and changes
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

/// The result of [`Ledger::settle_bet`](super::Ledger::settle_bet).
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    pub record: BetRecord,
    /// This call settled it (false: it was already final).
    pub now: bool,
}

/// One bet to settle in [`Ledger::settle_bets`](super::Ledger::settle_bets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleItem {
    pub user_id: String,
    pub key: String,
    pub roll: u32,
    pub payout: i64,
}
