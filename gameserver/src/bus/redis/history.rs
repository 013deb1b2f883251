//! Room and user histories in Redis, for session resume.
//!
//! * `<p>:hist:<gameId>` / `<p>:inbox:<userId>`: a Stream per room / per user whose entry ids
//!   are the offsets (`<offset>-0`), fields `t` (ms) and `d` (the published payload), capped
//!   with `MAXLEN ~`;
//! * `<p>:hist:<gameId>:meta` / `<p>:inbox:<userId>:meta`: hash `{epoch, seq}`.
//!
//! Publishing appends and `PUBLISH`es in one script, so offsets are assigned in publish order
//! and a frame is never live without being in the history. Both keys expire after the maximum
//! age when the stream goes idle; a stream found without its meta starts a new epoch.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::unavailable;
use crate::bus::history::{self, Entry, HistoryLimits, Position, Recovery};
use crate::bus::{BusError, Delivery, Target};

/// Creates the meta hash (and drops an orphaned stream) when the stream is new or expired.
const ENSURE: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"#;

/// KEYS: meta, stream. ARGV: new epoch, ttl ms, channel, payload, maxlen, now ms.
const PUBLISH_BODY: &str = r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local payload = '{"offset":' .. seq .. ',"epoch":"' .. epoch .. '",' .. string.sub(ARGV[4], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], seq .. '-0', 't', ARGV[6], 'd', payload)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('PUBLISH', ARGV[3], payload)
"#;

/// Prepended to the publish script for a notice sent at most once per key. KEYS[3]: the key's
/// marker, kept as long as the history. ARGV[7]: `mark` (always publish; a first outcome, or
/// one a player asked again for) or `once` (publish unless the key was published already).
const ONCE: &str = r#"
local fresh = redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2])
if not fresh then
  if ARGV[7] == 'once' then return -1 end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
"#;

/// KEYS: meta, stream. ARGV: new epoch, ttl ms, since (-1: none), count.
/// Returns epoch, seq, then id, t, d of each entry after `since`.
const READ_BODY: &str = r#"
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local out = {epoch, tostring(seq)}
local since = tonumber(ARGV[3])
if since >= 0 and since < seq then
  local entries = redis.call('XRANGE', KEYS[2], tostring(since + 1) .. '-0', '+', 'COUNT', ARGV[4])
  for _, e in ipairs(entries) do
    local f, t, d = e[2], '0', ''
    for i = 1, #f, 2 do
      if f[i] == 't' then t = f[i + 1] elseif f[i] == 'd' then d = f[i + 1] end
    end
    out[#out + 1] = e[1]
    out[#out + 1] = t
    out[#out + 1] = d
  end
end
return out
"#;

pub(super) struct Histories {
    prefix: String,
    limits: HistoryLimits,
    publish: Script,
    publish_once: Script,
    read: Script,
}

/// A published payload: the delivery plus the position the publish script prepended.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    #[serde(flatten)]
    delivery: Delivery,
}

/// Decodes a pub/sub or history payload; a positioned frame gets its `position` added.
pub(super) fn decode(payload: &str) -> Result<Delivery, serde_json::Error> {
    let wire: Wire = serde_json::from_str(payload)?;
    let mut d = wire.delivery;
    if let (Some(offset), Some(epoch)) = (wire.offset, wire.epoch) {
        d.frame = history::with_position(&d.frame, &d.target, offset, &epoch).into();
    }
    Ok(d)
}

impl Histories {
    pub(super) fn new(prefix: String, limits: HistoryLimits) -> Self {
        Self {
            prefix,
            limits,
            publish: Script::new(&format!("{ENSURE}{PUBLISH_BODY}")),
            publish_once: Script::new(&format!("{ONCE}{ENSURE}{PUBLISH_BODY}")),
            read: Script::new(&format!("{ENSURE}{READ_BODY}")),
        }
    }

    fn keys(&self, target: &Target) -> Option<(String, String)> {
        let stream = match target {
            Target::Room(g) => format!("{}:hist:{g}", self.prefix),
            Target::User(u) => format!("{}:inbox:{u}", self.prefix),
            Target::All => return None,
        };
        Some((format!("{stream}:meta"), stream))
    }

    fn ttl_ms(&self) -> u64 {
        self.limits.max_age.as_millis().max(1) as u64
    }

    /// Appends to the target's history and publishes on `channel` (plain `PUBLISH` for `All`).
    pub(super) async fn publish(
        &self,
        conn: &mut ConnectionManager,
        channel: String,
        delivery: &Delivery,
    ) -> Result<(), BusError> {
        let payload =
            serde_json::to_string(delivery).map_err(|e| BusError::Protocol(e.to_string()))?;
        let Some((meta, stream)) = self.keys(&delivery.target) else {
            return redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<()>(conn)
                .await
                .map_err(unavailable);
        };
        self.publish
            .key(meta)
            .key(stream)
            .arg(history::new_epoch())
            .arg(self.ttl_ms())
            .arg(channel)
            .arg(payload)
            .arg(self.limits.entries_for(&delivery.target))
            .arg(crate::clock::now_ms())
            .invoke_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Publishes a user's notice that must reach it once: `once` skips it when `key` was
    /// published before (within the history's age); otherwise it is published and marked.
    pub(super) async fn publish_marked(
        &self,
        conn: &mut ConnectionManager,
        channel: String,
        delivery: &Delivery,
        key: &str,
        once: bool,
    ) -> Result<(), BusError> {
        let payload =
            serde_json::to_string(delivery).map_err(|e| BusError::Protocol(e.to_string()))?;
        let Some((meta, stream)) = self.keys(&delivery.target) else {
            return Err(BusError::Protocol("broadcasts are not marked".into()));
        };
        self.publish_once
            .key(meta)
            .key(stream)
            .key(format!("{}:sent:{key}", self.prefix))
            .arg(history::new_epoch())
            .arg(self.ttl_ms())
            .arg(channel)
            .arg(payload)
            .arg(self.limits.entries_for(&delivery.target))
            .arg(crate::clock::now_ms())
            .arg(if once { "once" } else { "mark" })
            .invoke_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The stream's position and the entries after `since` (up to the replay limit + 1).
    async fn read(
        &self,
        conn: &mut ConnectionManager,
        target: &Target,
        since: Option<u64>,
    ) -> Result<(Position, Vec<Entry>), BusError> {
        let Some((meta, stream)) = self.keys(target) else {
            return Err(BusError::Protocol("broadcasts have no history".into()));
        };
        let out: Vec<String> = self
            .read
            .key(meta)
            .key(stream)
            .arg(history::new_epoch())
            .arg(self.ttl_ms())
            .arg(since.map_or(-1, |s| s as i64))
            .arg(self.limits.entries_for(target) + 1)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        let bad = |what: &str| BusError::Protocol(format!("history read: {what}"));
        let [epoch, seq, rest @ ..] = out.as_slice() else {
            return Err(bad("short reply"));
        };
        let position = Position {
            offset: seq.parse().map_err(|_| bad("seq"))?,
            epoch: epoch.clone(),
        };
        let mut entries = Vec::with_capacity(rest.len() / 3);
        for e in rest.chunks(3) {
            let [id, t, d] = e else {
                return Err(bad("entry"));
            };
            let offset = id
                .split_once('-')
                .and_then(|(o, _)| o.parse().ok())
                .ok_or_else(|| bad("entry id"))?;
            let delivery = decode(d).map_err(|e| bad(&e.to_string()))?;
            entries.push(Entry {
                offset,
                at_ms: t.parse().unwrap_or(0),
                frame: delivery.frame,
            });
        }
        Ok((position, entries))
    }

    pub(super) async fn position(
        &self,
        conn: &mut ConnectionManager,
        target: &Target,
    ) -> Result<Position, BusError> {
        Ok(self.read(conn, target, None).await?.0)
    }

    pub(super) async fn history(
        &self,
        conn: &mut ConnectionManager,
        target: &Target,
        since: Option<&Position>,
    ) -> Result<Recovery, BusError> {
        let (current, entries) = self.read(conn, target, since.map(|p| p.offset)).await?;
        Ok(history::recover(
            since,
            current,
            entries,
            crate::clock::now_ms(),
            self.limits.max_age,
            self.limits.entries_for(target),
        ))
    }

    pub(super) fn max_age(&self) -> Duration {
        self.limits.max_age
    }
}
