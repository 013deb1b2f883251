//! The engine side of the Redis bus: room leases, reading the owned rooms' bet streams
//! (with takeover of stale pending entries), acknowledgements and the backlog gauge.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use prometheus::{IntCounter, IntGauge, Registry};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::Script;

use super::conn::unavailable;
use super::keys::Keys;
use super::{lease, presence};
use crate::bus::{BetRequest, BusError, QueuedBet};
use crate::redisx::Conn;
use crate::sync::lock;

const GROUP: &str = "engines";

/// Idle time given to the entries a stopping engine leaves pending (30 days), above any claim
/// threshold ([`super::MAX_CLAIM_IDLE`]), so the room's next owner takes them over on its
/// first claim pass.
pub(super) const HANDED_OFF_IDLE_MS: u64 = 30 * 24 * 3_600_000;

/// Refreshes after a room's release during which its pending entries are handed off.
const RELEASE_HAND_OFF_PASSES: u32 = 2;

/// Most pending entries handed off per room in one step.
const HAND_OFF_BATCH: usize = 1_000;

/// Cluster: how long to wait between two reads of the owned rooms' streams while all are
/// empty. A read costs one command per room, so the interval grows with the rooms (at most
/// 1,000 commands a second while an engine owns up to 50 rooms), but a bet never waits more
/// than 50 ms for its engine (beyond 50 rooms: 20 commands per room per second).
pub(super) fn poll_interval(rooms: usize) -> Duration {
    Duration::from_millis(rooms as u64).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

#[derive(Clone)]
pub(super) struct EngineBusMetrics {
    backlog: IntGauge,
    leases: IntGauge,
    claimed: IntCounter,
}

impl EngineBusMetrics {
    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            backlog: IntGauge::new(
                "bet_stream_backlog",
                "Bets in the active rooms' streams not yet taken into the ledger (pending + unread), fleet-wide",
            )?,
            leases: IntGauge::new("engine_room_leases", "Room leases this engine holds")?,
            claimed: IntCounter::new(
                "bet_stream_claimed_total",
                "Bets taken over from an engine that stopped processing them",
            )?,
        })
    }

    pub(super) fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.backlog.clone()))?;
        r.register(Box::new(self.leases.clone()))?;
        r.register(Box::new(self.claimed.clone()))
    }
}

/// The engine side of [`super::RedisBus`]: its `EngineBus` calls are handed here, but for
/// publishing (which goes through the histories, as a gateway's does).
pub(super) struct EngineSide {
    keys: Keys,
    /// A bet pending this long with a consumer is taken over.
    claim_idle: Duration,
    lease_ttl: Duration,
    conn: Conn,
    /// Only for blocking stream reads (single Redis). A cluster cannot block on many rooms'
    /// streams at once (each is in its own slot), so there the streams are polled.
    blocking: Option<ConnectionManager>,
    /// Lease value and consumer name: unique to this process.
    owner: String,
    owned: Mutex<BTreeMap<String, u64>>,
    /// Owned room → until when its lease surely holds: the time its last successful renewal
    /// (or acquisition) was sent plus the TTL. Redis expires it no sooner.
    valid_until: Mutex<HashMap<String, Instant>>,
    /// Rooms lost (taken by another engine, or not renewed in time) not yet reported.
    lost: Mutex<Vec<String>>,
    groups: Mutex<HashSet<String>>,
    last_claim: Mutex<Option<Instant>>,
    /// Rooms given up recently → hand-off passes left: bets read for them just before the
    /// release (a read may be in flight) are made claimable on the next refreshes too.
    released: Mutex<HashMap<String, u32>>,
    /// Set by `begin_drain`: no new rooms, no longer announced as live.
    draining: AtomicBool,
    acquire: Script,
    renew: Script,
    release: Script,
    pub(super) metrics: EngineBusMetrics,
}

impl EngineSide {
    /// `node_id` names this process; `conn` serves every command but the blocking reads.
    pub(super) fn new(
        node_id: &str,
        keys: Keys,
        claim_idle: Duration,
        lease_ttl: Duration,
        conn: Conn,
        blocking: Option<ConnectionManager>,
    ) -> prometheus::Result<Self> {
        let mut nonce = [0u8; 6];
        // Uniqueness across restarts of the same node id; the time is a fallback.
        if getrandom::fill(&mut nonce).is_err() {
            nonce.copy_from_slice(&crate::redisx::now_ms().to_be_bytes()[2..]);
        }
        Ok(Self {
            keys,
            claim_idle,
            lease_ttl,
            conn,
            blocking,
            owner: format!("{node_id}-{}", hex::encode(nonce)),
            owned: Mutex::new(BTreeMap::new()),
            valid_until: Mutex::new(HashMap::new()),
            lost: Mutex::new(Vec::new()),
            groups: Mutex::new(HashSet::new()),
            last_claim: Mutex::new(None),
            released: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            acquire: Script::new(lease::ACQUIRE),
            renew: Script::new(lease::RENEW),
            release: Script::new(lease::RELEASE),
            metrics: EngineBusMetrics::new()?,
        })
    }

    fn owned_rooms(&self) -> Vec<String> {
        lock(&self.owned).keys().cloned().collect()
    }

    async fn ensure_group(&self, game_id: &str) -> Result<(), BusError> {
        if lock(&self.groups).contains(game_id) {
            return Ok(());
        }
        // From id 0: bets submitted before any engine read this room are not skipped.
        let r = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.bets(game_id))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.conn.clone())
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(unavailable(e)),
        }
        lock(&self.groups).insert(game_id.to_owned());
        Ok(())
    }

    fn to_queued(
        &self,
        game_id: &str,
        entry: &StreamId,
        redelivered: bool,
    ) -> Result<QueuedBet, String> {
        let json: String = entry
            .get("bet")
            .ok_or_else(|| format!("entry {} has no bet field", entry.id))?;
        let bet: BetRequest = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        Ok(QueuedBet {
            delivery_id: format!("{game_id}\n{}", entry.id),
            bet,
            redelivered,
        })
    }

    /// Turn stream entries into bets; malformed ones are dropped (acknowledged) with a warning.
    async fn collect(
        &self,
        game_id: &str,
        entries: &[StreamId],
        redelivered: bool,
        out: &mut Vec<QueuedBet>,
    ) {
        for entry in entries {
            match self.to_queued(game_id, entry, redelivered) {
                Ok(q) => out.push(q),
                Err(e) => {
                    tracing::warn!(game_id, id = %entry.id, error = %e, "dropping malformed bet entry");
                    let _ = self.ack_bet(&format!("{game_id}\n{}", entry.id)).await;
                }
            }
        }
    }

    /// Take over entries another engine read but never acknowledged.
    async fn claim_stale(&self, rooms: &[String], max: usize) -> Result<Vec<QueuedBet>, BusError> {
        let mut out = Vec::new();
        for game_id in rooms {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.bets(game_id))
                .arg(GROUP)
                .arg(&self.owner)
                .arg(self.claim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            if !reply.claimed.is_empty() {
                self.metrics.claimed.inc_by(reply.claimed.len() as u64);
                tracing::info!(game_id, n = reply.claimed.len(), "took over stale bets");
            }
            self.collect(game_id, &reply.claimed, true, &mut out).await;
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Drop a room whose lease this engine no longer holds (it did not give it up): its bets
    /// read here are handed off, and its room task is told to stop.
    fn lose(&self, room: &str) {
        if self.stop_owning(room) {
            lock(&self.lost).push(room.to_owned());
        }
    }

    /// No longer own `room` here; its bets read by this engine are handed off on the next
    /// refreshes. True if it was owned.
    fn stop_owning(&self, room: &str) -> bool {
        let was_owned = lock(&self.owned).remove(room).is_some();
        lock(&self.valid_until).remove(room);
        if was_owned {
            lock(&self.released).insert(room.to_owned(), RELEASE_HAND_OFF_PASSES);
        }
        was_owned
    }

    /// Renew these rooms' leases; a lease found lost is dropped from the owned rooms.
    async fn renew(&self, rooms: &[String], ttl: u64) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        for room in rooms {
            let sent = Instant::now();
            let kept: i64 = self
                .renew
                .key(self.keys.lease(room))
                .arg(&self.owner)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if kept == 0 {
                self.lose(room);
                tracing::warn!(room, "room lease lost");
            } else {
                lock(&self.valid_until).insert(room.clone(), sent + Duration::from_millis(ttl));
            }
        }
        Ok(())
    }

    async fn renew_owned(&self, ttl: u64) -> Result<(), BusError> {
        let rooms = self.owned_rooms();
        self.renew(&rooms, ttl).await
    }

    /// Make this engine's pending entries of a room look long idle, so the next owner's first
    /// claim pass takes them (they were read but never taken into the ledger).
    async fn hand_off_pending(&self, game_id: &str) -> Result<usize, BusError> {
        let key = self.keys.bets(game_id);
        let mut conn = self.conn.clone();
        let mut total = 0;
        let mut start = "-".to_owned();
        loop {
            let pending: StreamPendingCountReply = match redis::cmd("XPENDING")
                .arg(&key)
                .arg(GROUP)
                .arg(&start)
                .arg("+")
                .arg(HAND_OFF_BATCH)
                .arg(&self.owner)
                .query_async(&mut conn)
                .await
            {
                Ok(p) => p,
                // No stream or group (e.g. Redis lost its data): nothing is pending.
                Err(e) if e.code() == Some("NOGROUP") => return Ok(total),
                Err(e) => return Err(unavailable(e)),
            };
            let Some(last) = pending.ids.last() else {
                return Ok(total);
            };
            start = format!("({}", last.id);
            let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
            redis::cmd("XCLAIM")
                .arg(&key)
                .arg(GROUP)
                .arg(&self.owner)
                .arg(0)
                .arg(&ids)
                .arg("IDLE")
                .arg(HANDED_OFF_IDLE_MS)
                .arg("JUSTID")
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
            total += ids.len();
            if pending.ids.len() < HAND_OFF_BATCH {
                return Ok(total);
            }
        }
    }

    /// One hand-off pass over the recently released rooms.
    async fn hand_off_released(&self) {
        let rooms: Vec<String> = lock(&self.released).keys().cloned().collect();
        for room in rooms {
            // A failed pass is not retried beyond the pass count: such entries are still
            // claimed once idle for `claim_idle`.
            match self.hand_off_pending(&room).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(room, n, "bets of a released room handed off"),
                Err(e) => tracing::debug!(room, error = %e, "hand-off pass failed"),
            }
            let mut released = lock(&self.released);
            if let Some(left) = released.get_mut(&room) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    released.remove(&room);
                }
            }
        }
    }

    pub(super) async fn next_bets(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedBet>, BusError> {
        let rooms = self.owned_rooms();
        if rooms.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let claim_due = {
            let mut last = lock(&self.last_claim);
            let due = last.is_none_or(|t| t.elapsed() >= self.claim_idle / 2);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if claim_due {
            let claimed = self.claim_stale(&rooms, max).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        match &self.blocking {
            Some(blocking) => self.read_blocking(blocking, &rooms, max, wait).await,
            None => self.read_polling(&rooms, max, wait).await,
        }
    }

    /// The entries read from each room's stream, as bets.
    async fn to_bets(&self, reply: Option<StreamReadReply>) -> Vec<QueuedBet> {
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(game_id) = self.keys.game_of_bets(&key.key) else {
                continue;
            };
            self.collect(&game_id, &key.ids, false, &mut out).await;
        }
        out
    }

    /// Groups and streams lost by Redis (a restart): create them again.
    async fn recreate_groups(&self, rooms: &[String]) -> Result<(), BusError> {
        lock(&self.groups).clear();
        for g in rooms {
            self.ensure_group(g).await?;
        }
        Ok(())
    }

    /// Single Redis: one blocking read over every owned room's stream.
    async fn read_blocking(
        &self,
        blocking: &ConnectionManager,
        rooms: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedBet>, BusError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.owner)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        for g in rooms {
            cmd.arg(self.keys.bets(g));
        }
        for _ in rooms {
            cmd.arg(">");
        }
        match cmd.query_async(&mut blocking.clone()).await {
            Ok(reply) => Ok(self.to_bets(reply).await),
            Err(e) if e.code() == Some("NOGROUP") => {
                self.recreate_groups(rooms).await?;
                Ok(Vec::new())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Cluster: every owned room's stream read at once (one slot each), again after
    /// [`poll_interval`] while all are empty, until `wait` has passed.
    async fn read_polling(
        &self,
        rooms: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<QueuedBet>, BusError> {
        let deadline = Instant::now() + wait;
        let per_room = max.div_ceil(rooms.len()).max(1);
        loop {
            let replies = try_join_all(rooms.iter().map(|g| {
                let mut conn = self.conn.clone();
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.owner)
                    .arg("COUNT")
                    .arg(per_room)
                    .arg("STREAMS")
                    .arg(self.keys.bets(g))
                    .arg(">");
                async move {
                    match cmd.query_async::<Option<StreamReadReply>>(&mut conn).await {
                        Ok(r) => Ok(r),
                        Err(e) if e.code() == Some("NOGROUP") => Err(None),
                        Err(e) => Err(Some(unavailable(e))),
                    }
                }
            }))
            .await;
            let replies = match replies {
                Ok(r) => r,
                Err(None) => {
                    self.recreate_groups(rooms).await?;
                    return Ok(Vec::new());
                }
                Err(Some(e)) => return Err(e),
            };
            let mut out = Vec::new();
            for reply in replies {
                out.extend(self.to_bets(reply).await);
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(poll_interval(rooms.len()).min(deadline - now)).await;
        }
    }

    pub(super) async fn ack_bet(&self, delivery_id: &str) -> Result<(), BusError> {
        let Some((game_id, id)) = delivery_id.split_once('\n') else {
            return Err(BusError::Protocol(format!(
                "bad delivery id {delivery_id:?}"
            )));
        };
        let key = self.keys.bets(game_id);
        // Acknowledged entries are deleted too, so a stream's length is its backlog.
        redis::pipe()
            .cmd("XACK")
            .arg(&key)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// Bets queued over `rooms` (pending + unread: acknowledged entries are deleted).
    async fn backlog(&self, rooms: &BTreeSet<String>) -> Result<i64, BusError> {
        if rooms.is_empty() {
            return Ok(0);
        }
        if !self.keys.cluster() {
            let mut pipe = redis::pipe();
            for room in rooms {
                pipe.cmd("XLEN").arg(self.keys.bets(room));
            }
            let lens: Vec<i64> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            return Ok(lens.iter().sum());
        }
        let lens = try_join_all(rooms.iter().map(|room| {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("XLEN");
            cmd.arg(self.keys.bets(room));
            async move { cmd.query_async::<i64>(&mut conn).await }
        }))
        .await
        .map_err(unavailable)?;
        Ok(lens.iter().sum())
    }

    pub(super) async fn ack_bets(&self, delivery_ids: &[String]) -> Result<(), BusError> {
        let mut by_room: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in delivery_ids {
            let Some((game_id, id)) = d.split_once('\n') else {
                return Err(BusError::Protocol(format!("bad delivery id {d:?}")));
            };
            by_room.entry(game_id).or_default().push(id);
        }
        // Per room, one XACK and one XDEL for all its entries: one pipeline on a single Redis,
        // one per room (its slot) on a cluster.
        let room_cmds = |pipe: &mut redis::Pipeline, game_id: &str, ids: &[&str]| {
            let key = self.keys.bets(game_id);
            pipe.cmd("XACK").arg(&key).arg(GROUP).arg(ids).ignore();
            pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
        };
        if !self.keys.cluster() {
            let mut pipe = redis::pipe();
            for (game_id, ids) in &by_room {
                room_cmds(&mut pipe, game_id, ids);
            }
            return pipe
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(unavailable);
        }
        try_join_all(by_room.iter().map(|(game_id, ids)| {
            let mut pipe = redis::pipe();
            room_cmds(&mut pipe, game_id, ids);
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        }))
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    pub(super) async fn give_up(&self, game_id: &str) -> Result<(), BusError> {
        self.stop_owning(game_id);
        self.hand_off_pending(game_id).await?;
        let _: i64 = self
            .release
            .key(self.keys.lease(game_id))
            .arg(&self.owner)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) fn lost_rooms(&self) -> Vec<String> {
        let now = Instant::now();
        let expired: Vec<String> = lock(&self.valid_until)
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(room, _)| room.clone())
            .collect();
        for room in expired {
            tracing::warn!(room, "room lease not renewed within its lifetime");
            self.lose(&room);
        }
        std::mem::take(&mut *lock(&self.lost))
    }

    pub(super) async fn begin_drain(&self) -> Result<(), BusError> {
        self.draining.store(true, Ordering::Release);
        // Out of the live set, so the other engines' fair share grows to cover these rooms.
        redis::cmd("ZREM")
            .arg(self.keys.engines())
            .arg(&self.owner)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    pub(super) async fn stand_down(&self) -> Result<(), BusError> {
        self.draining.store(true, Ordering::Release);
        let mut conn = self.conn.clone();
        let mut first_error = None;
        let recent: Vec<String> = lock(&self.released).drain().map(|(r, _)| r).collect();
        for room in recent {
            if let Err(e) = self.hand_off_pending(&room).await {
                first_error.get_or_insert(e);
            }
        }
        for room in self.owned_rooms() {
            // Pending entries first: once the lease is gone the next owner may claim at once.
            match self.hand_off_pending(&room).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(room, n, "unplaced bets handed off"),
                Err(e) => {
                    tracing::warn!(room, error = %e, "cannot hand off pending bets; they are claimed once idle");
                    first_error.get_or_insert(e);
                }
            }
            let r: Result<i64, _> = self
                .release
                .key(self.keys.lease(&room))
                .arg(&self.owner)
                .invoke_async(&mut conn)
                .await;
            match r {
                Ok(_) => {
                    lock(&self.owned).remove(&room);
                    lock(&self.valid_until).remove(&room);
                }
                Err(e) => {
                    first_error.get_or_insert(unavailable(e));
                }
            }
        }
        self.metrics.leases.set(self.owned_rooms().len() as i64);
        let r = redis::cmd("ZREM")
            .arg(self.keys.engines())
            .arg(&self.owner)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable);
        match first_error {
            Some(e) => Err(e),
            None => r,
        }
    }

    /// Renew, release and acquire room leases, then return the rooms this engine owns.
    /// `presence` lists the rooms with live members.
    pub(super) async fn active_rooms(
        &self,
        presence: &presence::Scripts,
    ) -> Result<Vec<String>, BusError> {
        let now = crate::redisx::now_ms();
        let ttl = self.lease_ttl.as_millis() as u64;
        if self.draining.load(Ordering::Acquire) {
            // Only keep the rooms whose rounds are finishing.
            self.renew_owned(ttl).await?;
            return Ok(self.owned_rooms());
        }
        let rooms = self.live_rooms(presence).await?;
        let engines = self.live_engines(now, ttl).await?;
        let owned = lock(&self.owned).clone();
        let plan = lease::plan(&self.owner, &owned, &rooms, engines);
        self.release_leases(&plan.release).await?;
        self.renew(&plan.renew, ttl).await?;
        self.hand_off_released().await;
        self.acquire_leases(&plan.acquire, plan.budget, ttl).await?;
        // Backlog over every active room (fleet-wide), for scaling decisions.
        self.metrics.backlog.set(self.backlog(&rooms).await?);
        let owned = self.owned_rooms();
        self.metrics.leases.set(owned.len() as i64);
        Ok(owned)
    }

    /// Rooms with live members (expired presence is pruned on the way).
    async fn live_rooms(&self, presence: &presence::Scripts) -> Result<BTreeSet<String>, BusError> {
        Ok(presence
            .live_rooms(&mut self.conn.clone(), &self.keys)
            .await?
            .into_iter()
            .collect())
    }

    /// Marks this engine alive and counts the live engines (seen within two lease lifetimes).
    async fn live_engines(&self, now: u64, ttl: u64) -> Result<usize, BusError> {
        redis::pipe()
            .cmd("ZADD")
            .arg(self.keys.engines())
            .arg(now)
            .arg(&self.owner)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.keys.engines())
            .arg("-inf")
            .arg(now.saturating_sub(ttl * 2))
            .ignore()
            .cmd("ZCARD")
            .arg(self.keys.engines())
            .query_async::<(usize,)>(&mut self.conn.clone())
            .await
            .map(|(n,)| n)
            .map_err(unavailable)
    }

    /// Gives up the leases of `rooms`.
    async fn release_leases(&self, rooms: &[String]) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        for room in rooms {
            self.stop_owning(room);
            let _: i64 = self
                .release
                .key(self.keys.lease(room))
                .arg(&self.owner)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            tracing::info!(room, "room lease released");
        }
        Ok(())
    }

    /// Tries the leases of `rooms` in order until `budget` of them were acquired.
    async fn acquire_leases(
        &self,
        rooms: &[String],
        mut budget: usize,
        ttl: u64,
    ) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        for room in rooms {
            if budget == 0 {
                break;
            }
            let sent = Instant::now();
            let token: u64 = self
                .acquire
                .key(self.keys.lease(room))
                .key(self.keys.fence(room))
                .arg(&self.owner)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if token > 0 {
                self.ensure_group(room).await?;
                lock(&self.owned).insert(room.clone(), token);
                lock(&self.valid_until).insert(room.clone(), sent + Duration::from_millis(ttl));
                lock(&self.released).remove(room);
                // Claim what a previous owner left pending without waiting for the next pass.
                *lock(&self.last_claim) = None;
                budget -= 1;
                tracing::info!(room, token, "room lease acquired");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::poll_interval;
    use std::time::Duration;

    #[test]
    fn polling_costs_at_most_a_thousand_reads_a_second_and_waits_at_most_50_ms() {
        let ms = Duration::from_millis;
        assert_eq!(poll_interval(1), ms(5));
        assert_eq!(poll_interval(5), ms(5));
        assert_eq!(poll_interval(20), ms(20));
        assert_eq!(poll_interval(50), ms(50));
        assert_eq!(poll_interval(10_000), ms(50));
        for rooms in [1usize, 4, 10, 30, 49] {
            let reads_per_second = rooms as f64 / poll_interval(rooms).as_secs_f64();
            assert!(reads_per_second <= 1_000.0, "{rooms}: {reads_per_second}");
        }
    }
}
