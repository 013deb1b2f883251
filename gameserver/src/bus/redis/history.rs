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

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::conn::unavailable;
use super::keys::Keys;
use crate::bus::history::{self, Entry, HistoryLimits, Position, Recovery};
use crate::bus::{BusError, Delivery, MarkedNotice, Target};
use crate::redisx::Conn;

/// `ensure` creates the meta hash (and drops an orphaned stream) when the stream is new or
/// expired, and returns the epoch; `append` appends a payload and publishes it.
const FUNCTIONS: &str = r#"
local function ensure(meta, stream, new_epoch, ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = new_epoch
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    redis.call('PEXPIRE', meta, ttl)
  end
  return epoch
end

local function append(meta, stream, epoch, ttl, channel, payload, maxlen, now, publish)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local p = '{"offset":' .. seq .. ',"epoch":"' .. epoch .. '",' .. string.sub(payload, 2)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 't', now, 'd', p)
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', stream, ttl)
  return redis.call(publish, channel, p)
end
"#;

/// KEYS: meta, stream. ARGV: new epoch, ttl ms, channel, payload, maxlen, now ms, publish
/// command (`PUBLISH`, or `SPUBLISH` on a cluster).
const PUBLISH_BODY: &str = r#"
local epoch = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return append(KEYS[1], KEYS[2], epoch, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"#;

/// Notices sent at most once per key, several per call. KEYS: per notice its meta, stream and
/// marker (kept as long as the history). ARGV: new epoch, ttl ms, now ms, publish command,
/// then per notice its
/// channel, payload, maxlen and mode: `mark` (always publish; a first outcome, or one a player
/// asked again for) or `once` (publish unless the key was published already).
const PUBLISH_MARKED_BODY: &str = r#"
for i = 0, #KEYS / 3 - 1 do
  local meta, stream, marker = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
  local a = 5 + 4 * i
  local fresh = redis.call('SET', marker, '1', 'NX', 'PX', ARGV[2])
  if fresh or ARGV[a + 3] ~= 'once' then
    if not fresh then redis.call('PEXPIRE', marker, ARGV[2]) end
    local epoch = ensure(meta, stream, ARGV[1], ARGV[2])
    append(meta, stream, epoch, ARGV[2], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[3], ARGV[4])
  end
end
return 1
"#;

/// KEYS: meta, stream. ARGV: new epoch, ttl ms, since (-1: none), count.
/// Returns epoch, seq, then id, t, d of each entry after `since`.
const READ_BODY: &str = r#"
local epoch = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
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
    keys: Keys,
    limits: HistoryLimits,
    publish: Script,
    publish_marked: Script,
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
    pub(super) fn new(keys: Keys, limits: HistoryLimits) -> Self {
        Self {
            keys,
            limits,
            publish: Script::new(&format!("{FUNCTIONS}{PUBLISH_BODY}")),
            publish_marked: Script::new(&format!("{FUNCTIONS}{PUBLISH_MARKED_BODY}")),
            read: Script::new(&format!("{FUNCTIONS}{READ_BODY}")),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.limits.max_age.as_millis().max(1) as u64
    }

    /// Appends to the target's history and publishes on its channel (no history for `All`).
    pub(super) async fn publish(
        &self,
        conn: &mut Conn,
        delivery: &Delivery,
    ) -> Result<(), BusError> {
        let channel = self.keys.channel(&delivery.target);
        let payload =
            serde_json::to_string(delivery).map_err(|e| BusError::Protocol(e.to_string()))?;
        let Some((meta, stream)) = self.keys.history(&delivery.target) else {
            return redis::cmd(self.keys.publish_command())
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
            .arg(self.keys.publish_command())
            .invoke_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Publishes users' notices that must reach them once, in one script run: a notice whose
    /// `once` is set is skipped when its key was published before (within the history's age);
    /// the others are published and marked.
    pub(super) async fn publish_marked(
        &self,
        conn: &mut Conn,
        notices: &[MarkedNotice],
    ) -> Result<(), BusError> {
        if notices.is_empty() {
            return Ok(());
        }
        if !self.keys.cluster() {
            return self.publish_marked_in_one_slot(conn, notices).await;
        }
        // A cluster runs one script per user (their keys share a slot), in order within each.
        let mut by_user: BTreeMap<&str, Vec<MarkedNotice>> = BTreeMap::new();
        for n in notices {
            let Target::User(user) = &n.delivery.target else {
                return Err(BusError::Protocol("only users' notices are marked".into()));
            };
            by_user.entry(user).or_default().push(n.clone());
        }
        try_join_all(by_user.values().map(|batch| {
            let mut conn = conn.clone();
            async move { self.publish_marked_in_one_slot(&mut conn, batch).await }
        }))
        .await
        .map(|_| ())
    }

    async fn publish_marked_in_one_slot(
        &self,
        conn: &mut Conn,
        notices: &[MarkedNotice],
    ) -> Result<(), BusError> {
        let mut inv = self.publish_marked.prepare_invoke();
        inv.arg(history::new_epoch())
            .arg(self.ttl_ms())
            .arg(crate::clock::now_ms())
            .arg(self.keys.publish_command());
        for n in notices {
            let (Some((meta, stream)), Target::User(user)) =
                (self.keys.history(&n.delivery.target), &n.delivery.target)
            else {
                return Err(BusError::Protocol("only users' notices are marked".into()));
            };
            let payload = serde_json::to_string(&n.delivery)
                .map_err(|e| BusError::Protocol(e.to_string()))?;
            inv.key(meta).key(stream).key(self.keys.sent(user, &n.key));
            inv.arg(self.keys.channel(&n.delivery.target))
                .arg(payload)
                .arg(self.limits.entries_for(&n.delivery.target))
                .arg(if n.only_if_unsent { "once" } else { "mark" });
        }
        inv.invoke_async::<i64>(conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The stream's position and the entries after `since` (up to the replay limit + 1).
    async fn read(
        &self,
        conn: &mut Conn,
        target: &Target,
        since: Option<u64>,
    ) -> Result<(Position, Vec<Entry>), BusError> {
        let Some((meta, stream)) = self.keys.history(target) else {
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
        conn: &mut Conn,
        target: &Target,
    ) -> Result<Position, BusError> {
        Ok(self.read(conn, target, None).await?.0)
    }

    pub(super) async fn history(
        &self,
        conn: &mut Conn,
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
