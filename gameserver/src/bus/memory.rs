//! In-process bus for local mode: one gateway and one engine in the same process.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::history::{HistoryLimits, MemoryLog};
use super::{
    BetRequest, BusError, Delivery, EngineBus, GatewayBus, Position, QueuedBet, Recovery, Target,
};
use crate::clock::now_ms;

/// Deliveries queued towards the gateway before producers wait (backpressure, not growth).
const DELIVERY_QUEUE: usize = 16_384;

pub struct MemoryBus {
    bets_tx: mpsc::UnboundedSender<QueuedBet>,
    bets_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueuedBet>>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries_rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    subscribed: Mutex<HashSet<String>>,
    members: Mutex<HashMap<String, HashSet<String>>>,
    next_id: AtomicU64,
    /// Single-use ids with the Unix ms until which they are remembered.
    used: Mutex<HashMap<String, u64>>,
    /// Room and user histories. Held across a publish's append and its send, so offsets
    /// reach the gateway in order.
    logs: tokio::sync::Mutex<Logs>,
    limits: HistoryLimits,
}

#[derive(Default)]
struct Logs {
    streams: HashMap<Target, MemoryLog>,
    appends: u64,
}

/// Every this many appends, histories with nothing young enough to replay are dropped.
const PRUNE_EVERY: u64 = 4_096;
/// Expired single-use records are dropped once this many are kept.
const USED_PRUNE_AT: usize = 4_096;

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        let (bets_tx, bets_rx) = mpsc::unbounded_channel();
        let (deliveries_tx, deliveries_rx) = mpsc::channel(DELIVERY_QUEUE);
        Self {
            bets_tx,
            bets_rx: tokio::sync::Mutex::new(bets_rx),
            deliveries_tx,
            deliveries_rx: Mutex::new(Some(deliveries_rx)),
            subscribed: Mutex::new(HashSet::new()),
            members: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            used: Mutex::new(HashMap::new()),
            logs: tokio::sync::Mutex::new(Logs::default()),
            limits: HistoryLimits::default(),
        }
    }

    /// With other history bounds (tests use small ones).
    pub fn with_limits(limits: HistoryLimits) -> Self {
        Self {
            limits,
            ..Self::new()
        }
    }

    fn is_wanted(&self, target: &Target) -> bool {
        match target {
            Target::Room(room) => lock(&self.subscribed).contains(room),
            Target::User(_) | Target::All => true,
        }
    }

    async fn deliver(&self, mut delivery: Delivery) -> Result<(), BusError> {
        let mut logs = self.logs.lock().await;
        if !matches!(delivery.target, Target::All) {
            let now = now_ms();
            let (max_entries, max_age) = (
                self.limits.entries_for(&delivery.target),
                self.limits.max_age,
            );
            let log = logs.streams.entry(delivery.target.clone()).or_default();
            delivery.frame =
                log.append(&delivery.target, &delivery.frame, now, max_entries, max_age);
            logs.appends += 1;
            if logs.appends % PRUNE_EVERY == 0 {
                logs.streams.retain(|_, l| !l.is_stale(now, max_age));
            }
        }
        if !self.is_wanted(&delivery.target) {
            return Ok(());
        }
        self.deliveries_tx
            .send(delivery)
            .await
            .map_err(|_| BusError::Unavailable("gateway stopped".into()))
    }
}

use crate::sync::lock;

#[async_trait]
impl GatewayBus for MemoryBus {
    async fn use_once(&self, id: &str, expires_at_ms: u64) -> Result<bool, BusError> {
        let now = now_ms();
        let mut used = lock(&self.used);
        if used.len() >= USED_PRUNE_AT {
            used.retain(|_, until| *until > now);
        }
        match used.get(id) {
            Some(until) if *until > now => Ok(false),
            _ => {
                used.insert(id.to_owned(), expires_at_ms);
                Ok(true)
            }
        }
    }

    async fn submit_bet(&self, bet: &BetRequest) -> Result<(), BusError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.bets_tx
            .send(QueuedBet {
                delivery_id: id.to_string(),
                bet: bet.clone(),
                redelivered: false,
            })
            .map_err(|_| BusError::Unavailable("engine stopped".into()))
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.deliver(delivery).await
    }

    async fn subscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        lock(&self.subscribed).insert(game_id.to_owned());
        Ok(())
    }

    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        lock(&self.subscribed).remove(game_id);
        Ok(())
    }

    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        let mut members = lock(&self.members);
        let room = members.entry(game_id.to_owned()).or_default();
        room.insert(connection_id.to_owned());
        Ok(room.len() as u64)
    }

    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        let mut members = lock(&self.members);
        let Some(room) = members.get_mut(game_id) else {
            return Ok(0);
        };
        room.remove(connection_id);
        let left = room.len() as u64;
        if left == 0 {
            members.remove(game_id);
        }
        Ok(left)
    }

    async fn subscribe_user(&self, _user_id: &str) -> Result<(), BusError> {
        // One process: every user's frames already reach the only gateway.
        Ok(())
    }

    async fn unsubscribe_user(&self, _user_id: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn position(&self, stream: &Target) -> Result<Position, BusError> {
        if matches!(stream, Target::All) {
            return Err(BusError::Protocol("broadcasts have no history".into()));
        }
        let mut logs = self.logs.lock().await;
        Ok(logs.streams.entry(stream.clone()).or_default().position())
    }

    async fn history(
        &self,
        stream: &Target,
        since: Option<&Position>,
    ) -> Result<Recovery, BusError> {
        if matches!(stream, Target::All) {
            return Err(BusError::Protocol("broadcasts have no history".into()));
        }
        let mut logs = self.logs.lock().await;
        let log = logs.streams.entry(stream.clone()).or_default();
        Ok(log.since(
            since,
            now_ms(),
            self.limits.max_age,
            self.limits.entries_for(stream),
        ))
    }

    fn take_deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        lock(&self.deliveries_rx).take()
    }
}

#[async_trait]
impl EngineBus for MemoryBus {
    async fn next_bets(&self, max: usize, wait: Duration) -> Result<Vec<QueuedBet>, BusError> {
        let mut rx = self.bets_rx.lock().await;
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(bet)) => bet,
            Ok(None) => return Err(BusError::Unavailable("all gateways stopped".into())),
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = vec![first];
        while out.len() < max {
            match rx.try_recv() {
                Ok(bet) => out.push(bet),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn ack_bet(&self, _delivery_id: &str) -> Result<(), BusError> {
        // In one process a bet lives and dies with the engine; there is nothing to redeliver.
        Ok(())
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.deliver(delivery).await
    }

    async fn active_rooms(&self) -> Result<Vec<String>, BusError> {
        Ok(lock(&self.members).keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bet(key: &str) -> BetRequest {
        BetRequest {
            idempotency_key: key.into(),
            user_id: "alice".into(),
            game_id: "g1".into(),
            amount: 100,
            selection: serde_json::json!({"direction": "over", "target": 50}),
            client_seed: None,
            gateway_id: "gw".into(),
            received_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn bets_flow_from_gateway_to_engine_in_order() {
        let bus = MemoryBus::new();
        GatewayBus::submit_bet(&bus, &bet("a")).await.unwrap();
        GatewayBus::submit_bet(&bus, &bet("b")).await.unwrap();
        let got = bus.next_bets(10, Duration::from_millis(10)).await.unwrap();
        let keys: Vec<_> = got.iter().map(|q| q.bet.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(bus
            .next_bets(10, Duration::from_millis(5))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn room_deliveries_reach_the_gateway_only_while_subscribed() {
        let bus = MemoryBus::new();
        let mut rx = bus.take_deliveries().unwrap();
        assert!(bus.take_deliveries().is_none());
        let d = |room: &str| Delivery {
            target: Target::Room(room.into()),
            emitted_at_ms: 1,
            except_connection: None,
            frame: Arc::from(format!("{{\"room\":\"{room}\"}}")),
        };
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        bus.subscribe_room("g1").await.unwrap();
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        bus.unsubscribe_room("g1").await.unwrap();
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got.target, Target::Room("g1".into()));
        // Every room event is recorded (offset 1 while nobody listened), delivered or not.
        assert_eq!(
            super::super::history::position_of(&got.frame),
            Some((true, "g1".into(), 2))
        );
        assert!(rx.try_recv().is_err());
        let start = Position {
            offset: 1,
            epoch: bus
                .position(&Target::Room("g1".into()))
                .await
                .unwrap()
                .epoch,
        };
        let r = bus
            .history(&Target::Room("g1".into()), Some(&start))
            .await
            .unwrap();
        assert!(r.recovered);
        assert_eq!(r.position.offset, 3);
        assert_eq!(r.frames.len(), 2);
        assert!(bus.position(&Target::All).await.is_err());
    }

    #[tokio::test]
    async fn presence_counts_members_and_lists_active_rooms() {
        let bus = MemoryBus::new();
        assert_eq!(bus.join_room("g1", "c1").await.unwrap(), 1);
        assert_eq!(bus.join_room("g1", "c2").await.unwrap(), 2);
        assert_eq!(bus.join_room("g1", "c2").await.unwrap(), 2);
        assert_eq!(bus.active_rooms().await.unwrap(), ["g1"]);
        assert_eq!(bus.leave_room("g1", "c1").await.unwrap(), 1);
        assert_eq!(bus.leave_room("g1", "c2").await.unwrap(), 0);
        assert!(bus.active_rooms().await.unwrap().is_empty());
    }
}
