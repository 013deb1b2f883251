//! Locks for membership transitions, keyed by room or user.
//!
//! A local first-member/last-member transition (of a room or of a user's connections) and the
//! bus subscribe/unsubscribe it causes must not interleave with another transition of the same
//! room or user, or a subscription could be dropped while a member is still there. Only
//! transitions of the same key need ordering: one gateway-wide lock held across those Redis
//! round trips serialised every join, resume and close of the gateway, which turned a drain's
//! wave of reconnects into seconds of queueing. Keys are spread over a fixed set of stripes;
//! two keys sharing a stripe only wait for each other.

use tokio::sync::{Mutex, MutexGuard};

/// Stripes: comfortably more than the rooms a gateway usually serves at once.
const STRIPES: usize = 256;

/// What a key names (a room and a user may share a name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    Room(&'a str),
    User(&'a str),
}

pub struct MembershipLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for MembershipLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl MembershipLocks {
    /// Waits for, and holds, the lock of `key`.
    pub async fn lock(&self, key: Key<'_>) -> MutexGuard<'_, ()> {
        self.stripes[stripe(key, self.stripes.len())].lock().await
    }
}

/// The stripe of `key` among `n`: the same key always maps to the same stripe.
fn stripe(key: Key<'_>, n: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the mapping only has to be stable within this process.
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_keeps_its_stripe_and_keys_spread_over_stripes() {
        assert_eq!(
            stripe(Key::Room("room-1"), 256),
            stripe(Key::Room("room-1"), 256)
        );
        let used: std::collections::BTreeSet<usize> = (0..40)
            .map(|i| stripe(Key::Room(&format!("room-{i}")), STRIPES))
            .collect();
        assert!(used.len() >= 30, "40 rooms on {} stripes", used.len());
        assert!((0..1000).all(|i| stripe(Key::User(&format!("u{i}")), 7) < 7));
        assert_eq!(stripe(Key::User("x"), 0), 0);
    }

    #[tokio::test]
    async fn the_same_key_waits_and_other_keys_go_on() {
        let locks = MembershipLocks::default();
        let (a, b) = (0..100)
            .map(|i| format!("room-{i}"))
            .find_map(|b| {
                (stripe(Key::Room("room-a"), STRIPES) != stripe(Key::Room(&b), STRIPES))
                    .then_some(("room-a".to_string(), b))
            })
            .unwrap();
        let held = locks.lock(Key::Room(&a)).await;
        let other = tokio::time::timeout(Duration::from_millis(100), locks.lock(Key::Room(&b)));
        assert!(other.await.is_ok(), "another room is not blocked");
        let same = tokio::time::timeout(Duration::from_millis(100), locks.lock(Key::Room(&a)));
        assert!(same.await.is_err(), "the same room waits");
        drop(held);
        let same = tokio::time::timeout(Duration::from_millis(100), locks.lock(Key::Room(&a)));
        assert!(same.await.is_ok(), "free again once released");
    }
}
