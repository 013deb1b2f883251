//! The idempotency keys of the transfers a bet makes, the same in every backend.

/// Ledger entry keys for a bet's stake and payout (distinct namespaces per user).
pub(crate) fn stake_key(user_id: &str, key: &str) -> String {
    format!("bet:{user_id}:{key}")
}
pub(crate) fn payout_key(user_id: &str, key: &str) -> String {
    format!("payout:{user_id}:{key}")
}
