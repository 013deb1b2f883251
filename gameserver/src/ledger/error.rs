//! Why a ledger operation failed, with the stable code APIs answer.

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
