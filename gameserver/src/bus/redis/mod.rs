//! The bus over Redis, joining any number of gateway and engine processes.
//!
//! * **Bets**: one stream per room (`<p>:bets:<gameId>`), consumer group `engines`. A gateway
//!   acknowledges a bet to the player only after `XADD` returned. Only the engine that owns a
//!   room reads its stream; entries are acknowledged (`XACK` + `XDEL`) once the ledger holds the
//!   bet, and entries left pending by a dead engine are taken over with `XAUTOCLAIM`. Blocking
//!   reads use their own connection so they never delay other commands.
//! * **Deliveries**: room frames on the pub/sub channel `<p>:room:<gameId>`, which a gateway
//!   subscribes to only while it has members in the room; a user's direct frames (e.g.
//!   `bet_settled`) on `<p>:user:<userId>`, subscribed by the gateway(s) holding that user;
//!   frames for everyone on `<p>:all`. Room and user frames are also appended to a bounded
//!   history (see [`history`]) in the same atomic step, for session resume.
//! * **Presence**: `<p>:presence:<gameId>` (connections with an expiry, see [`presence`]) and
//!   `<p>:rooms` (rooms with live members), updated atomically by scripts. Each gateway
//!   refreshes its own entries several times per TTL, keeps a copy of its own memberships
//!   and writes them again after Redis comes back.
//! * **Room ownership**: see [`lease`].
//!
//! Every Redis failure surfaces as [`BusError::Unavailable`]; connections are re-established in
//! the background.

mod conn;
mod engine;
mod history;
mod keys;
pub mod lease;
mod presence;
mod pubsub;
mod sharded;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use self::conn::unavailable;
use self::keys::Keys;
use super::history::HistoryLimits;
use super::{
    BetRequest, Bound, BusError, Delivery, EngineBus, GatewayBus, MarkedNotice, Position,
    QueuedBet, Recovery, Target,
};
use crate::redisx::Conn;
use crate::sync::lock;

/// How a process joins the Redis bus.
#[derive(Clone, Debug)]
pub struct RedisBusConfig {
    pub url: String,
    /// Namespace for every key and channel.
    pub prefix: String,
    /// Unique name of this process (gateway or engine id).
    pub node_id: String,
    /// Room lease lifetime; an owner renews it every `active_rooms` call (several per TTL).
    pub lease_ttl: Duration,
    /// A bet pending this long with a consumer is taken over by another engine.
    pub claim_idle: Duration,
    /// Bounds of the room and user histories kept for session resume.
    pub history: HistoryLimits,
    /// How long a connection's room membership counts without a refresh from its gateway
    /// (a dead gateway's members drop out of the rooms after this).
    pub presence_ttl: Duration,
    /// Rooms with members at once, fleet-wide (0 = unlimited): a join that would open one
    /// more is refused.
    pub max_live_rooms: u64,
    /// Bets one player may queue per second across all gateways (0 = unlimited).
    pub bets_per_user_per_second: u32,
    /// Bets waiting for an engine per room (0 = unlimited): beyond it bets are refused, never
    /// trimmed (a queued bet has been acknowledged to its player).
    pub max_bet_backlog: u64,
}

impl RedisBusConfig {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "gf".into(),
            node_id: node_id.into(),
            lease_ttl: Duration::from_secs(3),
            claim_idle: Duration::from_secs(2),
            history: HistoryLimits::default(),
            presence_ttl: presence::DEFAULT_TTL,
            max_live_rooms: DEFAULT_MAX_LIVE_ROOMS,
            bets_per_user_per_second: DEFAULT_BETS_PER_USER_PER_SECOND,
            max_bet_backlog: DEFAULT_MAX_BET_BACKLOG,
        }
    }
}

/// Live rooms per fleet unless configured.
pub const DEFAULT_MAX_LIVE_ROOMS: u64 = 1_000;
/// Bets per player per second unless configured (a dice round takes seconds; a human places a
/// few bets per round).
pub const DEFAULT_BETS_PER_USER_PER_SECOND: u32 = 10;
/// Queued bets per room unless configured.
pub const DEFAULT_MAX_BET_BACKLOG: u64 = 100_000;

/// KEYS: the player's counter for this second, the room's bet stream. ARGV: bets per second
/// (0 = unlimited), backlog cap (0 = unlimited), the bet JSON. The checks come before the
/// only write that matters, so a refused bet leaves nothing but the counter (which expires).
const SUBMIT_BET: &str = r#"
local limit = tonumber(ARGV[1])
if limit > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
  if n > limit then return 'rate' end
end
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('XLEN', KEYS[2]) >= cap then return 'backlog' end
redis.call('XADD', KEYS[2], '*', 'bet', ARGV[3])
return 'ok'
"#;

/// Cluster, the player's slot: [`SUBMIT_BET`]'s rate check. KEYS: the counter. ARGV: limit.
const CHECK_RATE: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
if n > tonumber(ARGV[1]) then return 'rate' end
return 'ok'
"#;

/// Cluster, the room's slot: [`SUBMIT_BET`]'s backlog check and append. KEYS: the bet stream.
/// ARGV: backlog cap (0 = unlimited), the bet JSON.
const ENQUEUE_BET: &str = r#"
local cap = tonumber(ARGV[1])
if cap > 0 and redis.call('XLEN', KEYS[1]) >= cap then return 'backlog' end
redis.call('XADD', KEYS[1], '*', 'bet', ARGV[2])
return 'ok'
"#;

/// How long a bet may stay pending before another engine (or this one, after a restart) takes
/// it over: two thirds of the lease, so a dead engine's bets move about when its rooms do, but
/// never less than a result pause plus a second. A room holds the bets that arrive during its
/// pause, unacknowledged, until its next round opens; a shorter idle time made engines claim
/// their own held bets back and route them twice (a no-op thanks to the idempotency key, but
/// wasted work).
pub fn claim_idle(lease_ttl: Duration, result_pause: Duration) -> Duration {
    (lease_ttl * 2 / 3)
        .max(result_pause + Duration::from_secs(1))
        .min(MAX_CLAIM_IDLE)
}

/// Longest claim idle time (a week): bets handed off by a stopping engine are marked idler
/// than this, so they are claimed at once whatever the configuration.
pub const MAX_CLAIM_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deliveries queued towards the gateway before the subscriber waits.
const DELIVERY_QUEUE: usize = 16_384;

/// A gateway's subscriptions: plain pub/sub on a single Redis, sharded on a cluster.
enum Subscriber {
    Single(pubsub::Subscriber),
    Sharded(sharded::Subscriber),
}

impl Subscriber {
    async fn subscribe(&self, channel: String) {
        match self {
            Self::Single(s) => s.subscribe(channel).await,
            Self::Sharded(s) => s.subscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, channel: String) {
        match self {
            Self::Single(s) => s.unsubscribe(channel).await,
            Self::Sharded(s) => s.unsubscribe(channel).await,
        }
    }

    fn is_up(&self) -> bool {
        match self {
            Self::Single(s) => s.is_up(),
            Self::Sharded(s) => s.is_up(),
        }
    }

    async fn wait_up(&self, timeout: Duration) -> Result<(), BusError> {
        match self {
            Self::Single(s) => s.wait_up(timeout).await,
            Self::Sharded(s) => s.wait_up(timeout).await,
        }
    }

    fn metrics(&self) -> &pubsub::PubSubMetrics {
        match self {
            Self::Single(s) => &s.metrics,
            Self::Sharded(s) => &s.metrics,
        }
    }
}

/// The bet-submission scripts: one on a single Redis, two steps (player's slot, then room's
/// slot) on a cluster. The rate counter only ever over-counts either way: it is raised before
/// the backlog check, as the single script does.
struct SubmitScripts {
    submit: redis::Script,
    check_rate: redis::Script,
    enqueue: redis::Script,
}

pub struct RedisBus {
    cfg: RedisBusConfig,
    keys: Keys,
    conn: Conn,
    presence_scripts: presence::Scripts,
    submit: SubmitScripts,
    /// Stops the presence refresher when the bus is dropped.
    _presence: tokio_util::sync::DropGuard,
    /// This gateway's memberships (room → connections), refreshed in Redis several times per
    /// presence TTL and re-written after a Redis restart.
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    subscriber: Subscriber,
    deliveries_rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    engine: engine::EngineSide,
    histories: history::Histories,
}

impl RedisBus {
    /// Connect lazily (Redis may be down at start) and start the subscriber task. Must be called
    /// inside a Tokio runtime. `cfg.url` names a single Redis or (`redis+cluster://`) a Redis
    /// Cluster, whose keys are then hash-tagged (see [`keys`]).
    pub fn connect(cfg: RedisBusConfig) -> Result<Arc<Self>, BusError> {
        let cluster = crate::redisx::is_cluster(&cfg.url);
        let keys = Keys::new(cfg.prefix.clone(), cluster);
        let conn = crate::redisx::connect(&cfg.url).map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let members = Arc::new(Mutex::new(HashMap::new()));
        let (subscriber, blocking) = if cluster {
            let s = sharded::Subscriber::start(
                &cfg.url,
                keys.clone(),
                tx,
                conn.clone(),
                Arc::clone(&members),
                cfg.presence_ttl,
            )?;
            (Subscriber::Sharded(s), None)
        } else {
            let client = redis::Client::open(cfg.url.as_str()).map_err(unavailable)?;
            let s = pubsub::Subscriber::start(
                client,
                keys.clone(),
                tx,
                conn.clone(),
                Arc::clone(&members),
                cfg.presence_ttl,
            )
            .map_err(|e| BusError::Protocol(e.to_string()))?;
            let blocking = crate::redisx::blocking_manager(&cfg.url).map_err(unavailable)?;
            (Subscriber::Single(s), Some(blocking))
        };
        let presence_stop = tokio_util::sync::CancellationToken::new();
        presence::spawn_refresher(
            conn.clone(),
            keys.clone(),
            cfg.presence_ttl,
            Arc::downgrade(&members),
            presence_stop.clone(),
        );
        Ok(Arc::new(Self {
            engine: engine::EngineSide::new(
                &cfg.node_id,
                keys.clone(),
                cfg.claim_idle,
                cfg.lease_ttl,
                conn.clone(),
                blocking,
            )
            .map_err(|e| BusError::Protocol(e.to_string()))?,
            histories: history::Histories::new(keys.clone(), cfg.history.clone()),
            cfg,
            keys,
            conn,
            presence_scripts: presence::Scripts::new(),
            submit: SubmitScripts {
                submit: redis::Script::new(SUBMIT_BET),
                check_rate: redis::Script::new(CHECK_RATE),
                enqueue: redis::Script::new(ENQUEUE_BET),
            },
            _presence: presence_stop.drop_guard(),
            members,
            subscriber,
            deliveries_rx: Mutex::new(Some(rx)),
        }))
    }

    /// Register the bus metrics (pub/sub lag, bet backlog, leases) on a registry.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.subscriber.metrics().register(registry)?;
        self.engine.metrics.register(registry)
    }

    /// Publishes a delivery; room and user frames are appended to their history first (in
    /// the same atomic step).
    async fn publish_delivery(&self, delivery: &Delivery) -> Result<(), BusError> {
        self.histories
            .publish(&mut self.conn.clone(), delivery)
            .await
    }

    /// How long histories are kept (and replayed).
    pub fn history_max_age(&self) -> Duration {
        self.histories.max_age()
    }

    /// Whether Redis answers, and (`pubsub`: a gateway) whether the pub/sub connection is up:
    /// the readiness check.
    pub async fn check(&self, pubsub: bool) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map_err(|e| e.to_string())?;
        if pubsub && !self.subscriber.is_up() {
            return Err("pub/sub connection down".into());
        }
        Ok(())
    }

    /// This gateway no longer holds `connection_id` in `game_id`.
    fn forget_member(&self, game_id: &str, connection_id: &str) {
        let mut m = lock(&self.members);
        if let Some(set) = m.get_mut(game_id) {
            set.remove(connection_id);
            if set.is_empty() {
                m.remove(game_id);
            }
        }
    }

    /// Queues a bet: the rate and backlog checks, then the append.
    async fn enqueue(&self, bet: &BetRequest, json: String) -> Result<String, BusError> {
        let second = crate::clock::now_ms() / 1000;
        let rate_key = self.keys.rate(&bet.user_id, second);
        let stream = self.keys.bets(&bet.game_id);
        let mut conn = self.conn.clone();
        if !self.keys.cluster() {
            return self
                .submit
                .submit
                .key(rate_key)
                .key(stream)
                .arg(self.cfg.bets_per_user_per_second)
                .arg(self.cfg.max_bet_backlog)
                .arg(json)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable);
        }
        if self.cfg.bets_per_user_per_second > 0 {
            let rate: String = self
                .submit
                .check_rate
                .key(rate_key)
                .arg(self.cfg.bets_per_user_per_second)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if rate != "ok" {
                return Ok(rate);
            }
        }
        self.submit
            .enqueue
            .key(stream)
            .arg(self.cfg.max_bet_backlog)
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl GatewayBus for RedisBus {
    async fn use_once(&self, id: &str, expires_at_ms: u64) -> Result<bool, BusError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.once(id))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at_ms.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn submit_bet(&self, bet: &BetRequest) -> Result<(), BusError> {
        let json = serde_json::to_string(bet).map_err(|e| BusError::Protocol(e.to_string()))?;
        let answer = self.enqueue(bet, json).await?;
        match answer.as_str() {
            "ok" => Ok(()),
            "rate" => Err(BusError::Refused(Bound::BetRate)),
            "backlog" => Err(BusError::Refused(Bound::Backlog)),
            other => Err(BusError::Protocol(format!("submit_bet answered {other:?}"))),
        }
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.publish_delivery(&delivery).await
    }

    async fn subscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        self.subscriber
            .subscribe(self.keys.channel(&Target::Room(game_id.into())))
            .await;
        Ok(())
    }

    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        self.subscriber
            .unsubscribe(self.keys.channel(&Target::Room(game_id.into())))
            .await;
        Ok(())
    }

    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        lock(&self.members)
            .entry(game_id.to_owned())
            .or_default()
            .insert(connection_id.to_owned());
        let joined = self
            .presence_scripts
            .join(
                &mut self.conn.clone(),
                &self.keys,
                game_id,
                connection_id,
                self.cfg.presence_ttl,
                self.cfg.max_live_rooms,
            )
            .await?;
        match joined {
            Some(n) => Ok(n),
            None => {
                self.forget_member(game_id, connection_id);
                Err(BusError::Refused(Bound::LiveRooms))
            }
        }
    }

    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        self.forget_member(game_id, connection_id);
        self.presence_scripts
            .leave(&mut self.conn.clone(), &self.keys, game_id, connection_id)
            .await
    }

    async fn subscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.subscriber
            .subscribe(self.keys.channel(&Target::User(user_id.into())))
            .await;
        Ok(())
    }

    async fn unsubscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.subscriber
            .unsubscribe(self.keys.channel(&Target::User(user_id.into())))
            .await;
        Ok(())
    }

    async fn position(&self, stream: &Target) -> Result<Position, BusError> {
        self.histories
            .position(&mut self.conn.clone(), stream)
            .await
    }

    async fn history(
        &self,
        stream: &Target,
        since: Option<&Position>,
    ) -> Result<Recovery, BusError> {
        self.histories
            .history(&mut self.conn.clone(), stream, since)
            .await
    }

    async fn wait_subscribed(&self, timeout: Duration) -> Result<(), BusError> {
        self.subscriber.wait_up(timeout).await
    }

    fn take_deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        lock(&self.deliveries_rx).take()
    }
}

/// The engine side lives in [`engine`]; deliveries go through the histories, as a gateway's do.
#[async_trait]
impl EngineBus for RedisBus {
    async fn next_bets(&self, max: usize, wait: Duration) -> Result<Vec<QueuedBet>, BusError> {
        self.engine.next_bets(max, wait).await
    }

    async fn ack_bet(&self, delivery_id: &str) -> Result<(), BusError> {
        self.engine.ack_bet(delivery_id).await
    }

    async fn ack_bets(&self, delivery_ids: &[String]) -> Result<(), BusError> {
        self.engine.ack_bets(delivery_ids).await
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.publish_delivery(&delivery).await
    }

    async fn publish_outcomes(&self, notices: Vec<MarkedNotice>) -> Result<(), BusError> {
        self.histories
            .publish_marked(&mut self.conn.clone(), &notices)
            .await
    }

    fn redelivers(&self) -> bool {
        true
    }

    async fn give_up(&self, game_id: &str) -> Result<(), BusError> {
        self.engine.give_up(game_id).await
    }

    fn lost_rooms(&self) -> Vec<String> {
        self.engine.lost_rooms()
    }

    async fn begin_drain(&self) -> Result<(), BusError> {
        self.engine.begin_drain().await
    }

    async fn stand_down(&self) -> Result<(), BusError> {
        self.engine.stand_down().await
    }

    /// Renew, release and acquire room leases, then return the rooms this engine owns.
    async fn active_rooms(&self) -> Result<Vec<String>, BusError> {
        self.engine.active_rooms(&self.presence_scripts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_idle_follows_the_lease_but_outlasts_a_result_pause() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Short pause: the lease decides.
        assert_eq!(claim_idle(s(3), ms(250)), s(2));
        assert_eq!(claim_idle(s(30), s(1)), s(20));
        // The CRD's default 3 s pause: held bets are not claimed back before the round opens.
        assert_eq!(claim_idle(s(3), s(3)), s(4));
        assert!(claim_idle(ms(300), s(3)) > s(3));
        // The CRD's longest pause (an hour), and beyond: still below the hand-off mark.
        assert_eq!(claim_idle(s(3), s(3600)), s(3601));
        assert_eq!(claim_idle(s(u64::MAX / 4), s(u64::MAX / 4)), MAX_CLAIM_IDLE);
        assert!(MAX_CLAIM_IDLE < Duration::from_millis(engine::HANDED_OFF_IDLE_MS));
    }
}
