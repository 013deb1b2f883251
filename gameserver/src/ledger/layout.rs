//! Where the Redis ledger keeps each key: one shard on a single Redis, `n` hash-tagged shards on
//! a Redis Cluster. Every Lua script touches one shard, so a cluster never sees a cross-slot
//! script and each bet is still one atomic step.
//!
//! - A player's balance, bet records and transfer keys live in the player's shard
//!   ([`Layout::user_shard`]).
//! - A room's epoch counter, nonce and open round live in the room's shard.
//! - Each shard has its own audit stream, entry sequence and identity marker, and its own
//!   sub-account of each system account (`house:s3`, `treasury:s3`): the stake of a bet moves
//!   from the player to the house sub-account of the player's shard. The system account's
//!   balance is the sum of its sub-accounts, so all balances still sum to exactly 0.
//! - A round's bet list and closed marker, and a copy of the room's epoch (the fence), are kept
//!   in every shard a bet of the room may land in (all of them).
//!
//! With one shard the names are the single-Redis names of earlier versions, unchanged.

/// Shards of a ledger on a Redis Cluster unless configured. Fixed for a ledger's life: every
/// engine of a ledger must use the same count (checked at start-up, see
/// [`super::durability`]).
pub const DEFAULT_CLUSTER_SHARDS: u16 = 16;

/// The key layout of one ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
    shards: u16,
}

impl Layout {
    /// One shard, untagged names: a single Redis.
    pub fn single(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            shards: 1,
        }
    }

    /// `shards` hash-tagged shards (at least 1).
    pub fn sharded(prefix: impl Into<String>, shards: u16) -> Self {
        Self {
            prefix: prefix.into(),
            shards: shards.max(1),
        }
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    pub fn is_sharded(&self) -> bool {
        self.shards > 1
    }

    /// Every shard, in order.
    pub fn all(&self) -> impl Iterator<Item = u16> {
        0..self.shards
    }

    /// The shard of a player (by user id).
    pub fn user_shard(&self, user_id: &str) -> u16 {
        self.shard_of(user_id.as_bytes())
    }

    /// The shard of a room (by game id).
    pub fn room_shard(&self, game_id: &str) -> u16 {
        // Rooms and players spread independently; the marker keeps a room "x" apart from a
        // player "x".
        let mut tagged = Vec::with_capacity(game_id.len() + 5);
        tagged.extend_from_slice(b"room:");
        tagged.extend_from_slice(game_id.as_bytes());
        self.shard_of(&tagged)
    }

    /// The shard an account's money moves in: a player's own; `None` for a system account,
    /// which has a sub-account in every shard.
    pub fn account_shard(&self, account: &str) -> Option<u16> {
        account
            .strip_prefix("user:")
            .map(|user_id| self.user_shard(user_id))
    }

    fn shard_of(&self, id: &[u8]) -> u16 {
        if self.shards == 1 {
            return 0;
        }
        (fnv1a(id) % u64::from(self.shards)) as u16
    }

    /// The name of `name` in `shard`: `<prefix>:<name>` with one shard, `<prefix>:{<prefix>.<shard>}:<name>`
    /// (one hash tag per shard) with more.
    pub fn key(&self, shard: u16, name: &str) -> String {
        if self.shards == 1 {
            format!("{}:{name}", self.prefix)
        } else {
            format!("{p}:{{{p}.{shard}}}:{name}", p = self.prefix)
        }
    }

    /// The name a system account has inside `shard`: itself with one shard, `<account>:s<shard>`
    /// with more.
    pub fn sub_account(&self, account: &str, shard: u16) -> String {
        if self.shards == 1 {
            account.to_owned()
        } else {
            format!("{account}:s{shard}")
        }
    }
}

/// FNV-1a: stable across processes and versions (the std hasher is neither).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, or of the whole key).
pub fn cluster_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let close = b[open + 1..].iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &b[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(b)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_keeps_the_single_redis_names() {
        let l = Layout::single("gf");
        assert_eq!(l.key(0, "ledger:balances"), "gf:ledger:balances");
        assert_eq!(l.user_shard("alice"), 0);
        assert_eq!(l.room_shard("dice-1"), 0);
        assert_eq!(l.sub_account("house", 0), "house");
        assert_eq!(Layout::sharded("gf", 0), l);
    }

    #[test]
    fn every_key_of_a_shard_is_in_one_slot_and_shards_differ() {
        let l = Layout::sharded("gf", 16);
        for shard in l.all() {
            let a = cluster_slot(&l.key(shard, "ledger:balances"));
            assert_eq!(a, cluster_slot(&l.key(shard, "bet:5:alice:k1")));
            assert_eq!(a, cluster_slot(&l.key(shard, "round:dice-1-7:bets")));
        }
        let slots: std::collections::HashSet<u16> = l
            .all()
            .map(|s| cluster_slot(&l.key(s, "ledger:seq")))
            .collect();
        assert_eq!(slots.len(), 16, "each shard its own slot");
        assert_eq!(l.key(3, "ledger:log"), "gf:{gf.3}:ledger:log");
    }

    #[test]
    fn players_spread_over_the_shards() {
        let l = Layout::sharded("gf", 16);
        let mut per = [0u32; 16];
        for i in 0..16_000 {
            per[usize::from(l.user_shard(&format!("player-{i}")))] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
        assert_eq!(l.user_shard("alice"), l.user_shard("alice"));
        assert_eq!(l.account_shard("user:alice"), Some(l.user_shard("alice")));
        assert_eq!(l.account_shard("house"), None);
    }

    #[test]
    fn sub_accounts_name_their_shard() {
        let l = Layout::sharded("gf", 4);
        assert_eq!(l.sub_account("house", 3), "house:s3");
        assert_eq!(l.sub_account("treasury", 0), "treasury:s0");
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7 (tests/ledger_cluster.rs asks a real
        // cluster for every shard's).
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("user1000")
        );
        // An empty tag hashes the whole key.
        assert_eq!(cluster_slot("{}foo"), crc16(b"{}foo") % 16384);
        assert_eq!(cluster_slot("123456789"), 0x31C3);
    }
}
