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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use self::conn::unavailable;
use super::history::HistoryLimits;
use super::{
    BetRequest, Bound, BusError, Delivery, EngineBus, GatewayBus, MarkedNotice, Position,
    QueuedBet, Recovery, Target,
};
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

pub struct RedisBus {
    cfg: RedisBusConfig,
    conn: ConnectionManager,
    presence_scripts: presence::Scripts,
    submit: redis::Script,
    /// Stops the presence refresher when the bus is dropped.
    _presence: tokio_util::sync::DropGuard,
    /// This gateway's memberships (room → connections), refreshed in Redis several times per
    /// presence TTL and re-written after a Redis restart.
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    subscriber: pubsub::Subscriber,
    deliveries_rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    engine: engine::EngineSide,
    histories: history::Histories,
}

impl RedisBus {
    /// Connect lazily (Redis may be down at start) and start the subscriber task. Must be called
    /// inside a Tokio runtime.
    pub fn connect(cfg: RedisBusConfig) -> Result<Arc<Self>, BusError> {
        if crate::redisx::is_cluster(&cfg.url) {
            // The bus's scripts span a room's keys and the fleet-wide sets, and engines read
            // many rooms' streams in one call: none of it is laid out for hash slots yet.
            return Err(BusError::Protocol(
                "the bus runs on a single Redis (--redis-url redis://…); a Redis Cluster is \
                 taken by the ledger only (--ledger-redis-url redis+cluster://…)"
                    .into(),
            ));
        }
        let conn = crate::redisx::manager(&cfg.url).map_err(unavailable)?;
        let blocking = crate::redisx::blocking_manager(&cfg.url).map_err(unavailable)?;
        let client = redis::Client::open(cfg.url.as_str()).map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let members = Arc::new(Mutex::new(HashMap::new()));
        let subscriber = pubsub::Subscriber::start(
            client,
            cfg.prefix.clone(),
            tx,
            conn.clone(),
            Arc::clone(&members),
            cfg.presence_ttl,
        )
        .map_err(|e| BusError::Protocol(e.to_string()))?;
        let presence_stop = tokio_util::sync::CancellationToken::new();
        presence::spawn_refresher(
            conn.clone(),
            cfg.prefix.clone(),
            cfg.presence_ttl,
            Arc::downgrade(&members),
            presence_stop.clone(),
        );
        Ok(Arc::new(Self {
            engine: engine::EngineSide::new(
                &cfg.node_id,
                cfg.prefix.clone(),
                cfg.claim_idle,
                cfg.lease_ttl,
                conn.clone(),
                blocking,
            )
            .map_err(|e| BusError::Protocol(e.to_string()))?,
            histories: history::Histories::new(cfg.prefix.clone(), cfg.history.clone()),
            cfg,
            conn,
            presence_scripts: presence::Scripts::new(),
            submit: redis::Script::new(SUBMIT_BET),
            _presence: presence_stop.drop_guard(),
            members,
            subscriber,
            deliveries_rx: Mutex::new(Some(rx)),
        }))
    }

    /// Register the bus metrics (pub/sub lag, bet backlog, leases) on a registry.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.subscriber.metrics.register(registry)?;
        self.engine.metrics.register(registry)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.cfg.prefix)
    }

    /// Publishes a delivery; room and user frames are appended to their history first (in
    /// the same atomic step).
    async fn publish_delivery(&self, delivery: &Delivery) -> Result<(), BusError> {
        self.histories
            .publish(
                &mut self.conn.clone(),
                keys::channel(&self.cfg.prefix, &delivery.target),
                delivery,
            )
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
}

#[async_trait]
impl GatewayBus for RedisBus {
    async fn use_once(&self, id: &str, expires_at_ms: u64) -> Result<bool, BusError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("once:{id}")))
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
        let second = crate::clock::now_ms() / 1000;
        let answer: String = self
            .submit
            .key(self.key(&format!(
                "rate:{}:{}:{second}",
                bet.user_id.len(),
                bet.user_id
            )))
            .key(keys::bets_key(&self.cfg.prefix, &bet.game_id))
            .arg(self.cfg.bets_per_user_per_second)
            .arg(self.cfg.max_bet_backlog)
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
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
            .subscribe(keys::channel(
                &self.cfg.prefix,
                &Target::Room(game_id.into()),
            ))
            .await;
        Ok(())
    }

    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        self.subscriber
            .unsubscribe(keys::channel(
                &self.cfg.prefix,
                &Target::Room(game_id.into()),
            ))
            .await;
        Ok(())
    }

    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        lock(&self.members)
            .entry(game_id.to_owned())
            .or_default()
            .insert(connection_id.to_owned());
        let joined: i64 = self
            .presence_scripts
            .join
            .key(presence::key(&self.cfg.prefix, game_id))
            .key(self.key("rooms"))
            .arg(connection_id)
            .arg(game_id)
            .arg(presence::ttl_ms(self.cfg.presence_ttl))
            .arg(self.cfg.max_live_rooms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match u64::try_from(joined) {
            Ok(n) => Ok(n),
            Err(_) => {
                let mut m = lock(&self.members);
                if let Some(set) = m.get_mut(game_id) {
                    set.remove(connection_id);
                    if set.is_empty() {
                        m.remove(game_id);
                    }
                }
                Err(BusError::Refused(Bound::LiveRooms))
            }
        }
    }

    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        {
            let mut m = lock(&self.members);
            if let Some(set) = m.get_mut(game_id) {
                set.remove(connection_id);
                if set.is_empty() {
                    m.remove(game_id);
                }
            }
        }
        self.presence_scripts
            .leave
            .key(presence::key(&self.cfg.prefix, game_id))
            .key(self.key("rooms"))
            .arg(connection_id)
            .arg(game_id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn subscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.subscriber
            .subscribe(keys::channel(
                &self.cfg.prefix,
                &Target::User(user_id.into()),
            ))
            .await;
        Ok(())
    }

    async fn unsubscribe_user(&self, user_id: &str) -> Result<(), BusError> {
        self.subscriber
            .unsubscribe(keys::channel(
                &self.cfg.prefix,
                &Target::User(user_id.into()),
            ))
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
        self.engine
            .active_rooms(&self.presence_scripts.live_rooms)
            .await
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
