//! Names of the bus's Redis keys and channels, on either topology.
//!
//! On a single Redis the names are `<p>:<what>:<id>` (as they always were). On a Redis Cluster
//! every name carries a hash tag, so each script touches one slot: a room's keys and channel
//! share `{r.<gameId>}`, a user's share `{u.<userId>}`, and the fleet-wide ones share
//! `{fleet}`. Two names of the same room always share a slot, whatever the id contains: the
//! tag ends at the first `}` after `{r.`, which is at the same place in every one of them.

use crate::bus::Target;

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub(crate) fn new(prefix: impl Into<String>, cluster: bool) -> Self {
        Self {
            prefix: prefix.into(),
            cluster,
        }
    }

    /// Whether the names are laid out for a Redis Cluster.
    pub(crate) fn cluster(&self) -> bool {
        self.cluster
    }

    fn room(&self, what: &str, game_id: &str) -> String {
        let p = &self.prefix;
        if self.cluster {
            format!("{p}:{{r.{game_id}}}:{what}")
        } else {
            format!("{p}:{what}:{game_id}")
        }
    }

    fn user(&self, what: &str, user_id: &str) -> String {
        let p = &self.prefix;
        if self.cluster {
            format!("{p}:{{u.{user_id}}}:{what}")
        } else {
            format!("{p}:{what}:{user_id}")
        }
    }

    fn fleet(&self, what: &str) -> String {
        let p = &self.prefix;
        if self.cluster {
            format!("{p}:{{fleet}}:{what}")
        } else {
            format!("{p}:{what}")
        }
    }

    /// A room's bet stream.
    pub(crate) fn bets(&self, game_id: &str) -> String {
        self.room("bets", game_id)
    }

    /// The room of a [`bets`](Self::bets) key.
    pub(crate) fn game_of_bets(&self, key: &str) -> Option<String> {
        let p = &self.prefix;
        let game = if self.cluster {
            key.strip_prefix(&format!("{p}:{{r."))?
                .strip_suffix("}:bets")?
        } else {
            key.strip_prefix(&format!("{p}:bets:"))?
        };
        Some(game.to_owned())
    }

    /// A room's presence (sorted set of connections scored by expiry).
    pub(crate) fn presence(&self, game_id: &str) -> String {
        self.room("presence", game_id)
    }

    /// A room's lease (its owning engine).
    pub(crate) fn lease(&self, game_id: &str) -> String {
        self.room("lease", game_id)
    }

    /// How often a room's lease was acquired.
    pub(crate) fn fence(&self, game_id: &str) -> String {
        self.room("fence", game_id)
    }

    /// Rooms with live members: a set on a single Redis; on a cluster a sorted set scored by
    /// the generation of the last write (see [`super::presence`]).
    pub(crate) fn rooms(&self) -> String {
        self.fleet("rooms")
    }

    /// The generation counter of [`rooms`](Self::rooms) (cluster only).
    pub(crate) fn rooms_generation(&self) -> String {
        self.fleet("rooms:gen")
    }

    /// Live engines (sorted set scored by last refresh).
    pub(crate) fn engines(&self) -> String {
        self.fleet("engines")
    }

    /// A one-time token's use mark (one key per token: any slot).
    pub(crate) fn once(&self, id: &str) -> String {
        format!("{}:once:{id}", self.prefix)
    }

    /// A player's bet counter for one second. The id's length keeps `a:1` + `2` apart from
    /// `a` + `1:2` on a single Redis; on a cluster the tag ends the id.
    pub(crate) fn rate(&self, user_id: &str, second: u64) -> String {
        if self.cluster {
            format!("{}:rate:{second}", self.user_tag(user_id))
        } else {
            format!("{}:rate:{}:{user_id}:{second}", self.prefix, user_id.len())
        }
    }

    fn user_tag(&self, user_id: &str) -> String {
        format!("{}:{{u.{user_id}}}", self.prefix)
    }

    /// The mark that a user's once-only notice was published.
    pub(crate) fn sent(&self, user_id: &str, key: &str) -> String {
        if self.cluster {
            format!("{}:sent:{key}", self.user_tag(user_id))
        } else {
            format!("{}:sent:{key}", self.prefix)
        }
    }

    /// A target's history stream and its meta hash (`None` for broadcasts, which have none).
    pub(crate) fn history(&self, target: &Target) -> Option<(String, String)> {
        let stream = match target {
            Target::Room(g) => self.room("hist", g),
            Target::User(u) => self.user("inbox", u),
            Target::All => return None,
        };
        Some((format!("{stream}:meta"), stream))
    }

    /// The pub/sub channel of a delivery target (a shard channel on a cluster, in the same
    /// slot as the target's history, so one script appends and publishes).
    pub(crate) fn channel(&self, target: &Target) -> String {
        match target {
            Target::Room(g) => self.room("room", g),
            Target::User(u) => self.user("user", u),
            Target::All => self.fleet("all"),
        }
    }

    /// The publish command for [`channel`](Self::channel)s.
    pub(crate) fn publish_command(&self) -> &'static str {
        if self.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::layout::cluster_slot;

    #[test]
    fn single_redis_names_are_unchanged() {
        let k = Keys::new("gf", false);
        assert_eq!(k.bets("g1"), "gf:bets:g1");
        assert_eq!(k.presence("g1"), "gf:presence:g1");
        assert_eq!(k.lease("g1"), "gf:lease:g1");
        assert_eq!(k.fence("g1"), "gf:fence:g1");
        assert_eq!(k.rooms(), "gf:rooms");
        assert_eq!(k.engines(), "gf:engines");
        assert_eq!(k.rate("ann", 7), "gf:rate:3:ann:7");
        assert_eq!(k.sent("ann", "s1"), "gf:sent:s1");
        assert_eq!(
            k.history(&Target::Room("g1".into())),
            Some(("gf:hist:g1:meta".into(), "gf:hist:g1".into()))
        );
        assert_eq!(
            k.history(&Target::User("ann".into())),
            Some(("gf:inbox:ann:meta".into(), "gf:inbox:ann".into()))
        );
        assert_eq!(k.channel(&Target::Room("g1".into())), "gf:room:g1");
        assert_eq!(k.channel(&Target::User("ann".into())), "gf:user:ann");
        assert_eq!(k.channel(&Target::All), "gf:all");
        assert_eq!(k.history(&Target::All), None);
        assert_eq!(k.game_of_bets("gf:bets:a:b").as_deref(), Some("a:b"));
        assert_eq!(k.game_of_bets("other:bets:a"), None);
    }

    #[test]
    fn on_a_cluster_a_room_a_user_and_the_fleet_each_keep_to_one_slot() {
        let k = Keys::new("gf", true);
        for g in ["g1", "room}x", "{odd", "a:b"] {
            let room = Target::Room(g.into());
            let (meta, stream) = k.history(&room).unwrap();
            let slot = cluster_slot(&k.bets(g));
            for name in [
                k.presence(g),
                k.lease(g),
                k.fence(g),
                meta,
                stream,
                k.channel(&room),
            ] {
                assert_eq!(cluster_slot(&name), slot, "{name}");
            }
        }
        for u in ["ann", "b}o", "{c"] {
            let user = Target::User(u.into());
            let (meta, stream) = k.history(&user).unwrap();
            let slot = cluster_slot(&stream);
            for name in [meta, k.channel(&user), k.rate(u, 9), k.sent(u, "n1")] {
                assert_eq!(cluster_slot(&name), slot, "{name}");
            }
        }
        let slot = cluster_slot(&k.rooms());
        for name in [k.rooms_generation(), k.engines(), k.channel(&Target::All)] {
            assert_eq!(cluster_slot(&name), slot, "{name}");
        }
        assert_eq!(k.publish_command(), "SPUBLISH");
        for g in ["g1", "room}x", "{odd"] {
            assert_eq!(k.game_of_bets(&k.bets(g)).as_deref(), Some(g));
        }
        // Rooms spread over the slots rather than sharing one.
        let slots: std::collections::HashSet<u16> = (0..50)
            .map(|i| cluster_slot(&k.bets(&format!("g{i}"))))
            .collect();
        assert!(slots.len() > 40, "{}", slots.len());
    }
}
