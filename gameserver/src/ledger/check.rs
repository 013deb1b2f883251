//! The rules every backend applies to a transfer before anything is touched.

use super::accounts::is_system;
use super::error::LedgerError;
use super::types::Transfer;

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
