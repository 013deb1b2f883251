//! Room presence with expiry. `<p>:presence:<gameId>` is a sorted set of connection ids scored
//! by when their entry expires (Redis server time, ms); each gateway re-writes its own entries
//! several times per TTL. A gateway that dies stops refreshing, so its connections drop out of
//! the room counts and, once a room has no live member, out of `<p>:rooms` (engines stop
//! running rounds there) — without any other process knowing which gateway died.
//!
//! Every script prunes expired entries before counting, so counts never include the dead.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::conn::unavailable;
use crate::bus::BusError;
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
/// members; returns the rooms that have some. (Presence keys are derived here, so this
/// assumes a single Redis, not a cluster.)
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

pub(super) struct Scripts {
    pub join: Script,
    pub leave: Script,
    refresh: Script,
    pub live_rooms: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{NOW}\n{body}"));
        Self {
            join: s(JOIN),
            leave: s(LEAVE),
            refresh: s(REFRESH),
            live_rooms: s(LIVE_ROOMS),
        }
    }
}

pub(super) fn key(prefix: &str, game_id: &str) -> String {
    format!("{prefix}:presence:{game_id}")
}

/// The key prefix `LIVE_ROOMS` appends room ids to.
pub(super) fn key_prefix(prefix: &str) -> String {
    format!("{prefix}:presence:")
}

pub(super) fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

/// Re-write every membership of this gateway with a fresh expiry.
pub(super) async fn refresh(
    conn: &mut ConnectionManager,
    prefix: &str,
    ttl: Duration,
    members: &Mutex<HashMap<String, HashSet<String>>>,
) -> Result<(), BusError> {
    let snapshot: Vec<(String, Vec<String>)> = lock(members)
        .iter()
        .map(|(g, c)| (g.clone(), c.iter().cloned().collect()))
        .collect();
    let script = Scripts::new().refresh;
    for (game, conns) in &snapshot {
        script
            .key(key(prefix, game))
            .key(format!("{prefix}:rooms"))
            .arg(game)
            .arg(ttl_ms(ttl))
            .arg(conns)
            .invoke_async::<i64>(conn)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Refresh this gateway's memberships every third of the TTL until `stop` or the bus is gone.
pub(super) fn spawn_refresher(
    mut conn: ConnectionManager,
    prefix: String,
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
            if let Err(e) = refresh(&mut conn, &prefix, ttl, &members).await {
                tracing::debug!(error = %e, "presence refresh failed; retrying next tick");
            }
        }
    });
}
