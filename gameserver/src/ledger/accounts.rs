//! Account names: players' accounts and the two system accounts on the other side of every
//! movement.

/// Receives stakes and pays winnings.
pub const HOUSE: &str = "house";
/// Source of deposits (admin credits, local-mode starting balances) and sink of withdrawals.
pub const TREASURY: &str = "treasury";

/// The ledger account of a player.
pub fn user_account(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Whether the account is one of the system accounts ([`HOUSE`], [`TREASURY`]), which may go
/// negative.
pub(crate) fn is_system(account: &str) -> bool {
    account == HOUSE || account == TREASURY
}
