//! Room ownership on the bus. One engine should run a room's rounds: it holds the room's lease
//! (`<p>:lease:<gameId>`, `SET NX PX`, value unique to the engine process) and renews it on every
//! room refresh, several times per TTL; a lease found taken, or not renewed within its lifetime,
//! is reported lost so the room stops at once. Each acquisition also counts
//! `<p>:fence:<gameId>` (diagnostics). If the owner dies the lease expires and a live engine
//! takes the room. What makes a former owner harmless whatever the timing is the ledger's room
//! fence ([`crate::ledger::Fence`]): the new owner claims the room there, and every write of an
//! older claim is refused.
//!
//! Engines announce themselves in `<p>:engines` (sorted set, score = last refresh) so each can
//! compute its fair share of the rooms: an engine above its share releases rooms, one below it
//! takes free ones — adding an engine spreads the rooms.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

pub(super) const ACQUIRE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"#;

pub(super) const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

pub(super) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// What to do with leases on one refresh.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeasePlan {
    pub renew: Vec<String>,
    pub release: Vec<String>,
    /// Rooms this engine does not own, best first; some are owned by other engines, so try
    /// them in order until `budget` were acquired.
    pub acquire: Vec<String>,
    pub budget: usize,
}

/// Rooms per engine so that every room has an owner: ⌈rooms / engines⌉.
pub fn fair_share(rooms: usize, engines: usize) -> usize {
    rooms.div_ceil(engines.max(1))
}

/// Per-engine preference order, so engines starting together reach for different rooms.
fn preference(node: &str, room: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (node, room).hash(&mut h);
    h.finish()
}

/// Decide renewals, releases and acquisitions. `owned` maps rooms to fencing tokens; `rooms`
/// are the rooms with members; `engines` counts live engines (including this one).
pub fn plan(
    node: &str,
    owned: &BTreeMap<String, u64>,
    rooms: &BTreeSet<String>,
    engines: usize,
) -> LeasePlan {
    let share = fair_share(rooms.len(), engines);
    let mut p = LeasePlan::default();
    let mut keep: Vec<&String> = Vec::new();
    for room in owned.keys() {
        if rooms.contains(room) {
            keep.push(room);
        } else {
            p.release.push(room.clone());
        }
    }
    // Above the share: hand back the rooms this engine prefers least.
    keep.sort_by_key(|r| preference(node, r));
    while keep.len() > share {
        if let Some(r) = keep.pop() {
            p.release.push(r.clone());
        }
    }
    p.renew = keep.iter().map(|r| (*r).clone()).collect();
    let mut free: Vec<&String> = rooms.iter().filter(|r| !owned.contains_key(*r)).collect();
    free.sort_by_key(|r| preference(node, r));
    p.budget = share.saturating_sub(p.renew.len());
    if p.budget > 0 {
        p.acquire = free.into_iter().cloned().collect();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }
    fn owned(xs: &[&str]) -> BTreeMap<String, u64> {
        xs.iter().map(|s| (s.to_string(), 1)).collect()
    }

    #[test]
    fn fair_share_table() {
        for (rooms, engines, want) in [
            (0, 1, 0),
            (10, 1, 10),
            (10, 2, 5),
            (11, 2, 6),
            (3, 5, 1),
            (4, 0, 4),
        ] {
            assert_eq!(fair_share(rooms, engines), want, "{rooms}/{engines}");
        }
    }

    #[test]
    fn a_lone_engine_takes_every_room() {
        let p = plan("e1", &owned(&[]), &set(&["a", "b", "c"]), 1);
        assert_eq!(p.budget, 3);
        assert_eq!(
            set(&p.acquire.iter().map(String::as_str).collect::<Vec<_>>()),
            set(&["a", "b", "c"])
        );
        assert!(p.renew.is_empty() && p.release.is_empty());
    }

    #[test]
    fn rooms_without_members_are_released() {
        let p = plan("e1", &owned(&["a", "gone"]), &set(&["a"]), 1);
        assert_eq!(p.release, ["gone"]);
        assert_eq!(p.renew, ["a"]);
        assert!(p.acquire.is_empty());
    }

    #[test]
    fn a_new_engine_makes_the_owner_hand_rooms_over() {
        let rooms = set(&["a", "b", "c", "d"]);
        let p = plan("e1", &owned(&["a", "b", "c", "d"]), &rooms, 2);
        assert_eq!(p.renew.len(), 2);
        assert_eq!(p.release.len(), 2);
        // The newcomer, owning nothing, reaches for its share of the free rooms.
        let q = plan("e2", &owned(&[]), &rooms, 2);
        assert_eq!(q.budget, 2);
        assert_eq!(q.acquire.len(), 4, "tries every room it does not own");
    }

    #[test]
    fn an_engine_at_its_share_only_renews() {
        let p = plan("e1", &owned(&["a", "b"]), &set(&["a", "b", "c"]), 2);
        assert_eq!(p.renew.len(), 2);
        assert!(p.release.is_empty());
        assert_eq!(p.budget, 0);
        assert!(p.acquire.is_empty());
    }
}
