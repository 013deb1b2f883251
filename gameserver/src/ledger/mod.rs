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

mod accounts;
mod check;
mod error;
mod keys;
mod store;
mod types;

pub use self::redis::RedisLedger;
pub use accounts::{user_account, HOUSE, TREASURY};
pub use check::{check_transfer, MAX_AMOUNT};
pub use error::LedgerError;
pub use memory::MemoryLedger;
pub use store::Ledger;
pub use types::{
    BetRecord, BetState, Entry, EntryKind, Fence, Outcome, Placed, Posted, RoundState, SettleItem,
    Settlement, Transfer, Wager,
};
