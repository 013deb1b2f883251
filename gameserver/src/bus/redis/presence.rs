//! Room presence with expiry. `<p>:presence:<gameId>` is a sorted set of connection ids scored
//! by when their entry expires (Redis server time, ms); each gateway re-writes its own entries
//! several times per TTL. A gateway that dies stops refreshing, so its connections drop out of
//! the room counts and, once a room has no live member, out of `<p>:rooms` (engines stop
//! running rounds there) — without any other process knowing which gateway died.
//!
//! Every script prunes expired entries before counting, so counts never include the dead.
//!
//! On a Redis Cluster a room's presence and the fleet-wide room set live in different slots,
//! so no script can touch both. There the room set is a sorted set scored by a generation
//! (`<rooms:gen>`, bumped by every write): a join or refresh writes the presence first and then
//! bumps the room, and a room is dropped from the set (by a leave or a live-room pass) only if
//! its presence was found empty *and* its generation is still the one read before looking.
//! Any join that might have been missed bumped the generation after that read, so a room with
//! a live member is never dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::conn::unavailable;
use super::keys::Keys;
use crate::bus::BusError;
use crate::redisx::Conn;
use crate::sync::lock;

/// Milliseconds a presence entry lives without a refresh, unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Server time in ms, shared by every script (gateways' clocks never matter).
const NOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// KEYS: presence, rooms. ARGV: connection, game, ttl ms, live-room cap (0 = none). Returns
/// the live member count, or -1 (nothing written) when the room is not live and the fleet
/// already has `cap` rooms.
const JOIN: &str = r#"
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0
    and redis.call('SCARD', KEYS[2]) >= cap then
  return -1
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"#;

/// KEYS: presence, rooms. ARGV: connection, game. Returns the remaining live member count.
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return n
"#;

/// KEYS: presence, rooms. ARGV: game, ttl ms, connections… Re-writes one room's entries.
const REFRESH: &str = r#"
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: rooms. ARGV: presence key prefix. Drops expired entries and rooms left without live
/// members; returns the rooms that have some. (Presence keys are derived here: single Redis
/// only.)
const LIVE_ROOMS: &str = r#"
local live = {}
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. room
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) == 0 then
    redis.call('SREM', KEYS[1], room)
  else
    table.insert(live, room)
  end
end
return live
"#;

/// Cluster, a room's slot. KEYS: presence. ARGV: connection, ttl ms. Returns the live count.
const C_JOIN: &str = r#"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

/// Cluster, a room's slot. KEYS: presence. ARGV: connection ('' for none). Removes it and
/// returns the live count.
const C_LEAVE: &str = r#"
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

/// Cluster, a room's slot. KEYS: presence. ARGV: ttl ms, connections…
const C_REFRESH: &str = r#"
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
return 1
"#;

/// Cluster, the fleet's slot. KEYS: rooms, generation. ARGV: game, live-room cap (0 = none).
/// Marks the room live with a new generation; -1 (nothing written) when it is not live and
/// the fleet already has `cap` rooms.
const C_MARK_LIVE: &str = r#"
local cap = tonumber(ARGV[2])
if cap > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= cap then
  return -1
end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
return 1
"#;

/// Cluster, the fleet's slot. KEYS: rooms. ARGV: pairs of game and the generation read before
/// its presence was found empty. Drops each room still at that generation.
const C_DROP_IF_UNCHANGED: &str = r#"
local n = 0
for i = 1, #ARGV, 2 do
  local g = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if g and tonumber(g) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// The presence scripts of both topologies.
pub(super) struct Scripts {
    join: Script,
    leave: Script,
    refresh: Script,
    live_rooms: Script,
    c_join: Script,
    c_leave: Script,
    c_refresh: Script,
    c_mark_live: Script,
    c_drop: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{NOW}\n{body}"));
        Self {
            join: s(JOIN),
            leave: s(LEAVE),
            refresh: s(REFRESH),
            live_rooms: s(LIVE_ROOMS),
            c_join: s(C_JOIN),
            c_leave: s(C_LEAVE),
            c_refresh: s(C_REFRESH),
            c_mark_live: Script::new(C_MARK_LIVE),
            c_drop: Script::new(C_DROP_IF_UNCHANGED),
        }
    }

    /// Adds a connection to a room. Returns the live member count, or `None` (nothing left
    /// written) when the room is not live and the fleet already has `cap` rooms.
    pub(super) async fn join(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        game_id: &str,
        connection_id: &str,
        ttl: Duration,
        cap: u64,
    ) -> Result<Option<u64>, BusError> {
        if !keys.cluster() {
            let n: i64 = self
                .join
                .key(keys.presence(game_id))
                .key(keys.rooms())
                .arg(connection_id)
                .arg(game_id)
                .arg(ttl_ms(ttl))
                .arg(cap)
                .invoke_async(conn)
                .await
                .map_err(unavailable)?;
            return Ok(u64::try_from(n).ok());
        }
        // Presence first, then the room's generation (see the module doc).
        let n: u64 = self
            .c_join
            .key(keys.presence(game_id))
            .arg(connection_id)
            .arg(ttl_ms(ttl))
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        if self.mark_live(conn, keys, game_id, cap).await? {
            return Ok(Some(n));
        }
        self.c_leave
            .key(keys.presence(game_id))
            .arg(connection_id)
            .invoke_async::<i64>(conn)
            .await
            .map_err(unavailable)?;
        Ok(None)
    }

    /// Cluster: marks a room live; false when refused by the live-room cap.
    async fn mark_live(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        game_id: &str,
        cap: u64,
    ) -> Result<bool, BusError> {
        let r: i64 = self
            .c_mark_live
            .key(keys.rooms())
            .key(keys.rooms_generation())
            .arg(game_id)
            .arg(cap)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(r > 0)
    }

    /// Removes a connection from a room; returns the live members left.
    pub(super) async fn leave(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        game_id: &str,
        connection_id: &str,
    ) -> Result<u64, BusError> {
        if !keys.cluster() {
            return self
                .leave
                .key(keys.presence(game_id))
                .key(keys.rooms())
                .arg(connection_id)
                .arg(game_id)
                .invoke_async(conn)
                .await
                .map_err(unavailable);
        }
        let generation: Option<String> = redis::cmd("ZSCORE")
            .arg(keys.rooms())
            .arg(game_id)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let n: u64 = self
            .c_leave
            .key(keys.presence(game_id))
            .arg(connection_id)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        if let (0, Some(g)) = (n, generation) {
            self.drop_if_unchanged(conn, keys, &[(game_id.to_owned(), g)])
                .await?;
        }
        Ok(n)
    }

    /// Cluster: the room set with each room's generation.
    async fn generations(
        &self,
        conn: &mut Conn,
        keys: &Keys,
    ) -> Result<HashMap<String, String>, BusError> {
        let flat: Vec<(String, String)> = redis::cmd("ZRANGE")
            .arg(keys.rooms())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(flat.into_iter().collect())
    }

    async fn drop_if_unchanged(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        rooms: &[(String, String)],
    ) -> Result<(), BusError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut inv = self.c_drop.key(keys.rooms());
        for (game, generation) in rooms {
            inv.arg(game).arg(generation);
        }
        inv.invoke_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The rooms with live members; expired entries, and rooms left without any, are dropped.
    pub(super) async fn live_rooms(
        &self,
        conn: &mut Conn,
        keys: &Keys,
    ) -> Result<Vec<String>, BusError> {
        if !keys.cluster() {
            return self
                .live_rooms
                .key(keys.rooms())
                .arg(keys.presence(""))
                .invoke_async(conn)
                .await
                .map_err(unavailable);
        }
        let generations = self.generations(conn, keys).await?;
        // One presence count per room, each in its own slot, all in flight at once.
        let counts = try_join_all(generations.keys().map(|game| {
            let (mut conn, script, key) = (conn.clone(), &self.c_leave, keys.presence(game));
            async move {
                script
                    .key(key)
                    .arg("")
                    .invoke_async::<u64>(&mut conn)
                    .await
                    .map_err(unavailable)
            }
        }))
        .await?;
        let mut live = Vec::new();
        let mut empty = Vec::new();
        for ((game, generation), n) in generations.into_iter().zip(counts) {
            if n > 0 {
                live.push(game);
            } else {
                empty.push((game, generation));
            }
        }
        self.drop_if_unchanged(conn, keys, &empty).await?;
        Ok(live)
    }

    /// Re-writes one room's memberships with a fresh expiry.
    async fn refresh_room(
        &self,
        conn: &mut Conn,
        keys: &Keys,
        game_id: &str,
        ttl: Duration,
        connections: &[String],
    ) -> Result<(), BusError> {
        if !keys.cluster() {
            return self
                .refresh
                .key(keys.presence(game_id))
                .key(keys.rooms())
                .arg(game_id)
                .arg(ttl_ms(ttl))
                .arg(connections)
                .invoke_async::<i64>(conn)
                .await
                .map(|_| ())
                .map_err(unavailable);
        }
        self.c_refresh
            .key(keys.presence(game_id))
            .arg(ttl_ms(ttl))
            .arg(connections)
            .invoke_async::<i64>(conn)
            .await
            .map_err(unavailable)?;
        // A room this gateway already has members in is never refused by the cap.
        self.mark_live(conn, keys, game_id, 0).await.map(|_| ())
    }
}

pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

/// Re-write every membership of this gateway with a fresh expiry.
pub(super) async fn refresh(
    conn: &mut Conn,
    keys: &Keys,
    ttl: Duration,
    members: &Mutex<HashMap<String, HashSet<String>>>,
) -> Result<(), BusError> {
    let snapshot: Vec<(String, Vec<String>)> = lock(members)
        .iter()
        .map(|(g, c)| (g.clone(), c.iter().cloned().collect()))
        .collect();
    let scripts = Scripts::new();
    for (game, conns) in &snapshot {
        scripts.refresh_room(conn, keys, game, ttl, conns).await?;
    }
    Ok(())
}

/// Refresh this gateway's memberships every third of the TTL until `stop` or the bus is gone.
pub(super) fn spawn_refresher(
    mut conn: Conn,
    keys: Keys,
    ttl: Duration,
    members: Weak<Mutex<HashMap<String, HashSet<String>>>>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(members) = members.upgrade() else {
                return;
            };
            if let Err(e) = refresh(&mut conn, &keys, ttl, &members).await {
                tracing::debug!(error = %e, "presence refresh failed; retrying next tick");
            }
        }
    });
}
